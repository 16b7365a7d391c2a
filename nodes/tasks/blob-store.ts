import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Hex } from '../../protocol/bytes.js';

/**
 * Task inputs by sha256: what a requester committed to in a task entry, kept so that executors
 * assigned later (after a partition heals, or in place of one that failed) can fetch it by digest
 * from the requester or from anyone who holds it. Bounded: the oldest blobs go first.
 */
export interface BlobStore {
  /** Stores `bytes` under their sha256 and returns it. */
  put(bytes: Uint8Array): Promise<Hex>;
  get(digest: Hex): Promise<Uint8Array | undefined>;
  has(digest: Hex): boolean;
  readonly bytes: number;
}

export const blobDigest = (bytes: Uint8Array): Hex => createHash('sha256').update(bytes).digest('hex');

const DIGEST = /^[0-9a-f]{64}$/;

/** In memory, for tests and robots without a data folder. */
export class MemoryBlobStore implements BlobStore {
  private readonly blobs = new Map<Hex, Uint8Array>();
  bytes = 0;

  constructor(private readonly maxBytes = 256 * 1024 * 1024) {}

  async put(bytes: Uint8Array): Promise<Hex> {
    const digest = blobDigest(bytes);
    if (!this.blobs.has(digest)) {
      this.blobs.set(digest, bytes.slice());
      this.bytes += bytes.length;
      evictOldest(this.blobs, this.maxBytes, (size) => (this.bytes -= size));
    }
    return digest;
  }

  async get(digest: Hex): Promise<Uint8Array | undefined> {
    return this.blobs.get(digest);
  }

  has(digest: Hex): boolean {
    return this.blobs.has(digest);
  }
}

function evictOldest(blobs: Map<Hex, { length: number } | number>, maxBytes: number, drop: (n: number) => void) {
  let total = 0;
  for (const v of blobs.values()) total += typeof v === 'number' ? v : v.length;
  for (const [digest, v] of blobs) {
    if (total <= maxBytes || blobs.size <= 1) break;
    const size = typeof v === 'number' ? v : v.length;
    blobs.delete(digest);
    total -= size;
    drop(size);
  }
}

/**
 * One file per blob in a folder, named by its digest, written to a temporary name and renamed
 * (a crash leaves a whole blob or none). Files whose content does not hash to their name (a
 * damaged disk) are treated as absent and removed on read.
 */
export class FileBlobStore implements BlobStore {
  /** Digest → size, oldest first. */
  private readonly sizes = new Map<Hex, number>();
  bytes = 0;

  constructor(
    private readonly dir: string,
    private readonly maxBytes = 1024 * 1024 * 1024,
  ) {
    mkdirSync(dir, { recursive: true });
    const found = readdirSync(dir)
      .filter((name) => DIGEST.test(name))
      .map((name) => ({ name, stat: statSync(join(dir, name)) }))
      .sort((a, b) => a.stat.mtimeMs - b.stat.mtimeMs);
    for (const { name, stat } of found) {
      this.sizes.set(name, stat.size);
      this.bytes += stat.size;
    }
  }

  async put(bytes: Uint8Array): Promise<Hex> {
    const digest = blobDigest(bytes);
    if (this.sizes.has(digest)) return digest;
    const path = join(this.dir, digest);
    const temporary = `${path}.${process.pid}.tmp`;
    await writeFile(temporary, bytes);
    await rename(temporary, path);
    this.sizes.set(digest, bytes.length);
    this.bytes += bytes.length;
    const before = new Set(this.sizes.keys());
    evictOldest(this.sizes, this.maxBytes, (size) => (this.bytes -= size));
    // Evicted blobs are forgotten already; a file that will not go away only costs disk space.
    for (const gone of before) if (!this.sizes.has(gone)) await unlink(join(this.dir, gone)).catch(() => undefined);
    return digest;
  }

  async get(digest: Hex): Promise<Uint8Array | undefined> {
    if (!this.sizes.has(digest)) return undefined;
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(join(this.dir, digest)));
    } catch {
      this.forget(digest);
      return undefined;
    }
    if (blobDigest(bytes) !== digest) {
      this.forget(digest);
      await unlink(join(this.dir, digest)).catch(() => undefined); // forgotten above; a leftover file is harmless
      return undefined;
    }
    return bytes;
  }

  has(digest: Hex): boolean {
    return this.sizes.has(digest);
  }

  private forget(digest: Hex): void {
    this.bytes -= this.sizes.get(digest) ?? 0;
    this.sizes.delete(digest);
  }
}
