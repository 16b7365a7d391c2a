import type { Ledger } from '../ledger/index.js';
import { type MeshHost, peerOfKey } from '../mesh/index.js';
import type { Logger, Startable } from '../util/index.js';

/**
 * Keeps the connection gater in step with the log: who may connect is who the log's `genesis`,
 * `admit` and `revoke` entries say is a member, as this robot has folded them. A robot admitted
 * later is let in once this robot has seen its admission; a revoked one is hung up on at once.
 */
export class MembershipFollower implements Startable {
  private readonly peerOf = new Map<string, string>();
  private readonly onFolded = (): void => void this.apply();
  private applying: Promise<void> = Promise.resolve();

  constructor(
    private readonly ledger: Ledger,
    private readonly host: MeshHost,
    private readonly log: Logger,
    /** Called after membership changed (the robot tells its peers: gossip may have missed one). */
    private readonly onChange: () => void = () => undefined,
  ) {}

  start(): void {
    this.ledger.on('folded', this.onFolded);
    void this.apply();
  }

  stop(): void {
    this.ledger.off('folded', this.onFolded);
  }

  /** Resolves once the members folded so far are applied. */
  async settled(): Promise<void> {
    await this.applying;
  }

  private apply(): Promise<void> {
    const members = [...this.ledger.state.members].map((key) => {
      let peer = this.peerOf.get(key);
      if (!peer) this.peerOf.set(key, (peer = peerOfKey(key)));
      return peer;
    });
    this.applying = this.applying.then(async () => {
      const { added, removed } = await this.host.setMembers(members);
      for (const p of added) this.log('%s admitted by the log: connections allowed', p);
      for (const p of removed) this.log('%s revoked by the log: cut off', p);
      if (added.length || removed.length) this.onChange();
    });
    return this.applying;
  }
}
