import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { identityFromSeed } from '../nodes/mesh/index.js';
import { Robot } from '../nodes/robot/index.js';
import { RAW_PORT_OFFSET, arg, sinkModel } from './split-common.js';

/** The executing robot of bench:split: serves tails, and a raw TCP sink for the throughput baseline. */
async function main(): Promise<void> {
  const host = arg('host');
  const port = Number(arg('port'));
  const dir = arg('dir');
  const sinkPath = join(dir, 'sink.onnx');
  await writeFile(sinkPath, sinkModel());
  const robot = await Robot.start({
    name: 'peer',
    identity: await identityFromSeed(Buffer.from(arg('seed'), 'hex')),
    fleet: { name: 'bench', members: arg('members').split(',') },
    listen: [`/ip4/${host}/tcp/${port}`],
    models: [{ arg: 'builtin:ocr-det', inputShape: { x: [1, 3, 320, 320] } }, { arg: sinkPath }],
    cacheDir: join(dir, 'peer-cache'),
    dataDir: join(dir, 'peer'),
    profileRuns: 5,
    prewarm: 'tail',
    advertPeriodMs: 500,
    // The peer never plans a request, so its idle-link probes (256 KiB every 5 s: it records no
    // transfers as the executor, so its link always looks stale) would only be cross traffic
    // in the measurements, delaying the requester's window updates and acks.
    probeIntervalMs: 0,
    linkBytesPerSecond: Number(arg('window', String(1 << 20))),
  });
  // Raw TCP baseline: read a u32 length, then that many bytes, then answer one byte.
  const raw = createServer((socket) => {
    let need = -1;
    let got = 0;
    let header = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      let c = chunk;
      while (c.length > 0) {
        if (need < 0) {
          header = Buffer.concat([header, c]);
          if (header.length < 4) return;
          need = header.readUInt32LE(0);
          c = header.subarray(4);
          header = Buffer.alloc(0);
          got = 0;
        }
        const take = Math.min(need - got, c.length);
        got += take;
        c = c.subarray(take);
        if (got === need) {
          socket.write(Buffer.of(1));
          need = -1;
        }
      }
    });
    socket.on('error', () => undefined);
  });
  raw.listen(port + RAW_PORT_OFFSET, host);
  process.stdout.write(`ready ${JSON.stringify({ addrs: robot.host.addresses(), peerId: robot.peerId })}\n`);
  process.on('SIGTERM', () => void robot.stop().then(() => process.exit(0)));
}

await main();
