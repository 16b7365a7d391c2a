import { signerFromSeed } from '../../protocol/ed25519.js';
import { IotaStandIn } from '../../nodes/ledger/iota-standin.js';
import type { IotaDeployment } from '../../nodes/ledger/iota-tx.js';
import { Ledger } from '../../nodes/ledger/ledger.js';
import { type LogStore, MemoryLogStore } from '../../nodes/ledger/store.js';

export { IotaStandIn as FakeIotaNode };
export const DEPLOYMENT: IotaDeployment = {
  packageId: `0x${'ab'.repeat(32)}`,
  registryId: `0x${'22'.repeat(32)}`,
  registryVersion: 3,
};
export const robotSeed = (i: number): Uint8Array => new Uint8Array(32).map((_, k) => (k * 7 + i * 31 + 1) & 0xff);

/** A robot's ledger holding a genesis (it is the admin) and a few entries to anchor. */
export function robotLedger(store: LogStore = new MemoryLogStore(), seed = robotSeed(0)): Ledger {
  const ledger = new Ledger(store, signerFromSeed(seed));
  if (ledger.size === 0) {
    ledger.append({ type: 'genesis', fleet: 'test', members: [ledger.self!], admins: [ledger.self!] });
    for (let i = 0; i < 5; i++) ledger.append({ type: 'claim', task: `warmup-${i}` });
  }
  return ledger;
}
