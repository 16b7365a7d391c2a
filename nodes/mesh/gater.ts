import { createHash } from 'node:crypto';
import type { ConnectionGater, MultiaddrConnection, PeerId } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';

/**
 * Admits only fleet members, before any protocol runs (the check happens on the encrypted
 * connection, where the remote key is proven). `cut` models a radio partition in tests and
 * scenarios: cut peers are refused both ways until healed.
 */
export class FleetGater implements ConnectionGater {
  private members = new Set<string>();
  private readonly cut = new Set<string>();
  /** Position of each member in the fleet's order (the ring). */
  private order = new Map<string, number>();
  private readonly chordCache = new Map<string, boolean>();

  constructor(
    members: Iterable<string>,
    private readonly self: string,
  ) {
    this.setMembers(members);
  }

  /** Who is a member from now on (the log admitted or revoked robots); returns who came and went. */
  setMembers(members: Iterable<string>): { added: string[]; removed: string[] } {
    const next = new Set(members);
    const added = [...next].filter((m) => !this.members.has(m));
    const removed = [...this.members].filter((m) => !next.has(m));
    if (added.length === 0 && removed.length === 0) return { added, removed };
    this.members = next;
    this.order = new Map([...next].map((m, i) => [m, i]));
    this.chordCache.clear();
    return { added, removed };
  }

  /** Members now, in the fleet's order. */
  memberList(): string[] {
    return [...this.members];
  }

  /** Where a member stands in the fleet's order (-1: not a member). */
  rank(peer: string): number {
    return this.order.get(peer) ?? -1;
  }

  /**
   * The members this robot keeps connections to when the fleet is too big for a full mesh: its
   * two ring neighbours among the members it admits now (the fleet's order with cut members
   * skipped, so the ring closes inside every partition group and keeps it connected), and random
   * chords, about `degree` − 2 of them: a pair is linked when a hash of the two PeerIds falls
   * under (degree − 2) / (members − 1), the same answer on both sides. Every member when the
   * fleet has at most `degree` + 1.
   */
  neighbours(degree: number): Set<string> {
    const ring = [...this.members].filter((m) => m === this.self || this.admits(m));
    if (this.members.size - 1 <= degree) return new Set(ring.filter((m) => m !== this.self));
    const out = new Set<string>();
    const i = ring.indexOf(this.self);
    if (i >= 0 && ring.length > 1) {
      out.add(ring[(i + 1) % ring.length]);
      out.add(ring[(i - 1 + ring.length) % ring.length]);
    }
    const p = Math.max(0, degree - 2) / (this.members.size - 1);
    for (const m of ring) if (m !== this.self && this.chord(m, p)) out.add(m);
    return out;
  }

  private chord(peer: string, p: number): boolean {
    let linked = this.chordCache.get(peer);
    if (linked === undefined) {
      const [a, b] = [this.self, peer].sort();
      linked = createHash('sha256').update(`${a}|${b}`).digest().readUInt32BE(0) / 2 ** 32 < p;
      this.chordCache.set(peer, linked);
    }
    return linked;
  }

  admits(peer: string): boolean {
    return peer !== this.self && this.members.has(peer) && !this.cut.has(peer);
  }

  isMember(peer: string): boolean {
    return this.members.has(peer);
  }

  partition(peers: Iterable<string>): void {
    for (const p of peers) this.cut.add(p);
  }

  heal(peers?: Iterable<string>): void {
    if (!peers) this.cut.clear();
    else for (const p of peers) this.cut.delete(p);
  }

  denyDialPeer = (peer: PeerId): boolean => !this.admits(peer.toString());
  denyOutboundEncryptedConnection = (peer: PeerId): boolean => !this.admits(peer.toString());

  /** Inbound connections still in their handshake (no key proven yet), per remote address. */
  private readonly handshaking = new Map<string, number>();
  private readonly settle = new WeakMap<MultiaddrConnection, () => void>();

  /**
   * Before the handshake: a remote address may hold at most HANDSHAKES_PER_ADDRESS of the pending
   * slots libp2p keeps for handshakes, so a stranger opening idle connections cannot starve
   * members of them (libp2p's own caps are global: 64 pending here, and 5 new connections a second
   * per address). Loopback is exempt: robots sharing a machine all come from 127.0.0.1.
   */
  denyInboundConnection = (maConn: MultiaddrConnection): boolean => {
    const host = hostOf(maConn.remoteAddr);
    if (host === undefined || host.startsWith('127.') || host === '::1') return false;
    const n = this.handshaking.get(host) ?? 0;
    if (n >= HANDSHAKES_PER_ADDRESS) return true;
    this.handshaking.set(host, n + 1);
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      const left = (this.handshaking.get(host) ?? 1) - 1;
      if (left <= 0) this.handshaking.delete(host);
      else this.handshaking.set(host, left);
    };
    this.settle.set(maConn, done);
    maConn.addEventListener('close', done, { once: true });
    return false;
  };

  denyInboundEncryptedConnection = (peer: PeerId, maConn: MultiaddrConnection): boolean => {
    this.settle.get(maConn)?.();
    return !this.admits(peer.toString());
  };
}

/** Pending handshakes one remote address may hold. */
export const HANDSHAKES_PER_ADDRESS = 4;

function hostOf(addr: Multiaddr): string | undefined {
  const c = addr.getComponents().find((x) => x.name === 'ip4' || x.name === 'ip6');
  return c?.value;
}
