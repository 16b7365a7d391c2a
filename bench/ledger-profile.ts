import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';

/**
 * With BENCH_CPU_PROFILE=<dir>, a CPU profile of exactly the heal window (both robot processes),
 * written as <dir>/heal-<name>-<pid>.cpuprofile; open it in Chrome DevTools. Sampling every
 * BENCH_CPU_PROFILE_US µs (default 200; every sample costs time, so 1000 stretches the heal less).
 */
export async function startHealProfile(name: string): Promise<{ stop(): Promise<void> } | undefined> {
  const dir = process.env.BENCH_CPU_PROFILE;
  if (!dir) return undefined;
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: Number(process.env.BENCH_CPU_PROFILE_US ?? 200) });
  await session.post('Profiler.start');
  const before = process.resourceUsage();
  return {
    async stop() {
      const { profile } = await session.post('Profiler.stop');
      const after = process.resourceUsage();
      const ms = (us: number): number => Math.round(us / 1000);
      process.stderr.write(
        `heal profile ${name}: user ${ms(after.userCPUTime - before.userCPUTime)} ms, system ` +
          `${ms(after.systemCPUTime - before.systemCPUTime)} ms, minor ` +
          `page faults ${after.minorPageFault - before.minorPageFault}\n`,
      );
      session.disconnect();
      await writeFile(join(dir, `heal-${name}-${process.pid}.cpuprofile`), JSON.stringify(profile));
    },
  };
}
