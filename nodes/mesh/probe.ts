import { settleBy, type Startable } from '../util/index.js';
import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import { LIMITS } from '../../protocol/limits.js';
import type { MeshNode } from './host.js';

export const PROBE_PROTOCOL = '/robomesh/probe/1.0.0';
const MAX_PROBE = LIMITS.probe.maxBytes;
const PROBE_MESSAGES = 2;

/** A probe's two timings, in ms: one byte there and back, then the payload there and its ack back. */
export interface ProbeTiming {
  rttMs: number;
  ms: number;
}

/**
 * Answers bandwidth probes: reads up to PROBE_MESSAGES messages, acknowledging each with its
 * length. The prober first sends a byte (its round trip is the path's delay right now), then the
 * payload.
 */
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
        const signal = AbortSignal.timeout(LIMITS.probe.readTimeoutMs);
        for (let i = 0; i < PROBE_MESSAGES; i++) {
          let msg;
          try {
            msg = await lp.read({ signal });
          } catch (err) {
            if (i > 0 && (err as Error).name === 'UnexpectedEOFError') break; // a prober of one message
            throw err;
          }
          const ack = new Uint8Array(4);
          new DataView(ack.buffer).setUint32(0, msg.byteLength, true);
          await lp.write(ack, { signal });
        }
        await stream.close();
      } catch (err) {
        stream.abort(err as Error);
      }
    },
    { maxInboundStreams: LIMITS.probe.streamsPerPeer },
  );
}

/**
 * Sends one byte, then `bytes`, to `peer`: the wall times until each acknowledgement. The
 * payload's time less the byte's is its time on the wire. A round trip measured apart (libp2p's
 * connection monitor) was no substitute: its pings wait out whatever holds the robot's event loop,
 * and a CPU-limited robot's read 33 ms on a 4 ms link, which taken out of a probe's time read a
 * 20 Mbit/s link as 180.
 */
export async function probe(node: MeshNode, peer: string, bytes: number, timeoutMs = 10_000): Promise<ProbeTiming> {
  const signal = AbortSignal.timeout(Math.ceil(timeoutMs));
  let stream: Awaited<ReturnType<MeshNode['dialProtocol']>> | undefined;
  const run = async (): Promise<ProbeTiming> => {
    stream = await node.dialProtocol(peerIdFromString(peer), PROBE_PROTOCOL, { signal });
    const lp = lpStream(stream, { maxDataLength: MAX_PROBE });
    const timed = async (n: number): Promise<number> => {
      const t0 = performance.now();
      await lp.write(new Uint8Array(n), { signal });
      await lp.read({ signal });
      return performance.now() - t0;
    };
    const rttMs = await timed(1);
    return { rttMs, ms: await timed(Math.min(bytes, MAX_PROBE)) };
  };
  try {
    // Opening the stream or writing under backpressure did not always heed the signal (seen with
    // tc tbf): the probe never returned, and its robot never probed again.
    const timing = await settleBy(run(), signal);
    // Not awaited: the figure is in, and a close that waits on a slow link must not hold the
    // caller (a close left unbounded stalled every later probe of a robot for good).
    stream!.close({ signal }).catch((err: Error) => stream!.abort(err));
    return timing;
  } catch (err) {
    stream?.abort(err as Error);
    throw err;
  }
}
