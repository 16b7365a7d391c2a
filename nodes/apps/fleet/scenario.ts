import { ATTACKS, type AttackKind } from './attacks.js';
import { parse as parseYaml } from 'yaml';
import { RobomeshError } from '../../../protocol/errors.js';

export type Fault =
  | { type: 'wrong-results' }
  | { type: 'garbage-tensors' }
  | { type: 'fake-walls'; thickness: number; from: { x: number; y: number }; to: { x: number; y: number } }
  | { type: 'equivocate' }
  | { type: 'forge' }
  /** A hostile member's attack on its peers' protocols for `seconds` (nodes/apps/fleet/attacks.ts). */
  | { type: 'attack'; attack: AttackKind; seconds: number };

export type ScenarioEvent =
  | { at: number; partition: string[][] }
  | { at: number; heal: true }
  | { at: number; byzantine: { robot: string; fault: Fault } }
  /** Simulated radio: these robot pairs' links (both ways) get this rate and one-way delay. */
  | { at: number; shape: LinkShaping }
  /** Every shaped link back to full speed. */
  | { at: number; unshape: true };

export interface LinkShaping {
  links: [string, string][];
  bytesPerSecond: number;
  delayMs: number;
  /** As the scenario put it, for logs and the report. */
  text: string;
}

/** A fleet run: who, where, what load, and what goes wrong when (seconds of wall time). */
export interface Scenario {
  robots: number;
  world: string;
  seed: number;
  duration: number;
  /** Simulated seconds per wall second. */
  simSpeed: number;
  /** Seconds between logged inference tasks (each on k executors), 0 = none. */
  /** A logged task every `every` seconds, surviving `f` lying executors (2f + 1 assigned). */
  workload: { every: number; f: number; model: string | null };
  /** Seconds between anchors on the IOTA stand-in (or a real node when IOTA_* is set). */
  anchorEvery: number;
  /** The workload's model as a chain of stages held by other robots, and a camera stream through it. */
  chain?: ChainWorkload;
  events: ScenarioEvent[];
}

export interface ChainWorkload {
  stages: number;
  precision: 'fp32' | 'fp16' | 'int8';
  /** The robot whose camera streams frames through the chain (it holds no stage). */
  from: string;
  /** Frames per second offered to the stream. */
  fps: number;
  /** Robots holding each stage: the next ones after `from` in turn, so a stage outlives a robot. */
  replicas: number;
}

export type ScenarioErrorCode = 'BAD_SCENARIO';

