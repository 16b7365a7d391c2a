import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DecodedEntry } from '../../protocol/log-entry.js';
import type { Ledger } from './ledger.js';
import { StoreError } from './store.js';

/**
 * A mark beside a robot's log store saying this identity has written entries. A store that lost
 * them (emptied, replaced by a blank file, tables dropped and recreated) would make the robot
 * start its sequence numbers at 1 again: its peers would record equivocations and exclude it.
 * With the mark present and none of its own entries in the store, the robot refuses to start.
 */
export function checkOwnEntries(ledger: Ledger, mark: string, store: string): void {
  const self = ledger.self;
  if (!self || !existsSync(mark)) return;
  let author: unknown;
  try {
    author = (JSON.parse(readFileSync(mark, 'utf8')) as { author?: unknown }).author;
  } catch {
    return; // an unreadable mark proves nothing either way
  }
  if (author !== self) return;
  if ((ledger.summary().get(self)?.maxSeq ?? 0) > 0) return;
  throw new StoreError(
    'LOST_OWN_ENTRIES',
    `log store ${store} holds none of this robot's entries, but it has written some (${mark}); ` +
      'restore the store from a backup, or move it, the mark and identity.key away to start as a new robot',
  );
}

/** Writes the mark (once, fsynced) when the ledger appends its first own entry. */
export function markOwnEntries(ledger: Ledger, mark: string): () => void {
  const self = ledger.self;
  if (!self) return () => undefined;
  const write = (): void => {
    try {
      mkdirSync(dirname(mark), { recursive: true }); // the store may live outside the data folder
      const fd = openSync(mark, 'w', 0o600);
      try {
        writeSync(fd, `${JSON.stringify({ author: self, since: new Date().toISOString() })}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      // Called while an entry is being committed: the entry stands; the robot says it is unguarded.
      process.emitWarning(
        `cannot write ${mark} (${(err as Error).message}): a store that later loses this robot's entries ` +
          'will not be noticed at start',
        'RobomeshStore',
      );
    }
  };
  if ((ledger.summary().get(self)?.maxSeq ?? 0) > 0) {
    if (!existsSync(mark)) write();
    return () => undefined;
  }
  const onEntry = (d: DecodedEntry): void => {
    if (!ledger.isOwn(d)) return;
    ledger.off('entry', onEntry);
    write();
  };
  ledger.on('entry', onEntry);
  return () => ledger.off('entry', onEntry);
}
