import type { Startable } from '../util/index.js';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import { LIMITS } from '../../protocol/limits.js';
import type { MeshNode } from './host.js';

export const PROBE_PROTOCOL = '/robomesh/probe/1.0.0';
const MAX_PROBE = LIMITS.probe.maxBytes;

/** Answers bandwidth probes: reads one message, replies with its length. */
export class ProbeService implements Startable {
  constructor(private readonly components: { node: MeshNode }) {}

  start(): Promise<void> {
    return handleProbes(this.components.node);
  }

  stop(): Promise<void> {
    return this.components.node.unhandle(PROBE_PROTOCOL);
  }
}

async function handleProbes(node: MeshNode): Promise<void> {
  await node.handle(
    PROBE_PROTOCOL,
    async (stream) => {
      const lp = lpStream(stream, { maxDataLength: MAX_PROBE, maxBufferSize: 2 * MAX_PROBE });
      try {
        const msg = await lp.read({ signal: AbortSignal.timeout(LIMITS.probe.readTimeoutMs) });
        const ack = new Uint8Array(4);
        new DataView(ack.buffer).setUint32(0, msg.byteLength, true);
        await lp.write(ack);
        await stream.close();
      } catch (err) {
        stream.abort(err as Error);
      }
    },
    { maxInboundStreams: LIMITS.probe.streamsPerPeer },
  );
}

/** Sends `bytes` to `peer` and returns the wall time until the acknowledgement, in ms. */
export async function probe(node: MeshNode, peer: string, bytes: number, timeoutMs = 10_000): Promise<number> {
  const signal = AbortSignal.timeout(Math.ceil(timeoutMs));
  let stream: Awaited<ReturnType<MeshNode['dialProtocol']>> | undefined;
  // Opening the stream or writing under backpressure did not always heed the signal (seen with
  // tc tbf): the probe never returned, and its robot never probed again. The race makes the
  // deadline hold whatever the stack does.
  const deadline = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  const run = async (): Promise<number> => {
    stream = await node.dialProtocol(peerIdFromString(peer), PROBE_PROTOCOL, { signal });
    const lp = lpStream(stream, { maxDataLength: MAX_PROBE });
    const t0 = performance.now();
    await lp.write(new Uint8Array(Math.min(bytes, MAX_PROBE)), { signal });
    await lp.read({ signal });
    return performance.now() - t0;
  };
  deadline.catch(() => undefined); // the race below reads it; past the race nobody does
  const running = run();
  running.catch(() => undefined); // a run that lost the race ends in its own time
  try {
    const ms = await Promise.race([running, deadline]);
    // Not awaited: the figure is in, and a close that waits on a slow link must not hold the
    // caller (a close left unbounded stalled every later probe of a robot for good).
    stream!.close({ signal }).catch((err: Error) => stream!.abort(err));
    return ms;
  } catch (err) {
    stream?.abort(err as Error);
    throw err;
  }
}
