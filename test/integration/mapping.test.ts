import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { mergeTile } from '../../contracts/map-consensus.js';
import { signerFromSeed } from '../../protocol/ed25519.js';
import { EntryError, signEntry } from '../../protocol/log-entry.js';
import { TILE, TileError, tileDigest } from '../../protocol/map-tile.js';
import { Ledger } from '../../nodes/ledger/ledger.js';
import { MemoryLogStore } from '../../nodes/ledger/store.js';
import { type PublishedTile, MapService } from '../../nodes/mapping/map-service.js';
import { MappingFleet, deliver } from '../../nodes/apps/sim/mapping-fleet.js';
import { mapQuality } from '../../nodes/apps/sim/map-quality.js';
import { assemble, mapDigest, toMapYaml, toOccupancyGrid, toPgm, toPng } from '../../nodes/mapping/merged-map.js';
import { LogOddsGrid } from '../../nodes/mapping/occupancy-grid.js';
import { LDS_01, createWorld, loadMapServerMap, scan } from '../../nodes/apps/sim/index.js';
import { prng } from '../../nodes/util/prng.js';
import { testSeed, withSeed } from '../helpers/seed.js';

/**
 * The seed work's faults: robot 6 draws a wall 20 cells thick, robot 7 one 180 cells thick, across the
 * shared corridor.
 */
export const LIARS = [
  { robot: 6, walls: [{ from: { x: 2, y: 10 }, to: { x: 18, y: 10 }, thickness: 20 }] },
  { robot: 7, walls: [{ from: { x: 4, y: 10 }, to: { x: 16, y: 10 }, thickness: 180 }] },
];

const shuffle = <T>(xs: T[], random: () => number): T[] => {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
};

describe('occupancy grid', () => {
  it('a scan from the middle of a walled box maps walls occupied and the inside free', () => {
    const world = createWorld('box', 60, 60, 0.05);
    for (let i = 0; i < 60; i++)
      for (const [c, r] of [
        [i, 0],
        [i, 59],
        [0, i],
        [59, i],
      ])
        world.occupied[r * 60 + c] = 1;
    const grid = new LogOddsGrid({ resolution: 0.05, origin: { x: 0, y: 0 } });
    const pose = { x: 1.5, y: 1.5, theta: 0.3 };
    for (let k = 0; k < 3; k++)
      grid.insertScan(
        pose,
        scan(world, pose, { ...LDS_01, noiseStd: 0 }, () => 0),
        1,
      );
    const tiles = new Map(grid.takeChanges().map((c) => [c.tile, mergeTile([{ author: 'a', ...c }])]));
    const q = mapQuality(assemble(tiles, grid.frame), world);
    assert.ok(q.accuracy > 0.97, `accuracy ${q.accuracy}`);
    assert.ok(q.coverage > 0.9, `coverage ${q.coverage}`);
    assert.equal(grid.takeChanges().length, 0, 'nothing changed since: no new versions');
  });
});

describe('collaborative mapping, 8 robots on builtin:office (in-memory network)', function () {
  this.timeout(120_000);
  const seed = 7;
  let honest: MappingFleet;
  let byzantine: MappingFleet;
  let flaggedAt: number | undefined;

  before(() => {
    honest = new MappingFleet({ seed, robots: 8 });
    honest.runConnected();
    byzantine = new MappingFleet({ seed, robots: 8, byzantine: LIARS });
    byzantine.runConnected((t) => {
      if (flaggedAt === undefined && byzantine.services[0].ledger.state.flagged.length === 2) flaggedAt = t;
    });
  });

  it("the merged map matches the simulator's ground truth: ≥ 96 % of known cells, ≥ 95 % of free space covered", () => {
    const q = honest.quality(0);
    console.log(
      `      honest merged map: accuracy ${(q.accuracy * 100).toFixed(1)} %, ` +
        `occupied IoU ${q.iou.toFixed(3)}, coverage ${(q.coverage * 100).toFixed(1)} %`,
    );
    assert.ok(q.accuracy >= 0.96, `accuracy ${q.accuracy}`);
    assert.ok(q.coverage >= 0.95, `coverage ${q.coverage}`);
    assert.deepEqual(honest.services[0].ledger.state.flagged, [], 'no honest robot flagged');
    const digests = new Set(honest.services.map((_, i) => honest.digest(i)));
    assert.equal(digests.size, 1, 'every robot holds the same merged map');
  });

  it(
    '2 of 8 robots drawing fake walls (20 and 180 cells) are ' +
      "flagged in every log; the map is back to the honest robots' map",
    () => {
      const liars = LIARS.map((l) => byzantine.keys[l.robot]).sort();
      for (const s of byzantine.services)
        assert.deepEqual([...s.ledger.state.flagged].sort(), liars, 'the same two robots flagged on every robot');
      const hashes = new Set(byzantine.services.map((s) => s.ledger.stateHash()));
      assert.equal(hashes.size, 1);

      // Honest-only: the 6 honest robots of the run without liars (same seed: same observations).
      const honestOnly = mapQuality(
        assemble(
          mergedWithout(
            honest.services[0],
            LIARS.map((l) => honest.keys[l.robot]),
          ),
          honest.services[0].grid.frame,
        ),
        honest.world,
      );
      const filtered = byzantine.quality(0);
      const unfiltered = mapQuality(
        assemble(mergedWithout(byzantine.services[0], []), byzantine.services[0].grid.frame),
        byzantine.world,
      );
      console.log(
        `      accuracy: honest-only ${(honestOnly.accuracy * 100).toFixed(2)} ` +
          `%, with liars unfiltered ${(unfiltered.accuracy * 100).toFixed(2)} ` +
          `%, liars flagged ${(filtered.accuracy * 100).toFixed(2)} % (flagged after ${flaggedAt} simulated s)`,
      );
      assert.ok(Math.abs(filtered.accuracy - honestOnly.accuracy) <= 0.005, 'within 0.5 points of the honest-only map');
      assert.ok(unfiltered.accuracy < honestOnly.accuracy - 0.02, 'the fake walls did damage before filtering');
      for (const [key, t] of byzantine.services[0].ledger.state.tiles)
        assert.equal(tileDigest(byzantine.services[0].get(t.digest)!), t.digest, `tile ${key} digest logged`);
    },
  );
});