export class ScenarioError extends RobomeshError<ScenarioErrorCode> {
  constructor(code: ScenarioErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

export const FAULT_TYPES = ['wrong-results', 'garbage-tensors', 'fake-walls', 'equivocate', 'forge', 'attack'] as const;

/**
 * What `npm start` runs: 4 robots, a partition and heal, then a robot drawing fake walls; r0's
 * camera streams through the detector as 3 stages the others hold.
 */
export const DEFAULT_SCENARIO = `
robots: 4
world: builtin:small
seed: 7
duration: 60
sim_speed: 2
workload: { every: 4, f: 1, model: builtin:ocr-det }
anchor_every: 15
chain: { stages: 3, fps: 2 }
events:
  - { at: 12, partition: [[r0, r1], [r2, r3]] }
  - { at: 27, heal: true }
  - { at: 30, shape: { robots: [r1], rate_mbit: 2, delay_ms: 40 } }
  - { at: 34, byzantine: { robot: r3, fault: { type: fake-walls, thickness: 20, from: [1, 4], to: [7, 4] } } }
`;

function fail(where: string, why: string): never {
  throw new ScenarioError('BAD_SCENARIO', `scenario ${where}: ${why}`);
}

const num = (v: unknown, where: string, min = 0): number =>
  typeof v === 'number' && Number.isFinite(v) && v >= min
    ? v
    : fail(where, `expected a number ≥ ${min}, got ${JSON.stringify(v)}`);

function point(v: unknown, where: string): { x: number; y: number } {
  if (Array.isArray(v) && v.length === 2) return { x: num(v[0], where, -1e6), y: num(v[1], where, -1e6) };
  return fail(where, 'expected [x, y]');
}

function fault(v: unknown, where: string): Fault {
  const f = (typeof v === 'string' ? { type: v } : v) as Record<string, unknown>;
  switch (f?.type) {
    case 'wrong-results':
    case 'garbage-tensors':
    case 'equivocate':
    case 'forge':
      return { type: f.type };
    case 'attack':
      if (!(ATTACKS as readonly unknown[]).includes(f.attack))
        return fail(`${where}.attack`, `one of ${ATTACKS.join(', ')}, got ${JSON.stringify(f.attack)}`);
      return { type: 'attack', attack: f.attack as AttackKind, seconds: num(f.seconds ?? 30, `${where}.seconds`, 1) };
    case 'fake-walls':
      return {
        type: 'fake-walls',
        thickness: num(f.thickness ?? 20, `${where}.thickness`, 1),
        from: point(f.from ?? [2, 10], `${where}.from`),
        to: point(f.to ?? [18, 10], `${where}.to`),
      };
    default:
      return fail(where, `fault type must be one of ${FAULT_TYPES.join(', ')}, got ${JSON.stringify(f?.type)}`);
  }
}

function shaping(v: unknown, where: string, robot: (v: unknown, where: string) => string, all: string[]): LinkShaping {
  const s = v as Record<string, unknown>;
  if (typeof s !== 'object' || s === null || Array.isArray(s))
    fail(where, 'expected { robots | between | links, rate_mbit, delay_ms }');
  const ways = ['robots', 'between', 'links'].filter((k) => k in s);
  if (ways.length !== 1)
    fail(
      where,
      'name the links with exactly one of robots: [r..] (all their links), ' +
        'between: [[r..], [r..]] (links across groups) or links: [[ra, rb], ..]',
    );
  const list = (x: unknown, at: string): unknown[] =>
    Array.isArray(x) && x.length > 0 ? x : fail(at, 'expected a non-empty list');
  const pairs: [string, string][] = [];
  if ('robots' in s) {
    const mine = list(s.robots, `${where}.robots`).map((r, i) => robot(r, `${where}.robots[${i}]`));
    for (const a of mine) for (const b of all) if (a !== b && !(mine.includes(b) && b < a)) pairs.push([a, b]);
  } else if ('between' in s) {
    const groups = list(s.between, `${where}.between`).map((g, j) =>
      list(g, `${where}.between[${j}]`).map((r, k) => robot(r, `${where}.between[${j}][${k}]`)),
    );
    if (groups.length < 2) fail(`${where}.between`, 'two or more groups');
    for (let i = 0; i < groups.length; i++)
      for (let j = i + 1; j < groups.length; j++)
        for (const a of groups[i]) for (const b of groups[j]) pairs.push([a, b]);
  } else {
    for (const [i, l] of list(s.links, `${where}.links`).entries()) {
      const pair =
        Array.isArray(l) && l.length === 2
          ? l.map((r, k) => robot(r, `${where}.links[${i}][${k}]`))
          : fail(`${where}.links[${i}]`, 'expected [robot, robot]');
      if (pair[0] === pair[1]) fail(`${where}.links[${i}]`, 'a link joins two different robots');
      pairs.push([pair[0], pair[1]]);
    }
  }
  const rate = num(s.rate_mbit, `${where}.rate_mbit`, 0.01);
  const delayMs = num(s.delay_ms ?? 0, `${where}.delay_ms`);
  const names =
    'robots' in s
      ? `links of ${(s.robots as string[]).join(', ')}`
      : 'between' in s
        ? `links between ${(s.between as string[][]).map((g) => g.join(' ')).join(' | ')}`
        : `${pairs.length} link(s)`;
  return { links: pairs, bytesPerSecond: (rate * 1e6) / 8, delayMs, text: `${names}: ${rate} Mbit/s, ${delayMs} ms` };
}

function chainWorkload(
  v: unknown,
  robots: number,
  robot: (v: unknown, where: string) => string,
  model: string | null,
): ChainWorkload {
  const c = v as Record<string, unknown>;
  if (typeof c !== 'object' || c === null || Array.isArray(c))
    fail('chain', 'expected { stages, fps, precision?, from?, replicas? }');
  const known = ['stages', 'fps', 'precision', 'from', 'replicas'];
  for (const k of Object.keys(c))
    if (!known.includes(k)) fail('chain', `unknown key ${k} (known: ${known.join(', ')})`);
  if (model === null) fail('chain', "a chain runs the workload's model: give workload.model");
  const stages = num(c.stages ?? 3, 'chain.stages', 2);
  if (!Number.isInteger(stages) || stages > 8) fail('chain.stages', 'an integer from 2 to 8');
  const replicas = num(c.replicas ?? Math.min(2, robots - 1), 'chain.replicas', 1);
  if (!Number.isInteger(replicas) || replicas > robots - 1)
    fail('chain.replicas', `an integer from 1 to ${robots - 1} (the robots other than the streaming one)`);
  const precision = c.precision ?? 'int8';
  if (precision !== 'fp32' && precision !== 'fp16' && precision !== 'int8')
    fail('chain.precision', `fp32, fp16 or int8, got ${JSON.stringify(precision)}`);
  return {
    stages,
    precision,
    from: robot(c.from ?? 'r0', 'chain.from'),
    fps: num(c.fps ?? 2, 'chain.fps', 0.1),
    replicas,
  };
}

/** Per stage, the robots holding it: the robots after `from`, each stage `replicas` of them in turn. */
export function chainHolders(chain: ChainWorkload, robots: string[]): string[][] {
  const others = robots.filter((r) => r !== chain.from);
  return Array.from({ length: chain.stages }, (_, k) => [
    ...new Set(Array.from({ length: chain.replicas }, (_, j) => others[(k + j) % others.length])),
  ]);
}

export function parseScenario(text: string, source = 'scenario'): Scenario {
  let doc: Record<string, unknown>;
  try {
    doc = (parseYaml(text) ?? {}) as Record<string, unknown>;
  } catch (err) {
    throw new ScenarioError('BAD_SCENARIO', `${source}: not YAML: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || Array.isArray(doc)) fail(source, 'expected a map');
  const known = new Set([
    'robots',
    'world',
    'seed',
    'duration',
    'sim_speed',
    'workload',
    'anchor_every',
    'chain',
    'events',
  ]);
  for (const k of Object.keys(doc))
    if (!known.has(k)) fail(source, `unknown key ${k} (known: ${[...known].join(', ')})`);
  const robots = num(doc.robots ?? 4, 'robots', 2);
  if (!Number.isInteger(robots) || robots > 64) fail('robots', 'an integer from 2 to 64');
  const names = new Set(Array.from({ length: robots }, (_, i) => `r${i}`));
  const robot = (v: unknown, where: string): string =>
    typeof v === 'string' && names.has(v) ? v : fail(where, `unknown robot ${JSON.stringify(v)} (r0..r${robots - 1})`);
  const w = (doc.workload ?? {}) as Record<string, unknown>;
  const model =
    w.model === null || w.model === 'none' ? null : typeof w.model === 'string' ? w.model : 'builtin:ocr-det';
  const events = ((doc.events ?? []) as unknown[]).map((e, i): ScenarioEvent => {
    const where = `events[${i}]`;
    const ev = e as Record<string, unknown>;
    const at = num(ev?.at, `${where}.at`);
    if ('partition' in ev) {
      const groups = ev.partition;
      if (!Array.isArray(groups) || groups.length < 2 || !groups.every(Array.isArray))
        fail(where, 'partition takes two or more groups of robots');
      return {
        at,
        partition: (groups as unknown[][]).map((g, j) => g.map((r, k) => robot(r, `${where}.partition[${j}][${k}]`))),
      };
    }
    if ('heal' in ev) return { at, heal: true };
    if ('unshape' in ev) return { at, unshape: true };
    if ('shape' in ev) return { at, shape: shaping(ev.shape, `${where}.shape`, robot, [...names]) };
    if ('byzantine' in ev) {
      const b = ev.byzantine as Record<string, unknown>;
      return {
        at,
        byzantine: {
          robot: robot(b?.robot, `${where}.byzantine.robot`),
          fault: fault(b?.fault, `${where}.byzantine.fault`),
        },
      };
    }
    return fail(where, 'an event is a partition, heal, byzantine, shape or unshape');
  });
  const duration = num(doc.duration ?? 60, 'duration', 1);
  for (const [i, e] of events.entries())
    if (e.at > duration) fail(`events[${i}].at`, `${e.at} s is after the end (${duration} s)`);
  return {
    robots,
    world: typeof doc.world === 'string' ? doc.world : 'builtin:office',
    seed: num(doc.seed ?? 7, 'seed'),
    duration,
    simSpeed: num(doc.sim_speed ?? 4, 'sim_speed', 0.1),
    workload: {
      every: num(w.every ?? 4, 'workload.every'),
      f:
        w.k !== undefined
          ? fail('workload.k', 'tasks now state f, the lying executors they survive (2f + 1 run each): use f')
          : Math.min(4, Math.floor(num(w.f ?? 1, 'workload.f'))),
      model,
    },
    anchorEvery: num(doc.anchor_every ?? 15, 'anchor_every'),
    chain: doc.chain === undefined ? undefined : chainWorkload(doc.chain, robots, robot, model),
    events: events.sort((a, b) => a.at - b.at),
  };
}
