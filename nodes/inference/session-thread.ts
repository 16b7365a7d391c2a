import { parentPort } from 'node:worker_threads';
import ort from './ort-float16.js';
import type { ThreadReply, ThreadRequest, WireTensor } from './thread-sessions.js';

// The inference thread of a robot (thread-sessions.ts): holds ORT sessions and runs them, so a
// run (onnxruntime-node computes on the calling thread) never stalls the robot's event loop.

const sessions = new Map<number, Promise<ort.InferenceSession>>();
const port = parentPort!;

port.on('message', (req: ThreadRequest) => {
  void handle(req).then(
    (reply) => {
      const transfer = reply.outputs?.map((t) => t.data.buffer as ArrayBuffer) ?? [];
      port.postMessage(reply, transfer);
    },
    (err: Error) => port.postMessage({ id: req.id, error: err.message } satisfies ThreadReply),
  );
});

async function handle(req: ThreadRequest): Promise<ThreadReply> {
  if (req.op === 'create') {
    const session = ort.InferenceSession.create(req.bytes, req.options);
    sessions.set(req.session, session);
    session.catch(() => sessions.delete(req.session));
    await session;
    return { id: req.id };
  }
  if (req.op === 'release') {
    const session = sessions.get(req.session);
    sessions.delete(req.session);
    await session?.then((s) => s.release());
    return { id: req.id };
  }
  const session = await sessions.get(req.session);
  if (!session) throw new Error('session released');
  const feeds = Object.fromEntries(
    req.feeds.map((t) => [t.name, new ort.Tensor(t.type as 'float32', t.data as Float32Array, t.dims)]),
  );
  const out = await session.run(feeds);
  const outputs: WireTensor[] = Object.entries(out).map(([name, value]) => {
    const t = value as ort.Tensor;
    const data = t.data as WireTensor['data'];
    // A view into a larger buffer is copied out: only its own bytes travel.
    const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
    return { name, type: t.type, dims: [...t.dims], data: own };
  });
  return { id: req.id, outputs };
}
