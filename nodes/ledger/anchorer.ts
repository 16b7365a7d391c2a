import { EventEmitter } from 'node:events';
import { type DecodedEntry, type Hex, fromHex, toHex } from '../../protocol/log-entry.js';
import { MerkleTree } from '../../protocol/merkle.js';
import { type AnchorChain, ChainError } from './anchor-chain.js';
import { AnchorTree } from './anchor-tree.js';
import type { AnchorQueue, QueuedAnchor } from './anchor-queue.js';
import {
  type GasPlan,
  type IotaDeployment,
  MAX_RESULTS_PER_ANCHOR,
  IotaTxError,
  type SignedTx,
  buildAnchorTx,
  iotaAddressOf,
  iotaKeypair,
  readAnchorTx,
} from './iota-tx.js';
import type { Ledger } from './ledger.js';

export interface AnchorerOptions {
  ledger: Ledger;
  /** The robot's Ed25519 seed: the same key signs log entries and IOTA transactions. */
  seed: Uint8Array;
  deployment: IotaDeployment;
  queue: AnchorQueue;
  /** Absent when no IOTA node is configured: anchors are built, signed (if gas is known) and queued. */
  chain?: AnchorChain;
  /** A gas coin known in advance lets a robot sign while partitioned from every node. */
  gas?: GasPlan;
  gasBudget?: bigint;
  probeTimeoutMs?: number;
  finalityTimeoutMs?: number;
  backoffMs?: { base: number; max: number };
  now?: () => number;
}

export interface FlushReport {
  anchored: { root: Hex; tx: string; checkpoint: number }[];
  waiting: { root: Hex; reason: string; retryAt: number }[];
  /** Aborted on chain: never retried (the reason names the Move abort). */
  failed: { root: Hex; reason: string }[];
}

const toB64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const fromB64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

export const signedOf = (item: QueuedAnchor): SignedTx | undefined =>
  item.signed && {
    bytes: fromB64(item.signed.bytes),
    signature: item.signed.signature,
    digest: item.signed.digest,
    sender: item.signed.sender,
  };

/**
 * Commits Merkle roots of the log on IOTA. `snapshot` queues the log as it stands (signed at
 * once when gas is known); `flush` submits what is due when a node answers, waits for finality
 * and appends the receipt to the log. Every state change is written to the durable queue before
 * the next network step, so a crash or partition at any point leaves the anchor queued, and a
 * transaction submitted before a crash is found again by its digest instead of being re-signed.
 */
