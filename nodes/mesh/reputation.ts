/**
 * Local misbehaviour score per peer for the direct protocols (gossipsub scores adverts itself).
 * Each offence costs points; at the threshold the peer is isolated: refused and hung up on.
 * Offences of a kind the whole fleet should know of (malformed messages, floods, stalls) also go
 * to `report`, which records them in the log as evidence.
 */
export type OffenceKind = 'malformed' | 'flood' | 'stall';

export interface Offence {
  peer: string;
  reason: string;
  at: number;
  kind?: OffenceKind;
}

export class PeerReputation {
  private readonly scores = new Map<string, number>();
  readonly offences: Offence[] = [];
  /** Where offences worth evidence go (the robot wires it to its log). */
  report: ((offence: Offence & { kind: OffenceKind }) => void) | undefined;

  constructor(
    private readonly isolate: (peer: string) => void,
    private readonly threshold = -10,
    private readonly now: () => number = Date.now,
  ) {}

  penalise(peer: string, reason: string, points = 5, kind?: OffenceKind): void {
    const score = (this.scores.get(peer) ?? 0) - points;
    this.scores.set(peer, score);
    const offence: Offence = { peer, reason, at: this.now(), ...(kind ? { kind } : {}) };
    this.offences.push(offence);
    if (this.offences.length > 1000) this.offences.shift();
    if (kind) this.report?.({ ...offence, kind });
    if (score <= this.threshold) this.isolate(peer);
  }

  /** Clears a peer's score (an operator's decision, or a benchmark measuring attacks one by one). */
  forgive(peer: string): void {
    this.scores.delete(peer);
  }

  score(peer: string): number {
    return this.scores.get(peer) ?? 0;
  }

  isIsolated(peer: string): boolean {
    return this.score(peer) <= this.threshold;
  }
}