/** Merge of every contribution held except those of `excluded` (ignores flags in the log). */
function mergedWithout(s: MapService, excluded: string[]): Map<string, Int8Array> {
  const byTile = new Map<string, Parameters<typeof mergeTile>[0]>();
  for (const c of s.contributions()) {
    if (excluded.includes(c.author)) continue;
    byTile.set(c.tile, [...(byTile.get(c.tile) ?? []), c]);
  }
  return new Map([...byTile].map(([t, list]) => [t, mergeTile(list)]));
}

describe('merging is independent of arrival order', function () {
  this.timeout(120_000);

  it('contributions delivered in 30 random orders (old versions after new, duplicates) give one merged map', () => {
    const seed = testSeed();
    return withSeed(seed, () => {
      const fleet = new MappingFleet({ plan: 'builtin:small', robots: 4, seed: 3, publishEvery: 5, maxTime: 60 });
      const published: PublishedTile[] = [];
      while (!fleet.done) {
        const out = fleet.step();
        if (!out) continue;
        published.push(...out.flat());
        fleet.deliverAll(out);
        fleet.syncLogs();
      }
      const source = fleet.services[0].ledger;
      const reference = fleet.digest(0);
      assert.ok(published.length > 20, `${published.length} contributions`);
      const random = prng(seed);
      for (let trial = 0; trial < 30; trial++) {
        const observer = new MapService(new Ledger(new MemoryLogStore()), fleet.services[0].grid.frame);
        observer.ledger.ingest(source.get(source.ids()[0])!);
        const order = shuffle([...published, ...published.slice(0, 10)], random);
        for (const p of order) deliver(observer, [p]);
        for (const id of source.ids()) if (!observer.ledger.has(id)) observer.ledger.ingest(source.get(id)!);
        assert.equal(mapDigest(observer.merged()), reference, `trial ${trial}`);
      }
    });
  });

  it('mergeTile is a function of the set of contributions, not their order', () => {
    const seed = testSeed();
    return withSeed(seed, () => {
      const random = prng(seed);
      const contributions = Array.from({ length: 5 }, (_, a) => ({
        author: `a${a}`,
        tile: '0_0',
        version: 1,
        cells: Int8Array.from({ length: TILE * TILE }, () => Math.round((random() - 0.5) * 200)),
      }));
      const reference = mergeTile(contributions);
      for (let k = 0; k < 20; k++) assert.deepEqual(mergeTile(shuffle(contributions, random)), reference);
    });
  });
});

