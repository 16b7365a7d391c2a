import { createHash } from 'node:crypto';
import type { Hex } from '../../protocol/bytes.js';

/**
 * Whose turn it is to anchor: each period (the anchoring interval) ranks the fleet's members by a
 * hash of the period and their key, the same order on every robot. The first anchors at the
 * period's start; each next one `slotMs` later, only if no anchor from anyone has come in
 * meanwhile: one anchor per period normally, and a robot without a node (or down) costs the
 * fleet one slot, not the period. A robot outside the members comes last.
 */
export function anchorRank(members: Iterable<Hex>, self: Hex, period: number): number {
  const order = [...members]
    .map((m) => ({ m, h: createHash('sha256').update(`${period}:${m}`).digest('hex') }))
    .sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : 0))
    .map((x) => x.m);
  const i = order.indexOf(self);
  return i < 0 ? order.length : i;
}

/**
 * Whether `self` should snapshot now: it is within its own slot of this period and no anchor came
 * in this period. Only within its slot: a robot that starts late, or ticks late, never fires
 * together with the one whose slot it is.
 */
export function anchorTurnNow(o: {
  members: Iterable<Hex>;
  self: Hex;
  now: number;
  everyMs: number;
  slotMs: number;
  lastAnchorAt: number;
}): boolean {
  const period = Math.floor(o.now / o.everyMs);
  const start = period * o.everyMs;
  if (o.lastAnchorAt >= start) return false;
  const mine = start + anchorRank(o.members, o.self, period) * o.slotMs;
  return o.now >= mine && o.now < mine + o.slotMs;
}
