import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { RobomeshError } from '../../protocol/errors.js';
import {
  FLOOR_PLAN_NAMES,
  type GridWorld,
  ROBOT_RADIUS,
  type RobotStep,
  WorldSimulator,
  castRay,
  countFree,
  createWorld,
  defaultRobots,
  discIsFree,
  floorPlan,
  gaussian,
  isOccupied,
  lidarConfig,
  loadMapServerMap,
  loadWorld,
  scan,
  worldToCell,
} from '../../nodes/apps/sim/index.js';
import { prng } from '../../nodes/util/prng.js';
import type { LaserScan, Pose } from '../../protocol/sensors.js';
import { testSeed, withSeed } from '../helpers/seed.js';

const expectSimError = async (code: string, fn: () => unknown, mentions?: RegExp): Promise<void> => {
  await assert.rejects(
    async () => fn(),
    (err: unknown) => {
      assert.ok(err instanceof RobomeshError, `expected RobomeshError, got ${String(err)}`);
      assert.equal(err.code, code, err.message);
      if (mentions) assert.match(err.message, mentions);
      return true;
    },
  );
};

/** A walled box: `size` metres square, walls one cell thick, cell (0, 0) at the origin. */
function box(size: number, resolution = 0.05): GridWorld {
  const n = Math.round(size / resolution);
  const occupied = new Uint8Array(n * n);
  for (let i = 0; i < n; i++) {
    occupied[i] = occupied[(n - 1) * n + i] = occupied[i * n] = occupied[i * n + n - 1] = 1;
  }
  return createWorld('box', n, n, resolution, { x: 0, y: 0 }, occupied);
}

/** Metres from (x, y) along `angle` to the inside of a box's walls. */
function distanceToBoxWalls(world: GridWorld, x: number, y: number, angle: number): number {
  const lo = world.resolution;
  const hi = world.width * world.resolution - world.resolution;
  const dx = Math.cos(angle);
  const dy = Math.sin(angle);
  const tx = dx > 0 ? (hi - x) / dx : dx < 0 ? (lo - x) / dx : Infinity;
  const ty = dy > 0 ? (hi - y) / dy : dy < 0 ? (lo - y) / dy : Infinity;
  return Math.min(tx, ty);
}

/** Marks every cell a scan's beams passed through or stopped at, traced again from the true pose. */
function markObserved(world: GridWorld, pose: Pose, s: LaserScan, seen: Uint8Array): void {
  const mark = (cell: number): void => {
    seen[cell] = 1;
  };
  for (let i = 0; i < s.ranges.length; i++) {
    const hit = castRay(world, pose.x, pose.y, pose.theta + s.angleMin + i * s.angleIncrement, s.rangeMax, mark);
    if (hit.cell >= 0) seen[hit.cell] = 1;
  }
}

/** Free cells 4-connected to `start`. */
function reachableFree(world: GridWorld, start: Pose): Uint8Array {
  const reach = new Uint8Array(world.width * world.height);
  const { col, row } = worldToCell(world, start.x, start.y);
  const stack = [row * world.width + col];
  reach[stack[0]] = 1;
  while (stack.length > 0) {
    const cell = stack.pop()!;
    const c = cell % world.width;
    const r = (cell - c) / world.width;
    for (const [nc, nr] of [
      [c + 1, r],
      [c - 1, r],
      [c, r + 1],
      [c, r - 1],
    ]) {
      const next = nr * world.width + nc;
      if (nc >= 0 && nr >= 0 && nc < world.width && nr < world.height && world.occupied[next] === 0 && !reach[next]) {
        reach[next] = 1;
        stack.push(next);
      }
    }
  }
  return reach;
}

function hashRun(steps: RobotStep[][]): string {
  const h = createHash('sha256');
  for (const step of steps) {
    for (const s of step) {
      const p = [
        s.time,
        s.truePose.x,
        s.truePose.y,
        s.truePose.theta,
        s.odomPose.x,
        s.odomPose.y,
        s.odomPose.theta,
        s.done ? 1 : 0,
      ];
      h.update(s.name);
      h.update(new Uint8Array(Float64Array.from(p).buffer));
      if (s.scan) h.update(new Uint8Array(s.scan.ranges.buffer));
    }
  }
  return h.digest('hex');
}

