import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../nodes/apps/cli/main.js', import.meta.url));

/** Runs the built `robomesh` command (IOTA_RPC_URL cleared unless `env` sets it). */
export function robomesh(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const base = { ...process.env };
    delete base.IOTA_RPC_URL;
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000, env: { ...base, ...env } }, (err, stdout, stderr) => {
      const code = (err as { code?: unknown } | null)?.code;
      resolve({ code: err ? (typeof code === 'number' ? code : 1) : 0, stdout, stderr });
    });
  });
}