export class Anchorer extends EventEmitter<{
  relay: [QueuedAnchor];
  anchored: [{ root: Hex; tx: string; checkpoint: number }];
  failed: [{ root: Hex; reason: string }];
}> {
  readonly address: string;
  private gas: GasPlan | undefined;
  /**
   * Set when the package aborted because this robot is not registered (or was revoked): every
   * anchor would abort the same way and cost gas, so none is submitted until the robot restarts.
   */
  private notRegistered: string | undefined;
  private readonly o: Required<
    Pick<AnchorerOptions, 'probeTimeoutMs' | 'finalityTimeoutMs' | 'backoffMs' | 'now' | 'gasBudget'>
  > &
    AnchorerOptions;

  constructor(options: AnchorerOptions) {
    super();
    this.o = {
      probeTimeoutMs: 3000,
      finalityTimeoutMs: 60_000,
      backoffMs: { base: 1000, max: 60_000 },
      now: Date.now,
      gasBudget: 20_000_000n,
      ...options,
    };
    this.gas = options.gas;
    this.address = iotaKeypair(options.seed).toIotaAddress();
    this.o.ledger.on('entry', this.onEntry);
  }

  get queued(): QueuedAnchor[] {
    return this.o.queue.all();
  }

  /** The anchored tree, kept between anchors (created at the first snapshot). */
  private tree: AnchorTree | undefined;
  /** Tasks whose entries arrived since the last snapshot: the only ones whose decision may be new. */
  private readonly touched = new Set<string>();
  /** Tasks whose final result an anchor of ours committed (or an anchor before we started). */
  private committed: Set<string> | undefined;
  /** When this robot last saw a genuine anchor enter the log (its clock, ms); 0: none yet. */
  lastAnchorAt = 0;
  private readonly onEntry = (d: DecodedEntry): void => {
    const p = d.entry.payload;
    if ('task' in p && typeof p.task === 'string') this.touched.add(p.task);
    // One check at a time, in log order (anchors come once a period).
    if (p.type === 'anchor') this.noting = this.noting.then(() => this.noteAnchor(p));
  };
  private noting: Promise<void> = Promise.resolve();

  /** Resolves once every anchor entry seen so far has been checked (lastAnchorAt is up to date). */
  anchorsChecked(): Promise<void> {
    return this.noting;
  }

  /**
   * An anchor entry counts (it ends the period's turns) only if its transaction is signed by a
   * member, calls our package and commits the root it names: a member appending made-up anchor
   * entries would otherwise stop every robot from anchoring.
   */
  private async noteAnchor(p: Extract<DecodedEntry['entry']['payload'], { type: 'anchor' }>): Promise<void> {
    try {
      const tx = await readAnchorTx(p.txBytes, p.txSig);
      const members = new Set([...this.o.ledger.state.members].map((k) => iotaAddressOf(fromHex(k))));
      if (tx.packageId === this.o.deployment.packageId && toHex(tx.root) === p.root && members.has(tx.sender))
        this.lastAnchorAt = this.o.now();
    } catch (err) {
      if (!(err instanceof IotaTxError)) throw err;
      // Not a transaction, or not the sender's: it takes nobody's turn.
    }
  }

  /** Stops following the log (the anchor tree and the tasks touched). */
  close(): void {
    this.tree?.close();
    this.o.ledger.off('entry', this.onEntry);
  }

  /**
   * Queues an anchor over everything the log holds now; undefined when already anchored or
   * queued. The tree is kept between anchors (AnchorTree), so an anchor costs what arrived since
   * the last one, not the whole log; only a log with more than 64 heads (an anchor names at most
   * 64) is hashed whole, over what those heads reach.
   */
  async snapshot(): Promise<QueuedAnchor | undefined> {
    const { ledger, queue } = this.o;
    const all = ledger.heads();
    if (all.length === 0) return undefined;
    this.tree ??= new AnchorTree(ledger);
    const heads = all.slice(0, 64);
    let root: Hex;
    let ids: readonly Hex[];
    let inRange: (id: Hex) => boolean;
    if (all.length <= heads.length) {
      const t = this.tree.update()!;
      root = toHex(t.root);
      ids = this.tree.leaves();
      inRange = (id) => ledger.has(id);
    } else {
      ids = ledger.ancestry(heads);
      root = toHex(new MerkleTree(ids.map(fromHex)).root);
      const range = new Set(ids);
      inRange = (id) => range.has(id);
    }
    const anchors = ledger.state.anchors;
    if (anchors.some((a) => a.root === root) || queue.get(root)) return undefined;
    const committed = this.committedTasks();
    const candidates = [...this.touched].sort();
    const results = candidates
      .map((task) => ledger.state.tasks.get(task))
      // Final decisions only: a provisional answer may still be overturned.
      .filter((t): t is NonNullable<typeof t> => !!t?.decision && inRange(t.decision.at) && !committed.has(t.task))
      .slice(0, MAX_RESULTS_PER_ANCHOR)
      .map((t) => ({ task: t.task, digest: t.decision!.digest }));
    for (const r of results) committed.add(r.task);
    // A task's decision changes only with a new entry of that task, which touches it again; what
    // stays is a decision past the cap (or past the heads named), for the next anchor.
    this.touched.clear();
    for (const t of candidates) if (ledger.state.tasks.get(t)?.decision && !committed.has(t)) this.touched.add(t);
    const item: QueuedAnchor = {
      root,
      count: ids.length,
      heads,
      firstLamport: ledger.lamportOf(ids[0])!,
      lastLamport: ledger.lamportOf(ids[ids.length - 1])!,
      results,
      relayed: false,
      attempts: 0,
      notBefore: 0,
    };
    // One transaction per gas coin version: sign offline only if no other of ours holds the coin.
    if (this.gas && !queue.all().some((q) => q.signed && !q.relayed)) {
      const signed = await this.sign(item, this.gas);
      item.signed = {
        bytes: toB64(signed.bytes),
        signature: signed.signature,
        digest: signed.digest,
        sender: signed.sender,
      };
    }
    queue.put(item);
    // Relayed for a peer with a node to submit, only when we have none: two robots submitting the
    // same transaction would both record it in the log.
    if (item.signed && !this.o.chain) this.emit('relay', item);
    return item;
  }

  /**
   * The tasks already committed: at the first call, those decided within the log's last anchor
   * (its range walked once) and in our queued anchors; then each anchor adds its own.
   */
  private committedTasks(): Set<string> {
    if (this.committed) return this.committed;
    const { ledger, queue } = this.o;
    const committed = new Set<string>();
    const last = ledger.state.anchors[ledger.state.anchors.length - 1];
    if (last && last.heads.every((h) => ledger.has(h))) {
      const covered = new Set(ledger.ancestry(last.heads));
      for (const t of ledger.state.tasks.values()) if (t.decision && covered.has(t.decision.at)) committed.add(t.task);
    }
    for (const q of queue.all()) for (const r of q.results) committed.add(r.task);
    // Every task known now is a candidate once: those decided since the last anchor are new.
    for (const t of ledger.state.tasks.keys()) if (!committed.has(t)) this.touched.add(t);
    return (this.committed = committed);
  }

  /** A peer's signed anchor reached us over the mesh: submit it if we can reach a node. */
  acceptRelay(item: QueuedAnchor): boolean {
    if (
      !this.o.chain ||
      !item.signed ||
      this.o.queue.get(item.root) ||
      this.o.ledger.state.anchors.some((a) => a.root === item.root)
    )
      return false;
    this.o.queue.put({ ...item, relayed: true, attempts: 0, notBefore: 0, lastError: undefined });
    return true;
  }

  /** One pass over the queue: submits what is due. Never throws for network trouble. */
  async flush(): Promise<FlushReport> {
    const { queue, ledger, chain } = this.o;
    const report: FlushReport = { anchored: [], waiting: [], failed: [] };
    for (const item of queue.all()) if (ledger.state.anchors.some((a) => a.root === item.root)) queue.remove(item.root);
    for (const item of queue.all()) if (item.failed) report.failed.push({ root: item.root, reason: item.failed });
    const due = queue.all().filter((i) => !i.failed && i.notBefore <= this.o.now());
    if (due.length === 0) return report;
    if (this.notRegistered) {
      for (const i of due) report.waiting.push({ root: i.root, reason: this.notRegistered, retryAt: i.notBefore });
      return report;
    }
    if (!chain) {
      for (const i of due)
        report.waiting.push({ root: i.root, reason: 'no IOTA node configured', retryAt: i.notBefore });
      return report;
    }
    if (!(await chain.probe(this.o.probeTimeoutMs))) {
      for (const i of due)
        report.waiting.push(this.defer(i, `IOTA node did not answer within ${this.o.probeTimeoutMs} ms`));
      return report;
    }
    for (const item of due) {
      try {
        report.anchored.push(await this.submit(item, chain));
      } catch (err) {
        if (!(err instanceof ChainError)) throw err;
        if (err.code === 'ABORTED') report.failed.push({ root: item.root, reason: err.message });
        else if (queue.get(item.root)) report.waiting.push(this.defer(queue.get(item.root)!, err.message));
      }
    }
    return report;
  }

  private async submit(item: QueuedAnchor, chain: AnchorChain): Promise<{ root: Hex; tx: string; checkpoint: number }> {
    let signed = signedOf(item);
    if (signed) {
      // Submitted before (a lost reply, a crash, a relay): what became of it decides the next step.
      const known = await chain.lookup(signed.digest);
      if (known?.failure) {
        const code = known.failure.abort ? 'ABORTED' : 'FAILED';
        this.executedAndFailed(
          item,
          new ChainError(code, `transaction ${signed.digest} failed: ${known.failure.error}`, {
            failure: known.failure,
          }),
        );
      }
      if (known?.checkpoint !== undefined) return this.record(item, signed, known.checkpoint);
      if (known)
        return this.record(item, signed, (await chain.waitFinal(signed.digest, this.o.finalityTimeoutMs)).checkpoint);
    } else {
      if (!this.gas) {
        const { coin, price } = await chain.gasFor(this.address);
        this.gas = { coin, price, budget: this.o.gasBudget };
      }
      signed = await this.sign(item, this.gas);
      // Durable before submission: after a crash we look this digest up instead of signing anew.
      item = {
        ...item,
        signed: {
          bytes: toB64(signed.bytes),
          signature: signed.signature,
          digest: signed.digest,
          sender: signed.sender,
        },
      };
      this.o.queue.put(item);
    }
    try {
      const { gas } = await chain.execute(signed);
      if (gas && !item.relayed && this.gas) this.gas = { ...this.gas, coin: gas };
    } catch (err) {
      if (err instanceof ChainError && err.code === 'REJECTED' && !item.relayed) {
        // Refused before execution, usually a stale gas coin: forget it and the signature; the
        // next pass rebuilds. Nothing was charged.
        this.gas = undefined;
        this.o.queue.put({ ...item, signed: undefined });
      }
      if (err instanceof ChainError && (err.code === 'FAILED' || err.code === 'ABORTED'))
        this.executedAndFailed(item, err);
      throw err;
    }
    const { checkpoint } = await chain.waitFinal(signed.digest, this.o.finalityTimeoutMs);
    return this.record(item, signed, checkpoint);
  }

  /**
   * A transaction that executed and failed, gas charged: the coin moved on. ABORTED is final for
   * this anchor (and, for ENotRegistered, for every anchor of this robot until it restarts);
   * FAILED (out of gas, …) is signed anew with the moved coin on a later pass.
   */
  private executedAndFailed(item: QueuedAnchor, err: ChainError): never {
    if (!item.relayed) this.gas = err.executed?.gas && this.gas ? { ...this.gas, coin: err.executed.gas } : undefined;
    if (err.code === 'ABORTED') {
      this.o.queue.put({ ...item, failed: err.message, lastError: err.message });
      if (err.executed?.failure.abort?.name === 'ENotRegistered')
        this.notRegistered =
          `${err.message}: register ${this.address} in the fleet's registry (or undo its revocation), ` +
          'then restart the robot';
      this.emit('failed', { root: item.root, reason: err.message });
    } else if (item.relayed) {
      this.o.queue.remove(item.root); // another robot's transaction: only it can sign anew
    } else {
      this.o.queue.put({ ...item, signed: undefined, lastError: err.message });
    }
    throw err;
  }

  private record(
    item: QueuedAnchor,
    signed: SignedTx,
    checkpoint: number,
  ): { root: Hex; tx: string; checkpoint: number } {
    const done = { root: item.root, tx: signed.digest, checkpoint };
    // Another robot recorded this transaction already (it relayed it to us, or submitted ours).
    if (this.o.ledger.state.anchors.some((a) => a.tx === signed.digest)) {
      this.o.queue.remove(item.root);
      return done;
    }
    this.o.ledger.append({
      type: 'anchor',
      root: item.root,
      count: item.count,
      heads: item.heads,
      tx: signed.digest,
      checkpoint,
      txBytes: signed.bytes,
      txSig: signed.signature,
    });
    this.o.queue.remove(item.root);
    this.emit('anchored', done);
    return done;
  }

  private defer(item: QueuedAnchor, reason: string): { root: Hex; reason: string; retryAt: number } {
    const { base, max } = this.o.backoffMs;
    const attempts = item.attempts + 1;
    const notBefore = this.o.now() + Math.min(max, base * 2 ** Math.min(attempts - 1, 30));
    this.o.queue.put({ ...item, attempts, notBefore, lastError: reason });
    return { root: item.root, reason, retryAt: notBefore };
  }

  private sign(item: QueuedAnchor, gas: GasPlan): Promise<SignedTx> {
    return buildAnchorTx(this.o.seed, this.o.deployment, gas, {
      root: fromHex(item.root),
      count: item.count,
      firstLamport: item.firstLamport,
      lastLamport: item.lastLamport,
      results: item.results.map((r) => ({ task: r.task, digest: fromHex(r.digest) })),
    });
  }
}
