import { signerFromSeed } from '../../protocol/ed25519.js';
import { signEntry, toHex } from '../../protocol/log-entry.js';
import { Ledger } from '../../nodes/ledger/ledger.js';
import { SqliteLogStore } from '../../nodes/ledger/sqlite-store.js';

/** Appends to a SQLite-backed ledger until killed, printing "ack <id>" once each entry is durable. */
const path = process.argv[2];
const signer = signerFromSeed(new Uint8Array(32).fill(5));
const ledger = new Ledger(new SqliteLogStore(path), signer);
const me = toHex(signer.publicKey);
if (ledger.size === 0)
  ledger.ingest(
    signEntry(
      { seq: 1, lamport: 1, parents: [], payload: { type: 'genesis', fleet: 'crash', members: [me], admins: [me] } },
      signer,
    ).bytes,
  );
process.stdout.write(`ready ${ledger.size}\n`);
for (let i = 0; ; i++) {
  const e = ledger.append({ type: 'claim', task: `c${ledger.size}-${i}` });
  process.stdout.write(`ack ${e.idHex}\n`);
}