describe('map contributions: bad input is refused with a typed error', () => {
  const signer = signerFromSeed(new Uint8Array(32).fill(41));
  const ledger = new Ledger(new MemoryLogStore(), signer);
  ledger.append({ type: 'genesis', fleet: 'm', members: [ledger.self!], admins: [ledger.self!] });
  const service = new MapService(new Ledger(new MemoryLogStore()), { resolution: 0.05, origin: { x: 0, y: 0 } });
  service.ledger.ingest(ledger.get(ledger.ids()[0])!);
  const cells = new Int8Array(TILE * TILE).fill(-20);
  const good = { tile: '0_0', version: 1, cells };
  const entry = ledger.append({ type: 'tile', tile: '0_0', version: 1, digest: tileDigest(good) }).bytes;

  it(
    'accepts a matching contribution; refuses altered cells, ' +
      'wrong sizes, bad ids, forged entries, unnamed digests',
    () => {
      assert.equal(service.accept(entry, good), tileDigest(good));
      const altered = { ...good, cells: Int8Array.from(cells, (v, i) => (i === 7 ? 50 : v)) };
      assert.throws(
        () => service.accept(entry, altered),
        (e: TileError) => e.code === 'TILE_MISMATCH',
      );
      assert.throws(
        () => service.accept(entry, { ...good, cells: new Int8Array(10) }),
        (e: TileError) => e.code === 'BAD_TILE',
      );
      assert.throws(
        () => service.accept(entry, { ...good, tile: '../x' }),
        (e: TileError) => e.code === 'BAD_TILE',
      );
      const forged = Uint8Array.from(entry);
      forged[forged.length - 3] ^= 1;
      assert.throws(
        () => service.accept(forged, good),
        (e: EntryError) => e instanceof EntryError,
      );
      const stranger = signEntry(
        {
          seq: 1,
          lamport: 5,
          parents: [],
          payload: { type: 'tile', tile: '0_0', version: 1, digest: tileDigest(good) },
        },
        signerFromSeed(new Uint8Array(32).fill(42)),
      );
      assert.throws(
        () => service.accept(stranger.bytes, good),
        (e: EntryError) => e.code === 'UNKNOWN_AUTHOR',
      );
      assert.throws(
        () => service.accept(undefined, { ...good, version: 2 }),
        (e: TileError) => e.code === 'UNKNOWN_TILE',
      );
    },
  );

  it('says, per author, from which log entry on it still lacks tile cells', () => {
    const observer = new MapService(new Ledger(new MemoryLogStore()), { resolution: 0.05, origin: { x: 0, y: 0 } });
    const tile = (name: string, version: number): { tile: string; version: number; cells: Int8Array } => ({
      tile: name,
      version,
      cells: new Int8Array(TILE * TILE).fill(version),
    });
    const [a1, b1, b2] = [tile('1_0', 1), tile('2_0', 1), tile('2_0', 2)];
    const entries = [a1, b1, b2].map((t) =>
      ledger.append({ type: 'tile', tile: t.tile, version: t.version, digest: tileDigest(t) }),
    );
    for (const id of ledger.ids()) observer.ledger.ingest(ledger.get(id)!);
    const seqs = entries.map((e) => e.entry.seq);
    // 0_0 v1 (seq 2), 1_0 v1 and 2_0 v2 are current; 2_0 v1 was superseded and is not wanted.
    assert.deepEqual(observer.missingSince(), { [ledger.self!]: 2 });
    observer.accept(entry, good);
    assert.deepEqual(observer.missingSince(), { [ledger.self!]: seqs[0] });
    observer.accept(entries[0].bytes, a1);
    assert.deepEqual(observer.missingSince(), { [ledger.self!]: seqs[2] });
    observer.accept(entries[2].bytes, b2);
    assert.deepEqual(observer.missingSince(), {});
  });

  it(
    'cells vouched for by an entry the fold does not show ' + 'yet are taken once held, and a second copy of them too',
    () => {
      // As during a log sync: the entry is verified and ingested, the contracts fold at its end.
      const observer = new MapService(new Ledger(new MemoryLogStore()), { resolution: 0.05, origin: { x: 0, y: 0 } });
      const cells3 = { tile: '3_0', version: 1, cells: new Int8Array(TILE * TILE).fill(3) };
      observer.vouch(tileDigest(cells3));
      assert.equal(observer.accept(undefined, cells3), tileDigest(cells3));
      assert.equal(
        observer.accept(undefined, { ...cells3, cells: Int8Array.from(cells3.cells) }),
        tileDigest(cells3),
        "a second neighbour's copy",
      );
      assert.throws(
        () => observer.accept(undefined, { ...cells3, version: 2 }),
        (e: TileError) => e.code === 'UNKNOWN_TILE',
      );
    },
  );
});

describe('map exports', () => {
  it('PGM + YAML load back through the map_server loader; PNG decodes; OccupancyGrid fields', async () => {
    const states = new Int8Array(TILE * TILE);
    for (let i = 0; i < states.length; i++) states[i] = i % TILE < 10 ? 1 : i % TILE < 40 ? -1 : 0;
    const tiles = new Map([['1_0', states]]);
    const map = assemble(tiles, { resolution: 0.05, origin: { x: -1, y: 2 } });
    const dir = await mkdtemp(join(tmpdir(), 'rm-map-'));
    try {
      await writeFile(join(dir, 'map.pgm'), toPgm(map));
      await writeFile(join(dir, 'map.yaml'), toMapYaml(map, 'map.pgm'));
      const back = await loadMapServerMap(join(dir, 'map.yaml'));
      assert.deepEqual(
        [back.width, back.height, back.resolution, back.origin.x, back.origin.y],
        [TILE, TILE, 0.05, -1 + TILE * 0.05, 2],
      );
      for (let i = 0; i < states.length; i++) {
        if (states[i] === 0) assert.equal(back.known![i], 0);
        else assert.equal(back.occupied[i], states[i] === 1 ? 1 : 0, `cell ${i}`);
      }
      const png = PNG.sync.read(toPng(map));
      assert.deepEqual([png.width, png.height], [TILE, TILE]);
      const msg = toOccupancyGrid(map, 1_700_000_000_123);
      assert.deepEqual(msg.header.stamp, { sec: 1_700_000_000, nanosec: 123_000_000 });
      assert.equal(msg.data.length, msg.info.width * msg.info.height);
      assert.deepEqual([...new Set(msg.data)].sort(), [-1, 0, 100]);
      assert.equal(msg.info.origin.position.x, map.origin.x);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
