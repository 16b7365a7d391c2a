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
/** Monitor RTTs are ignored for this long after a probe's own (see recordRtt). */
const PROBE_RTT_FRESH_MS = 10_000;

/**
 * An idle link is probed when its figure is this old, doubled after each probe that agreed with
 * the estimate up to PROBE_AGE_MAX_MS: a steady link costs a third of the probes, and a step is
 * still seen within PROBE_AGE_MAX_MS plus one short wait for the confirming sample.
 */
const PROBE_AGE_MIN_MS = 500;
const PROBE_AGE_MAX_MS = 1500;
/** Weight of a probe's sample above the estimate (a transfer's is `alpha`). */
const PROBE_ALPHA_UP = 0.5;
/** A probe's sample this close to the estimate (either way) agrees with it. */
const AGREES = 1.5;

/** A sample this far from the estimate, either way, is a step if the next one agrees. */
const STEP = 2;
/** A sample this far below the estimate replaces it at once. */
const DROP = 4;

export class LinkEstimator {
  private readonly links = new Map<string, LinkEstimate>();
  /** Per link, the last sample if it was a step away from the estimate (+1 up, −1 down). */
  private readonly steps = new Map<string, { direction: 1 | -1; sample: number }>();
  private readonly rtts = new Map<string, number[]>();
  /** Per link, how many probes in a row agreed with the estimate, and when a probe last gave an RTT. */
  private readonly probed = new Map<string, { agreed: number; rttAt: number }>();

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
    this.addSample(peer, bytes, transferMs, this.alpha, now);
  }

  private addSample(peer: string, bytes: number, transferMs: number, alphaUp: number, now: number): void {
    if (bytes < 4096 || !(transferMs > 0)) return; // too small to say anything about bandwidth
    const sample = bytes / transferMs;
    const prev = this.links.get(peer);
    const weight = prev && sample < prev.bandwidth ? this.alphaDown : alphaUp;
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

  /**
   * A round trip from libp2p's connection monitor (`fromProbe` false) or from a probe. The
   * monitor's pings wait out whatever holds the event loop, so while probes measure the link
   * their round trips stand alone.
   */
  recordRtt(peer: string, rttMs: number, now = Date.now(), fromProbe = false): void {
    if (!(rttMs >= 0)) return;
    const probed = this.probed.get(peer);
    if (fromProbe) this.probed.set(peer, { agreed: probed?.agreed ?? 0, rttAt: now });
    else if (probed && now - probed.rttAt < PROBE_RTT_FRESH_MS) return;
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

  /**
   * A probe of `bytes`: the payload's time less the probe's own round trip is its time on the
   * wire. The least round trip seen lately is taken instead when smaller (a stall in the short
   * exchange would read the link fast), and the wire time is never taken under a quarter of the
   * whole: an estimate too high stalls transfers.
   */
  recordProbe(peer: string, bytes: number, timing: { rttMs: number; ms: number }, now = Date.now()): void {
    const before = this.links.get(peer);
    this.recordRtt(peer, timing.rttMs, now, true);
    const pathMs = Math.min(timing.rttMs, this.get(peer).minRttMs);
    const sample = bytes / Math.max(timing.ms - pathMs, timing.ms / 4);
    const agreed = !!before?.samples && sample < AGREES * before.bandwidth && sample * AGREES > before.bandwidth;
    // A probe has the link to itself (no burst to read it fast): it may raise the estimate faster.
    this.addSample(peer, bytes, bytes / sample, Math.max(this.alpha, PROBE_ALPHA_UP), now);
    const probed = this.probed.get(peer)!;
    probed.agreed = agreed ? probed.agreed + 1 : 0;
  }

  /** Peers due an idle probe: their bandwidth figure is older than their probe age (PROBE_AGE_MIN_MS…MAX). */
  dueForProbe(peers: string[], now = Date.now()): string[] {
    return peers.filter((p) => now - (this.links.get(p)?.measuredAt ?? 0) > this.probeAgeMs(p));
  }

  probeAgeMs(peer: string): number {
    return Math.min(PROBE_AGE_MAX_MS, PROBE_AGE_MIN_MS * 2 ** (this.probed.get(peer)?.agreed ?? 0));
  }

  /**
   * Bytes for an idle probe of `peer`: about `ms` of the link as last estimated, so a slow radio
   * link is not flooded (256 KiB is two seconds of a 1 Mbit/s link), never under 16 KiB (less
   * says little about bandwidth) nor over 256 KiB.
   */
  probeBytes(peer: string, ms = 100): number {
    const link = this.get(peer);
    // A step up waiting for its confirming sample: sized for the rate the step read, or the probe
    // is over before it says anything (16 KiB is 1.3 ms of 100 Mbit/s).
    const step = this.steps.get(peer);
    const rate = step?.direction === 1 ? Math.max(link.bandwidth, step.sample) : link.bandwidth;
    // At least a round trip's worth, so the wire time is not lost in the path's delay.
    return Math.round(Math.min(256 * 1024, Math.max(16 * 1024, rate * Math.max(ms, link.minRttMs))));
  }
}
