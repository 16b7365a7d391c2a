import { type Signer, signerFromSeed } from '../../protocol/ed25519.js';
import { type Payload, toHex } from '../../protocol/log-entry.js';
import { Ledger } from '../../nodes/ledger/ledger.js';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import { prng } from '../../nodes/util/prng.js';
import { resultPayload, taskPayload } from './tasks.js';

export function signers(n: number, salt = 1): Signer[] {
  return Array.from({ length: n }, (_, i) =>
    signerFromSeed(new Uint8Array(32).fill(0).map((_, k) => (k === 0 ? i + 1 : k === 1 ? salt : 7))),
  );
}

/** n replicas in memory sharing one genesis written by replica 0 (admin; everyone a member). */
export function memoryFleet(n: number, salt = 1): { ledgers: Ledger[]; signers: Signer[] } {
  const keys = signers(n, salt);
  const ledgers = keys.map((k) => new Ledger(new MemoryLogStore(), k));
  const genesis = ledgers[0].append({
    type: 'genesis',
    fleet: 'test',
    members: keys.map((k) => toHex(k.publicKey)),
    admins: [toHex(keys[0].publicKey)],
  });
  for (const l of ledgers.slice(1)) l.ingest(genesis.bytes);
  return { ledgers, signers: keys };
}

const hex = (random: () => number): string =>
  Array.from({ length: 64 }, () => '0123456789abcdef'[Math.floor(random() * 16)]).join('');

/** A random but valid payload for `ledger`'s author, drawing tasks from what it has seen. */
export function randomPayload(
  ledger: Ledger,
  members: string[],
  random: () => number,
  counter: { n: number },
): Payload {
  const tasks = [...ledger.state.tasks.keys()];
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)];
  const r = random();
  if (tasks.length === 0 || r < 0.25) {
    return taskPayload(`t${counter.n++}`, { input: hex(random), f: Math.floor(random() * 2) });
  }
  const task = pick(tasks);
  if (r < 0.45) {
    const executors = [...new Set([pick(members), pick(members), pick(members)])];
    return { type: 'assign', task, executors };
  }
  if (r < 0.8) {
    // Two possible answers, close values: quorums form, sometimes disagree.
    const good = random() < 0.8;
    return resultPayload(task, good ? 1 : 2, random() * 1e-6);
  }
  if (r < 0.9) return { type: 'claim', task };
  return {
    type: 'tile',
    tile: `x${Math.floor(random() * 4)}y0`,
    version: Math.floor(random() * 100),
    digest: hex(random),
  };
}

export { prng };
