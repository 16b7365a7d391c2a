import { type MallocTunables, hasMallocTunables, withMallocTunables } from '../util/index.js';

/**
 * The environment a process that runs ONNX inference should start with.
 *
 * onnxruntime-node returns every output in a fresh ArrayBuffer (it copies, even into
 * preallocated outputs), so a robot serving a head allocates its boundary — 64 KiB to 3 MiB here
 * — on every request, and V8 frees those buffers only at its next GC, by the tens of MiB at once.
 * With glibc's defaults that freed memory goes back to the kernel (the heap top is trimmed past
 * 128 KiB; large blocks are mmap'ed until glibc's threshold adapts) and the next runs fault it
 * in again and zero it. Measured on the generated CNN's first-cut head (64 KiB boundary, 4 s of
 * back-to-back runs, 2-core EPYC VM, shared): with the defaults 116 k page faults, 1.3 s of system
 * time, 0.110 ms a run on average; with the settings below 19 k faults, 0.49 s, 0.075 ms
 * (0.033–0.044 ms with 64 / 256 / 64 MiB). Once glibc's own thresholds have adapted (after
 * ~1,000 runs there) medians converge; the tunables remove the faulting warm-up and the
 * re-faulting after each GC that trims the heap.
 * The price: freed memory up to `trim_threshold` stays in the process (RSS after 200 detector
 * head runs 189 → 319 MiB), so these are for processes that run inference, not for every one.
 *
 * See nodes/util/malloc-tunables.ts for how they are passed on.
 */

/** glibc malloc tunables for inference processes (bytes). Values a caller already set win. */
export const INFERENCE_MALLOC_TUNABLES: MallocTunables = {
  // Every boundary and output here is < 32 MiB: serve them from the heap, never from mmap.
  'glibc.malloc.mmap_threshold': 32 * 2 ** 20,
  // Keep up to 128 MiB of freed heap: more than V8 lets external buffers pile up between GCs
  // (~64 MiB), so the memory one GC frees is reused instead of handed back.
  'glibc.malloc.trim_threshold': 128 * 2 ** 20,
  // Grow the heap in 16 MiB steps rather than by each request.
  'glibc.malloc.top_pad': 16 * 2 ** 20,
};

/**
 * `base` (default: this process's env) with INFERENCE_MALLOC_TUNABLES merged into
 * GLIBC_TUNABLES; tunables already present there keep their values. Returns a new object.
 */
export function inferenceProcessEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return withMallocTunables(INFERENCE_MALLOC_TUNABLES, base);
}

/** True when `env` already sets every inference malloc tunable (to any value). */
export function hasInferenceEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return hasMallocTunables(INFERENCE_MALLOC_TUNABLES, env);
}
