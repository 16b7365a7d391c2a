import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Row = Record<string, string | number>;

export function table(rows: Row[]): string {
  if (rows.length === 0) return '(no rows)';
  const header = Object.keys(rows[0]);
  const cells = rows.map((r) => header.map((h) => (typeof r[h] === 'number' ? fmt(r[h] as number) : String(r[h]))));
  const widths = header.map((h, k) => Math.max(h.length, ...cells.map((c) => c[k].length)));
  const line = (c: string[]): string => `| ${c.map((v, k) => v.padEnd(widths[k])).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

function fmt(n: number): string {
  if (Number.isInteger(n)) return String(n);
  const a = Math.abs(n);
  return a !== 0 && (a < 0.001 || a >= 1e6) ? n.toExponential(2) : n.toFixed(a < 1 ? 4 : 2);
}

/** Writes bench/results/NAME.json (in the source tree, not dist/) with the machine it ran on. */
export async function writeResults(name: string, results: object): Promise<string> {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const path = join(root, 'bench', 'results', `${name}.json`);
  await mkdir(dirname(path), { recursive: true });
  const machine = { cpu: cpus()[0]?.model, cores: cpus().length, node: process.version };
  await writeFile(
    path,
    `${JSON.stringify({ bench: name, at: new Date().toISOString(), machine, ...results }, null, 2)}\n`,
  );
  return path;
}