describe('simulator: built-in floor plans', () => {
  it('have the documented sizes at 0.05 m per cell', () => {
    const size = { 'builtin:office': 400, 'builtin:warehouse': 400, 'builtin:small': 160 };
    for (const name of FLOOR_PLAN_NAMES) {
      const { world, starts, routes } = floorPlan(name);
      assert.equal(world.resolution, 0.05);
      assert.equal(world.width, size[name], name);
      assert.equal(world.height, size[name], name);
      assert.equal(starts.length, 8);
      assert.equal(routes.length, 8);
      const free = countFree(world) / (world.width * world.height);
      assert.ok(free > 0.5 && free < 0.95, `${name}: ${free} of the cells free`);
    }
    assert.throws(
      () => floorPlan('builtin:castle'),
      (e: unknown) => e instanceof RobomeshError && e.code === 'UNKNOWN_FLOOR_PLAN',
    );
  });

  it('start eight robots at distinct poses in free space', () => {
    for (const name of FLOOR_PLAN_NAMES) {
      const { world, starts } = floorPlan(name);
      starts.forEach((s, i) => {
        assert.ok(discIsFree(world, s.x, s.y, ROBOT_RADIUS), `${name} start ${i} (${s.x}, ${s.y})`);
        for (const t of starts.slice(i + 1))
          assert.ok(Math.hypot(s.x - t.x, s.y - t.y) > 4 * ROBOT_RADIUS, `${name}: starts too close`);
      });
    }
  });

  it('give routes whose waypoints and straight legs keep the footprint off every wall', () => {
    for (const name of FLOOR_PLAN_NAMES) {
      const { world, starts, routes } = floorPlan(name);
      routes.forEach((route, i) => {
        assert.ok(route.length >= 2, `${name} route ${i} has ${route.length} waypoints`);
        let prev = starts[i];
        for (const wp of route) {
          const n = Math.ceil(Math.hypot(wp.x - prev.x, wp.y - prev.y) / 0.01);
          for (let k = 0; k <= n; k++) {
            const x = prev.x + ((wp.x - prev.x) * k) / n;
            const y = prev.y + ((wp.y - prev.y) * k) / n;
            assert.ok(
              discIsFree(world, x, y, ROBOT_RADIUS),
              `${name} route ${i}: leg to (${wp.x}, ${wp.y}) touches a wall at (${x}, ${y})`,
            );
          }
          prev = wp;
        }
      });
    }
  });

  it('hand out named robot specs for 1..8 robots', () => {
    const plan = floorPlan('builtin:small');
    assert.deepEqual(
      defaultRobots(plan, 3).map((r) => r.name),
      ['r0', 'r1', 'r2'],
    );
    assert.equal(defaultRobots(plan, 2, 'frontier')[1].route, 'frontier');
    assert.throws(() => defaultRobots(plan, 9), RobomeshError);
  });
});

