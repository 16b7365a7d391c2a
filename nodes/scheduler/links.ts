/**
 * What the scheduler knows of each link: bandwidth as an EWMA over real transfers (and idle
 * probes), round-trip time from libp2p's connection monitor. A radio link steps (a robot turns a
 * corner): two samples in a row beyond STEP× the estimate, the same way, replace it outright, so
 * a 20× change is learnt in two samples instead of the dozen an EWMA needs; one sample below a
 * quarter of it is enough (an estimate too high stalls transfers, one too low only misses a split).
 */
export interface LinkEstimate {
  /** Bytes per millisecond. */
  bandwidth: number;
  rttMs: number;
  samples: number;
  /** Last update of either figure (ms since the epoch). */
  updatedAt: number;
  /** Last bandwidth sample: what says whether the bandwidth figure is stale (RTT samples come every second). */
  measuredAt: number;
  /**
   * The least RTT of the latest RTT_WINDOW samples: the path's own delay. The average also holds
   * the time a ping queued behind data on a slow link (seen at 300 ms on 5 Mbit/s); taken out of
   * a probe's time, that read a 5 Mbit/s link as 14.
   */
  minRttMs: number;
}

const RTT_WINDOW = 30;

/** A sample this far from the estimate, either way, is a step if the next one agrees. */
const STEP = 2;
/** A sample this far below the estimate replaces it at once. */
const DROP = 4;

export class LinkEstimator {
  private readonly links = new Map<string, LinkEstimate>();
  /** Per link, the last sample if it was a step away from the estimate (+1 up, −1 down). */
  private readonly steps = new Map<string, { direction: 1 | -1; sample: number }>();
  private readonly rtts = new Map<string, number[]>();

  constructor(
    /** Assumed until measured: 1 MB/s (8 Mbit/s), a cautious radio link. */
    private readonly defaultBandwidth = 1000,
    private readonly alpha = 0.3,
    /**
     * Weight of a sample below the estimate: a radio link degrades at once and recovers slowly,
     * and an estimate too high costs stalled transfers where one too low costs a missed split.
     */
    private readonly alphaDown = 0.7,
  ) {}

  /** A transfer of `bytes` that took `transferMs` on the wire (compute time already removed). */
  recordTransfer(peer: string, bytes: number, transferMs: number, now = Date.now()): void {
    if (bytes < 4096 || !(transferMs > 0)) return; // too small to say anything about bandwidth
    const sample = bytes / transferMs;
    const prev = this.links.get(peer);
    const weight = prev && sample < prev.bandwidth ? this.alphaDown : this.alpha;
    let bandwidth = prev && prev.samples > 0 ? prev.bandwidth + weight * (sample - prev.bandwidth) : sample;
    const direction = !prev?.samples ? 0 : sample > STEP * prev.bandwidth ? 1 : sample * STEP < prev.bandwidth ? -1 : 0;
    const pending = this.steps.get(peer);
    if (direction === -1 && sample * DROP < prev!.bandwidth) {
      bandwidth = sample;
      this.steps.delete(peer);
    } else if (direction !== 0 && pending?.direction === direction) {
      bandwidth = Math.sqrt(sample * pending.sample);
      this.steps.delete(peer);
    } else if (direction !== 0) this.steps.set(peer, { direction, sample });
    else this.steps.delete(peer);
    this.links.set(peer, {
      bandwidth,
      rttMs: prev?.rttMs ?? 1,
      minRttMs: prev?.minRttMs ?? 1,
      samples: (prev?.samples ?? 0) + 1,
      updatedAt: now,
      measuredAt: now,
    });
  }

  recordRtt(peer: string, rttMs: number, now = Date.now()): void {
    if (!(rttMs >= 0)) return;
    const prev = this.links.get(peer);
    const recent = this.rtts.get(peer) ?? [];
    recent.push(rttMs);
    if (recent.length > RTT_WINDOW) recent.shift();
    this.rtts.set(peer, recent);
    this.links.set(peer, {
      bandwidth: prev?.bandwidth ?? this.defaultBandwidth,
      rttMs: prev && prev.samples > 0 ? prev.rttMs + this.alpha * (rttMs - prev.rttMs) : rttMs,
      minRttMs: Math.min(...recent),
      samples: prev?.samples ?? 0,
      updatedAt: now,
      measuredAt: prev?.measuredAt ?? 0,
    });
  }

  get(peer: string): LinkEstimate {
    return (
      this.links.get(peer) ?? {
        bandwidth: this.defaultBandwidth,
        rttMs: 5,
        minRttMs: 5,
        samples: 0,
        updatedAt: 0,
        measuredAt: 0,
      }
    );
  }

  /** Peers whose bandwidth was last measured more than `maxAgeMs` ago: candidates for an idle probe. */
  stale(peers: string[], maxAgeMs: number, now = Date.now()): string[] {
    return peers.filter((p) => now - (this.links.get(p)?.measuredAt ?? 0) > maxAgeMs);
  }

  /**
   * Bytes for an idle probe of `peer`: about `ms` of the link as last estimated, so a slow radio
   * link is not flooded (256 KiB is two seconds of a 1 Mbit/s link), never under 16 KiB (less
   * says little about bandwidth) nor over 256 KiB.
   */
  probeBytes(peer: string, ms = 100): number {
    return Math.round(Math.min(256 * 1024, Math.max(16 * 1024, this.get(peer).bandwidth * ms)));
  }
}
