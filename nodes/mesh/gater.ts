import type { ConnectionGater, PeerId } from '@libp2p/interface';

/**
 * Admits only fleet members, before any protocol runs (the check happens on the encrypted
 * connection, where the remote key is proven). `cut` models a radio partition in tests and
 * scenarios: cut peers are refused both ways until healed.
 */
export class FleetGater implements ConnectionGater {
  private readonly members: Set<string>;
  private readonly cut = new Set<string>();

  constructor(members: Iterable<string>, private readonly self: string) {
    this.members = new Set(members);
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
  denyInboundEncryptedConnection = (peer: PeerId): boolean => !this.admits(peer.toString());
  denyOutboundEncryptedConnection = (peer: PeerId): boolean => !this.admits(peer.toString());
}