describe('simulator: map_server maps', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'robomesh-sim-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // Image rows top to bottom: a wall pixel top-left; bottom row: free, free, unknown (205), wall.
  const PIXELS = [
    [0, 254, 254, 254],
    [254, 254, 254, 254],
    [254, 254, 205, 0],
  ];
  const yaml = (image: string, negate = 0): string =>
    `image: ${image}\nresolution: 0.5\norigin: [-1.5, 2.0, 0.0]\nnegate: ` +
    `${negate}\noccupied_thresh: 0.65\nfree_thresh: 0.196\n`;

  async function writeMap(name: string, image: Uint8Array | string, negate = 0): Promise<string> {
    const ext = typeof image === 'string' || image[0] === 0x50 ? 'pgm' : 'png';
    await writeFile(join(dir, `${name}.${ext}`), image);
    await writeFile(join(dir, `${name}.yaml`), yaml(`${name}.${ext}`, negate));
    return join(dir, `${name}.yaml`);
  }

  function assertTestPattern(world: GridWorld): void {
    assert.equal(world.width, 4);
    assert.equal(world.height, 3);
    assert.equal(world.resolution, 0.5);
    assert.deepEqual(world.origin, { x: -1.5, y: 2.0 });
    // Our row 0 is the lowest y, i.e. the image's bottom row.
    assert.deepEqual(Array.from(world.occupied), [0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert.deepEqual(Array.from(world.known!), [1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert.ok(isOccupied(world, -1.25, 3.25), 'top-left pixel is the wall at the highest y');
    assert.ok(!isOccupied(world, -1.25, 2.25));
    assert.ok(isOccupied(world, 0.25, 2.25), 'bottom-right pixel is the wall at the lowest y');
    assert.ok(isOccupied(world, -1.6, 2.25), 'outside the map counts as a wall');
  }

  it('loads a binary P5 PGM with origin and row flip', async () => {
    const header = Buffer.from('P5\n# CREATOR: map_saver\n4 3\n255\n', 'latin1');
    const world = await loadMapServerMap(await writeMap('p5', Buffer.concat([header, Uint8Array.from(PIXELS.flat())])));
    assertTestPattern(world);
  });

  it('loads an ASCII P2 PGM with another maxval, and a 16-bit P5', async () => {
    const ascii =
      `P2\n# comment\n4 3 # ` +
      `dims\n15\n${PIXELS.map((row) => row.map((v) => Math.round((v * 15) / 255)).join(' ')).join('\n')}\n`;
    // 205 → 12 of 15 → 204: still unknown.
    assertTestPattern(await loadMapServerMap(await writeMap('p2', ascii)));
    const wide = Buffer.alloc(24);
    PIXELS.flat().forEach((v, i) => wide.writeUInt16BE(v * 257, 2 * i));
    assertTestPattern(
      await loadMapServerMap(await writeMap('p5wide', Buffer.concat([Buffer.from('P5 4 3 65535\n'), wide]))),
    );
  });

  it('loads grey and RGBA PNGs, and applies negate', async () => {
    const png = new PNG({ width: 4, height: 3 });
    PIXELS.flat().forEach((v, i) => png.data.set([v, v, v, 255], 4 * i));
    assertTestPattern(await loadMapServerMap(await writeMap('grey', PNG.sync.write(png, { colorType: 0 }))));
    assertTestPattern(await loadMapServerMap(await writeMap('rgba', PNG.sync.write(png, { colorType: 6 }))));
    const inverted = Buffer.concat([Buffer.from('P5 4 3 255\n'), Uint8Array.from(PIXELS.flat().map((v) => 255 - v))]);
    assertTestPattern(await loadMapServerMap(await writeMap('negated', inverted, 1)));
  });

  it('loads builtin names and map paths through one entry point', async () => {
    assert.equal((await loadWorld('builtin:small')).width, 160);
    const path = await writeMap('entry', Buffer.concat([Buffer.from('P5 4 3 255\n'), Uint8Array.from(PIXELS.flat())]));
    assertTestPattern(await loadWorld(path));
  });

  it('rejects malformed YAML, bad fields, bad magic, truncated pixels and missing files clearly', async () => {
    const good = Buffer.concat([Buffer.from('P5 4 3 255\n'), Uint8Array.from(PIXELS.flat())]);
    await writeFile(join(dir, 'broken.yaml'), 'image: [map.pgm\nresolution: 0.05\n');
    await expectSimError('BAD_MAP_YAML', () => loadMapServerMap(join(dir, 'broken.yaml')), /not valid YAML/);
    await writeFile(join(dir, 'noimage.yaml'), 'resolution: 0.05\norigin: [0, 0, 0]\n');
    await expectSimError('BAD_MAP_YAML', () => loadMapServerMap(join(dir, 'noimage.yaml')), /missing image/);
    await writeFile(join(dir, 'badres.yaml'), 'image: x.pgm\nresolution: -1\norigin: [0, 0, 0]\n');
    await expectSimError(
      'BAD_MAP_YAML',
      () => loadMapServerMap(join(dir, 'badres.yaml')),
      /resolution must be positive/,
    );
    await writeFile(
      join(dir, 'badthresh.yaml'),
      'image: x.pgm\nresolution: 0.05\norigin: [0, 0, 0]\noccupied_thresh: 0.1\nfree_thresh: 0.5\n',
    );
    await expectSimError('BAD_MAP_YAML', () => loadMapServerMap(join(dir, 'badthresh.yaml')), /free_thresh/);
    await writeFile(join(dir, 'badorigin.yaml'), 'image: x.pgm\nresolution: 0.05\norigin: zero\n');
    await expectSimError('BAD_MAP_YAML', () => loadMapServerMap(join(dir, 'badorigin.yaml')), /origin/);
    await expectSimError(
      'BAD_MAP_IMAGE',
      async () => loadMapServerMap(await writeMap('gif', 'GIF89a....')),
      /not a PGM or PNG/,
    );
    await expectSimError('BAD_MAP_IMAGE', async () => loadMapServerMap(await writeMap('p7', 'P7\n4 3 255\n')), /magic/);
    await expectSimError(
      'MAP_TRUNCATED',
      async () => loadMapServerMap(await writeMap('short5', good.subarray(0, good.length - 3))),
      /9 of 12 bytes/,
    );
    await expectSimError(
      'MAP_TRUNCATED',
      async () => loadMapServerMap(await writeMap('short2', 'P2 4 3 255\n0 0 0 0\n0 0\n')),
      /6 of 12/,
    );
    await expectSimError('MAP_TRUNCATED', async () => loadMapServerMap(await writeMap('header', 'P5 4 3')), /maxval/);
    await expectSimError(
      'BAD_MAP_IMAGE',
      async () => loadMapServerMap(await writeMap('toobig', 'P2 2 1 9\n3 12\n')),
      /maxval 9/,
    );
    await expectSimError(
      'BAD_MAP_IMAGE',
      async () =>
        loadMapServerMap(await writeMap('badpng', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2]))),
      /PNG/,
    );
    await writeFile(join(dir, 'orphan.yaml'), yaml('nowhere.pgm'));
    await expectSimError(
      'MAP_IMAGE_MISSING',
      () => loadMapServerMap(join(dir, 'orphan.yaml')),
      /nowhere\.pgm: no such file/,
    );
    await expectSimError('MAP_NOT_FOUND', () => loadMapServerMap(join(dir, 'absent.yaml')), /no such file/);
  });
});

describe('simulator: lidar', () => {
  it('measures the analytic distance to walls without noise, to float precision', async () => {
    const seed = testSeed();
    await withSeed(seed, () => {
      const world = box(5);
      const rand = prng(seed);
      const config = lidarConfig({ noiseStd: 0, rangeMax: 10 });
      for (let k = 0; k < 20; k++) {
        const pose = { x: 0.3 + rand() * 4.4, y: 0.3 + rand() * 4.4, theta: (rand() - 0.5) * 2 * Math.PI };
        const s = scan(world, pose, config, () => 0);
        assert.equal(s.ranges.length, 360);
        assert.ok(Math.abs(s.angleIncrement - Math.PI / 180) < 1e-12);
        for (let i = 0; i < s.ranges.length; i++) {
          const expected = distanceToBoxWalls(world, pose.x, pose.y, pose.theta + s.angleMin + i * s.angleIncrement);
          assert.ok(
            Math.abs(s.ranges[i] - expected) < 1e-4,
            `beam ${i}: ${s.ranges[i]} vs ${expected} (one cell is ${world.resolution})`,
          );
        }
      }
    });
  });

  it('adds seeded Gaussian noise of the configured size', async () => {
    const seed = testSeed();
    await withSeed(seed, () => {
      const world = box(5);
      const pose = { x: 2.5, y: 2.5, theta: 0 };
      const s = scan(world, pose, lidarConfig({ noiseStd: 0.01 }), gaussian(prng(seed)));
      const errors = Array.from(
        s.ranges,
        (r, i) => r - distanceToBoxWalls(world, pose.x, pose.y, i * s.angleIncrement),
      );
      const mean = errors.reduce((a, b) => a + b, 0) / errors.length;
      const std = Math.sqrt(errors.reduce((a, b) => a + (b - mean) ** 2, 0) / errors.length);
      assert.ok(Math.abs(mean) < 0.003, `mean error ${mean}`);
      assert.ok(std > 0.008 && std < 0.012, `noise σ ${std}`);
      assert.ok(
        errors.every((e) => Math.abs(e) < 0.06),
        'no error beyond 6σ',
      );
    });
  });

  it('reports +Infinity beyond rangeMax and -Infinity inside rangeMin (REP 117)', () => {
    const big = box(20);
    const far = scan(big, { x: 10, y: 10, theta: 0 }, lidarConfig(), () => 0);
    assert.ok(far.ranges.every((r) => r === Infinity));
    const near = scan(box(5), { x: 0.12, y: 2.5, theta: Math.PI }, lidarConfig({ noiseStd: 0 }), () => 0);
    assert.equal(near.ranges[0], -Infinity, 'wall 0.07 m away, below the 0.12 m minimum');
    assert.ok(Math.abs(near.ranges[90] - 2.45) < 1e-4, 'the beam pointing down still sees the floor wall');
  });
});

describe('simulator: robots', () => {
  it('odometry drifts from the true pose but within a bound; the true pose never touches a wall', async () => {
    const seed = testSeed();
    await withSeed(seed, () => {
      const plan = floorPlan('builtin:small');
      const sim = new WorldSimulator({ world: plan.world, robots: defaultRobots(plan), seed, scanEvery: 50 });
      const travelled = new Array<number>(8).fill(0);
      const prev = plan.starts.map((p) => ({ ...p }));
      let last: RobotStep[] = [];
      while (!sim.done) {
        last = sim.step();
        last.forEach((s, i) => {
          const { x, y } = s.truePose;
          assert.ok(
            discIsFree(plan.world, x, y, ROBOT_RADIUS),
            `${s.name} touches a wall at (${x}, ${y}), t=${s.time}`,
          );
          travelled[i] += Math.hypot(x - prev[i].x, y - prev[i].y);
          prev[i] = s.truePose;
          const err = Math.hypot(x - s.odomPose.x, y - s.odomPose.y);
          // Measured over 2400 seeded robot runs: at most 0.15 of max(distance, 1 m).
          assert.ok(err <= 0.3 * Math.max(travelled[i], 1), `${s.name} odometry ${err} m off after ${travelled[i]} m`);
        });
      }
      assert.ok(
        last.every((s) => s.done),
        'every route finished',
      );
      assert.ok(sim.time < 200, `routes took ${sim.time} s`);
      const finalErrors = last.map((s) => Math.hypot(s.truePose.x - s.odomPose.x, s.truePose.y - s.odomPose.y));
      assert.ok(
        finalErrors.every((e) => e > 0),
        'odometry differs from the truth',
      );
      assert.ok(
        Math.max(...finalErrors) > 0.01,
        `odometry drifts: ${finalErrors.map((e) => e.toFixed(3)).join(', ')} m`,
      );
      assert.ok(
        travelled.every((d) => d > 5),
        `robots moved: ${travelled.map((d) => d.toFixed(1)).join(', ')} m`,
      );
    });
  });

  it('is deterministic for a seed, and the seed matters', async () => {
    const seed = testSeed();
    await withSeed(seed, () => {
      const plan = floorPlan('builtin:small');
      const robots = [...defaultRobots(plan, 2), { ...defaultRobots(plan, 3, 'frontier')[2] }];
      const run = (s: number): string => {
        const sim = new WorldSimulator({ world: plan.world, robots, seed: s, scanEvery: 2 });
        return hashRun(Array.from({ length: 300 }, () => sim.step()));
      };
      const a = run(seed);
      assert.equal(run(seed), a);
      assert.notEqual(run(seed + 1), a);
    });
  });

  it('rejects bad configurations', () => {
    const { world, starts } = floorPlan('builtin:small');
    const route: Pose[] = [];
    const make = (over: object) => () =>
      new WorldSimulator({ world, robots: [{ name: 'a', start: starts[0], route }], seed: 1, ...over });
    assert.throws(make({ robots: [{ name: 'a', start: { x: 0.05, y: 0.05, theta: 0 }, route }] }), /not in free space/);
    assert.throws(
      make({
        robots: [
          { name: 'a', start: starts[0], route },
          { name: 'a', start: starts[1], route },
        ],
      }),
      /unique/,
    );
    assert.throws(make({ dt: 0 }), /dt/);
    assert.throws(make({ robots: [] }), /no robots/);
    assert.throws(make({ lidar: { beams: 0 } }), /beams/);
    assert.throws(make({ odometry: { translation: -1 } }), /translation/);
  });

  // Robots steer by their true pose, so where they go and what they see does not depend on the
  // seed; only odometry and range noise do.
  it('eight robots on their office routes observe most of the free space, faster than real time', async () => {
    const seed = testSeed();
    await withSeed(seed, () => officeCoverage(seed));
  });

  function officeCoverage(seed: number): void {
    const plan = floorPlan('builtin:office');
    const { world } = plan;
    const sim = new WorldSimulator({ world, robots: defaultRobots(plan), seed });
    const seen = new Uint8Array(world.width * world.height);
    let simulating = 0;
    while (!sim.done) {
      const t0 = performance.now();
      const steps = sim.step();
      simulating += performance.now() - t0;
      for (const s of steps) if (s.scan) markObserved(world, s.truePose, s.scan, seen);
    }
    let free = 0;
    let observed = 0;
    for (let i = 0; i < seen.length; i++) {
      if (world.occupied[i] === 0) {
        free++;
        observed += seen[i];
      }
    }
    const coverage = observed / free;
    const ratio = sim.time / (simulating / 1000);
    console.log(
      `      builtin:office, 8 robots, default routes: ${(100 * coverage).toFixed(2)} ` +
        `% of ${free} free cells observed in ${sim.time.toFixed(1)} s simulated; ` +
        `${(simulating / 1000).toFixed(2)} s wall, ${ratio.toFixed(0)}× real time (one core, 8 × 360 beams at 10 Hz)`,
    );
    assert.ok(coverage >= 0.9, `coverage ${coverage}`);
    assert.ok(sim.time < 400, `done in ${sim.time} s`);
  }

  it('a frontier explorer alone covers nearly all reachable free space of builtin:small in bounded time', async () => {
    const seed = testSeed();
    await withSeed(seed, () => explorerCoverage(seed));
  });

  function explorerCoverage(seed: number): void {
    const plan = floorPlan('builtin:small');
    const { world } = plan;
    const robot = defaultRobots(plan, 5, 'frontier')[4];
    const sim = new WorldSimulator({ world, robots: [robot], seed, maxTime: 300 });
    const seen = new Uint8Array(world.width * world.height);
    let last: RobotStep[] = [];
    while (!sim.done) {
      last = sim.step();
      const [s] = last;
      assert.ok(discIsFree(world, s.truePose.x, s.truePose.y, ROBOT_RADIUS), `explorer touches a wall at t=${s.time}`);
      if (s.scan) markObserved(world, s.truePose, s.scan, seen);
    }
    const reach = reachableFree(world, robot.start);
    let reachable = 0;
    let observed = 0;
    for (let i = 0; i < reach.length; i++) {
      reachable += reach[i];
      observed += reach[i] & seen[i];
    }
    const coverage = observed / reachable;
    console.log(
      `      builtin:small, one frontier explorer: ${(100 * coverage).toFixed(2)} ` +
        `% of ${reachable} reachable free cells in ${sim.time.toFixed(1)} s`,
    );
    assert.ok(last[0].done, 'exploration ended by running out of frontiers, not by the time limit');
    assert.ok(coverage >= 0.9, `coverage ${coverage}`);
  }
});
