/**
 * Local misbehaviour score per peer for the direct protocols (gossipsub scores adverts itself).
 * Each offence costs points; at the threshold the peer is isolated: refused and hung up on.
 */
export interface Offence {
  peer: string;
  reason: string;
  at: number;
}

export class PeerReputation {
  private readonly scores = new Map<string, number>();
  readonly offences: Offence[] = [];

  constructor(
    private readonly isolate: (peer: string) => void,
    private readonly threshold = -10,
    private readonly now: () => number = Date.now,
  ) {}

  penalise(peer: string, reason: string, points = 5): void {
    const score = (this.scores.get(peer) ?? 0) - points;
    this.scores.set(peer, score);
    this.offences.push({ peer, reason, at: this.now() });
    if (this.offences.length > 1000) this.offences.shift();
    if (score <= this.threshold) this.isolate(peer);
  }

  score(peer: string): number {
    return this.scores.get(peer) ?? 0;
  }

  isIsolated(peer: string): boolean {
    return this.score(peer) <= this.threshold;
  }
}
