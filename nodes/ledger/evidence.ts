import { LIMITS } from '../../protocol/limits.js';
import type { Hex } from '../../protocol/log-entry.js';
import type { Ledger } from './ledger.js';

export type EvidenceKind = 'malformed' | 'flood' | 'stall';

/**
 * Writes what this robot caught a member doing on a direct protocol into the log (`offence`
 * entries), so the whole fleet learns of it: at most one entry per (member, kind) per
 * LIMITS.evidence.perPeerKindEveryMs, so a flood cannot make this robot flood its own log.
 * Strangers are not reported: they never reach a protocol, and the log names only members.
 */
export class EvidenceRecorder {
  private readonly last = new Map<string, number>();
  written = 0;

  constructor(
    private readonly ledger: Ledger,
    private readonly keyOf: (peer: string) => Hex,
    private readonly everyMs: number = LIMITS.evidence.perPeerKindEveryMs,
    private readonly now: () => number = Date.now,
  ) {}

  record(offence: { peer: string; kind: EvidenceKind; reason: string }): boolean {
    const robot = this.keyOf(offence.peer);
    if (!this.ledger.state.members.has(robot) || robot === this.ledger.self) return false;
    const slot = `${robot}:${offence.kind}`;
    const now = this.now();
    if (now - (this.last.get(slot) ?? -Infinity) < this.everyMs) return false;
    this.last.set(slot, now);
    if (this.last.size > 4096) this.last.delete(this.last.keys().next().value!);
    this.ledger.append({ type: 'offence', robot, kind: offence.kind, detail: offence.reason.slice(0, 200) });
    this.written++;
    return true;
  }
}
