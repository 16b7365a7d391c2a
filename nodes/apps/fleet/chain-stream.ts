import type { ChainManifest } from '../../../protocol/chain-manifest.js';
import type { Tensor } from '../../../protocol/tensor-frame.js';
import type { Robot } from '../../robot/index.js';
import type { FrameOutcome, OpenStream } from '../../scheduler/index.js';

/** A fleet robot's camera stream through a chain, as its status reports it. */
export interface ChainStreamStatus {
  fps: number;
  offered: number;
  delivered: number;
  dropped: number;
  failed: number;
  /** Stage runs finished on another holder after one failed. */
  replaced: number;
  p50Ms: number;
  p95Ms: number;
  /** Stage runs per robot (peer id), over the whole stream. */
  runs: Record<string, number>;
}

/** Latencies kept for the percentiles: the latest this many frames. */
const KEPT = 2000;
/** A frame still in the chain this long after the camera stopped is given up on. */
const CLOSE_MS = 15_000;

const at = (sorted: number[], p: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

/**
 * Offers `frame` to a pipelined chain stream `fps` times a second, as a camera would, and counts
 * what becomes of each frame (nodes/scheduler/chain.ts drops the oldest when the chain falls behind).
 */
export class CameraChainStream {
  private stream: OpenStream | undefined;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private readonly latencies: number[] = [];
  private readonly counts = { offered: 0, delivered: 0, dropped: 0, failed: 0, replaced: 0 };
  private readonly runs: Record<string, number> = {};

  constructor(
    private readonly robot: Robot,
    private readonly manifest: ChainManifest,
    private readonly frame: Tensor[],
    private readonly fps: number,
  ) {}

  /** Opened once the mesh has formed: each stage spreads its frames over the holders it sees then. */
  start(): void {
    if (this.stream) return;
    this.stream = this.robot.chains.open(this.manifest, { maxQueue: 2 });
    this.startedAt = performance.now();
    this.timer = setInterval(() => this.offer(), 1000 / this.fps);
  }

  private offer(): void {
    this.counts.offered++;
    this.stream!.offer(this.frame).then(
      (o) => this.count(o),
      () => this.counts.failed++,
    );
  }

  private count(o: FrameOutcome): void {
    if ('dropped' in o) this.counts.dropped++;
    else if ('failed' in o) this.counts.failed++;
    else {
      this.counts.delivered++;
      this.latencies.push(o.ms);
      if (this.latencies.length > KEPT) this.latencies.shift();
      for (const run of o.runs) {
        this.runs[run.robot] = (this.runs[run.robot] ?? 0) + 1;
        if (run.failed.length > 0) this.counts.replaced++;
      }
    }
  }

  status(): ChainStreamStatus {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const seconds = this.startedAt ? (performance.now() - this.startedAt) / 1000 : 0;
    return {
      ...this.counts,
      fps: seconds > 0 ? this.counts.delivered / seconds : 0,
      p50Ms: at(sorted, 0.5),
      p95Ms: at(sorted, 0.95),
      runs: { ...this.runs },
    };
  }

  /** Stops the camera; frames still in the chain get CLOSE_MS to finish. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.stream?.close().catch(() => undefined),
      new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_MS))),
    ]);
    clearTimeout(timer);
  }
}
