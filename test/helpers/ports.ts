import { createServer } from 'node:net';

/** A port free on 127.0.0.1 right now (the dashboard's 0 means off, so tests pick one). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
