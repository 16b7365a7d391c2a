import assert from 'node:assert/strict';
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  isMap,
  isScalar,
  isSeq,
  parse as parseYaml,
  parseDocument,
  stringify as stringifyYaml,
  type YAMLMap,
} from 'yaml';
import { PARAMETERS } from '../../ros/params.js';

/*
 * A launch-file interpreter for tests without ROS 2: launch descriptions (XML, YAML, Python) are
 * expanded the way launch / launch_ros do it, for the subset robomesh uses, into the command line
 * `ros2 launch` would run; plus readers for parameter files and package files.
 */

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..'); // dist/test/helpers/ → repo
export const LAUNCHER = join(ROOT, 'bin', 'robomesh_node');
export const FIXTURES = join(ROOT, 'test', 'fixtures', 'launch'); // python helpers and launch / launch_ros stubs
export const ROBOT_LAUNCH_FILES = ['robot.launch.xml', 'robot.launch.yaml', 'robot.launch.py'];
export const KNOWN = new Map(PARAMETERS.map((p) => [p.name, p]));

// ---------------------------------------------------------------------------------------------
// python3 (catkin_pkg, ElementTree, py_compile, the launch stubs)

const PYTHONS = [process.env.PYTHON3, 'python3', '/usr/bin/python3'].filter((p): p is string => !!p);

const pythonCache = new Map<string, string | undefined>();

/** The first python3 that can import `module` (pyenv's python3 may lack Debian's modules), as its real executable. */
export function pythonWith(module: string): string | undefined {
  if (!pythonCache.has(module)) {
    let found: string | undefined;
    for (const py of PYTHONS) {
      const r = spawnSync(py, ['-c', `import ${module}, sys; print(sys.executable)`], { encoding: 'utf8' });
      if (r.status === 0) {
        found = r.stdout.trim();
        break;
      }
    }
    pythonCache.set(module, found);
  }
  return pythonCache.get(module);
}

export function python(): string {
  const py = pythonWith('xml.etree.ElementTree');
  if (!py) assert.fail('python3 is needed to check the launch files');
  return py;
}

// ---------------------------------------------------------------------------------------------
// A model of launch descriptions (the subset our launch files use; anything else is an error)

/** A substitution: text, $(var x), $(find-pkg-share p), a concatenation, or PathJoinSubstitution. */
type Sub = string | { var: string } | { findPkgShare: string } | { concat: Sub[] } | { join: Sub[] };
type ParamSpec = { file: Sub } | { values: Record<string, Sub> };
type Entity =
  | { kind: 'arg'; name: string; default?: Sub }
  | { kind: 'node'; pkg: string; exec: string; name?: Sub; namespace?: Sub; args: Sub[]; params: ParamSpec[] }
  | { kind: 'include'; file: Sub; args: [string, Sub][] }
  | { kind: 'group'; scoped: boolean; children: Entity[] }
  | { kind: 'push_ros_namespace'; namespace: Sub };

/** `text $(var robot) more` → Sub (launch.frontend.parse_substitution, for var and find-pkg-share). */
function parseSubs(text: string): Sub {
  const parts: Sub[] = [];
  let last = 0;
  for (const m of text.matchAll(/\$\(([\w-]+)\s*([^)]*)\)/g)) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    const [, fn, arg] = m;
    if (fn === 'var') parts.push({ var: arg.trim() });
    else if (fn === 'find-pkg-share') parts.push({ findPkgShare: arg.trim() });
    else assert.fail(`substitution $(${fn} ...) is not modelled by this test`);
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts.length === 1 ? parts[0] : { concat: parts };
}

interface XmlElement {
  tag: string;
  attrib: Record<string, string>;
  children: XmlElement[];
}

export function readXml(file: string): XmlElement {
  return JSON.parse(
    execFileSync(python(), [join(FIXTURES, 'xml_to_json.py'), file], { encoding: 'utf8' }),
  ) as XmlElement;
}

function fromXml(e: XmlElement): Entity {
  const a = e.attrib;
  const sub = (name: string): Sub | undefined => (a[name] === undefined ? undefined : parseSubs(a[name]));
  switch (e.tag) {
    case 'arg':
      return { kind: 'arg', name: a.name, default: sub('default') };
    case 'node':
      return {
        kind: 'node',
        pkg: a.pkg,
        exec: a.exec,
        name: sub('name'),
        namespace: sub('namespace'),
        args: a.args ? a.args.split(/\s+/).filter(Boolean).map(parseSubs) : [],
        params: e.children.map((p) => {
          assert.equal(p.tag, 'param', `<node> child <${p.tag}> is not modelled by this test`);
          assert.equal(p.children.length, 0, 'nested <param> is not modelled by this test');
          if (p.attrib.from !== undefined) return { file: parseSubs(p.attrib.from) };
          return { values: { [p.attrib.name]: parseSubs(p.attrib.value) } };
        }),
      };
    case 'include':
      return {
        kind: 'include',
        file: parseSubs(a.file),
        args: e.children.map((c) => [c.attrib.name, parseSubs(c.attrib.value)]),
      };
    case 'group':
      return { kind: 'group', scoped: a.scoped !== 'false', children: e.children.map(fromXml) };
    case 'push_ros_namespace':
    case 'push-ros-namespace':
      return { kind: 'push_ros_namespace', namespace: parseSubs(a.namespace) };
    default:
      return assert.fail(`<${e.tag}> is not modelled by this test`);
  }
}

type YamlEntity = Record<string, Record<string, unknown>>;

function fromYaml(item: YamlEntity): Entity {
  const [[tag, a]] = Object.entries(item);
  const sub = (v: unknown): Sub | undefined => (v === undefined ? undefined : parseSubs(String(v)));
  switch (tag) {
    case 'arg':
      return { kind: 'arg', name: String(a.name), default: sub(a.default) };
    case 'node':
      return {
        kind: 'node',
        pkg: String(a.pkg),
        exec: String(a.exec),
        name: sub(a.name),
        namespace: sub(a.namespace),
        args: a.args ? String(a.args).split(/\s+/).filter(Boolean).map(parseSubs) : [],
        params: ((a.param ?? []) as Record<string, unknown>[]).map((p) => {
          if (p.from !== undefined) return { file: parseSubs(String(p.from)) };
          assert.equal(p.param, undefined, 'nested params are not modelled by this test');
          return { values: { [String(p.name)]: parseSubs(String(p.value)) } };
        }),
      };
    default:
      return assert.fail(`YAML launch action ${tag} is not modelled by this test`);
  }
}

const launchFileCache = new Map<string, Entity[]>();

/** Reads a launch file (XML, YAML or Python) into entities. */
function loadLaunchFile(file: string, tmp: string): Entity[] {
  if (!launchFileCache.has(file)) launchFileCache.set(file, readLaunchFile(file, tmp));
  return launchFileCache.get(file)!;
}

function readLaunchFile(file: string, tmp: string): Entity[] {
  if (file.endsWith('.xml')) {
    const root = readXml(file);
    assert.equal(root.tag, 'launch', `${file}: root element`);
    return root.children.map(fromXml);
  }
  if (file.endsWith('.yaml')) {
    const doc = parseYaml(readFileSync(file, 'utf8')) as { launch: YamlEntity[] };
    return doc.launch.map(fromYaml);
  }
  assert.ok(file.endsWith('.py'), `${file}: unknown launch file type`);
  // Stub modules standing in for launch / launch_ros: they describe what the launch file builds.
  const stubs = join(FIXTURES, 'pystubs');
  const out = execFileSync(python(), [join(FIXTURES, 'describe_launch.py'), file], {
    cwd: tmp,
    encoding: 'utf8',
    env: {
      ...process.env,
      PYTHONPATH: [stubs, process.env.PYTHONPATH].filter(Boolean).join(delimiter),
      PYTHONDONTWRITEBYTECODE: '1',
    },
  });
  return JSON.parse(out) as Entity[];
}

/** launch_ros.utilities.prefix_namespace */
function prefixNamespace(base: string | undefined, ns: string | undefined): string | undefined {
  if (base === undefined && ns === undefined) return undefined;
  let combined: string;
  if (ns === undefined) combined = base!;
  else if (!base || ns.startsWith('/')) combined = ns;
  else combined = `${base === '/' ? '' : base}/${ns}`;
  return combined === '/' ? combined : combined.replace(/\/+$/, '');
}

const makeAbsolute = (ns: string | undefined): string | undefined =>
  ns === undefined || ns.startsWith('/') ? ns : `/${ns}`;

interface Context {
  configs: Map<string, string>;
  rosNamespace?: string;
}

function evaluate(sub: Sub, ctx: Context): string {
  if (typeof sub === 'string') return sub;
  if ('var' in sub) {
    const v = ctx.configs.get(sub.var);
    assert.ok(v !== undefined, `launch configuration '${sub.var}' is not set`);
    return v;
  }
  if ('findPkgShare' in sub) {
    // Installed, share/robomesh holds launch/, config/, dist/: the repo has the same layout.
    assert.equal(sub.findPkgShare, 'robomesh', 'only our own package share is available here');
    return ROOT;
  }
  if ('concat' in sub) return sub.concat.map((s) => evaluate(s, ctx)).join('');
  return join(...sub.join.map((s) => evaluate(s, ctx)));
}

/** What one <node> turns into: the process launch_ros would start. */
interface LaunchedNode {
  argv: string[];
  name: string;
  namespace?: string;
  /** Parameters set by name in the launch file (not from files). */
  setParams: Record<string, unknown>;
  paramsFiles: string[];
}

/**
 * Executes a launch description like `ros2 launch robomesh FILE k:=v …`, collecting the nodes.
 * Node command lines follow launch_ros's Node action: `EXEC ARGS --ros-args -r __node:=NAME
 * -r __ns:=NS` then, in order, a `--params-file` per parameter dict (written to a temporary
 * `{NODE or /**: {ros__parameters: …}}` file, as launch_ros does) or parameter file.
 */
export function runLaunch(file: string, cliArgs: Record<string, string>, tmp: string): LaunchedNode[] {
  const nodes: LaunchedNode[] = [];
  let tempFiles = 0;
  const run = (entities: Entity[], ctx: Context): void => {
    for (const e of entities) {
      switch (e.kind) {
        case 'arg':
          if (!ctx.configs.has(e.name)) {
            assert.ok(e.default !== undefined, `launch argument '${e.name}' has no value and no default`);
            ctx.configs.set(e.name, evaluate(e.default, ctx));
          }
          break;
        case 'include': {
          const included = evaluate(e.file, ctx);
          assert.ok(existsSync(included), `included launch file ${included} does not exist`);
          for (const [name, value] of e.args) ctx.configs.set(name, evaluate(value, ctx));
          run(loadLaunchFile(included, tmp), ctx);
          break;
        }
        case 'group':
          run(e.children, e.scoped ? { configs: new Map(ctx.configs), rosNamespace: ctx.rosNamespace } : ctx);
          break;
        case 'push_ros_namespace':
          ctx.rosNamespace = makeAbsolute(prefixNamespace(ctx.rosNamespace, evaluate(e.namespace, ctx)));
          break;
        case 'node': {
          assert.equal(e.pkg, 'robomesh');
          // ExecutableInPackage: <prefix>/lib/robomesh/EXEC, which CMakeLists.txt installs from bin/.
          const argv = [join(ROOT, 'bin', e.exec), ...e.args.map((a) => evaluate(a, ctx)), '--ros-args'];
          const name = e.name === undefined ? undefined : evaluate(e.name, ctx);
          const ns = makeAbsolute(
            prefixNamespace(ctx.rosNamespace, e.namespace === undefined ? undefined : evaluate(e.namespace, ctx)),
          );
          if (name !== undefined) argv.push('-r', `__node:=${name}`);
          if (ns !== undefined) argv.push('-r', `__ns:=${ns}`);
          const fullName = name !== undefined && ns !== undefined ? prefixNamespace(ns, name)! : '/**';
          const setParams: Record<string, unknown> = {};
          const paramsFiles: string[] = [];
          for (const p of e.params) {
            if ('file' in p) {
              const path = evaluate(p.file, ctx);
              assert.ok(existsSync(path), `parameter file ${path} does not exist (launch_ros would skip it)`);
              paramsFiles.push(path);
              argv.push('--params-file', path);
            } else {
              // launch_ros types a substituted value with yaml.safe_load (YAML 1.1), '' stays ''.
              const values = Object.fromEntries(
                Object.entries(p.values).map(([k, v]) => {
                  const text = evaluate(v, ctx);
                  return [k, text === '' ? '' : parseYaml(text, { version: '1.1' })];
                }),
              );
              Object.assign(setParams, values);
              const path = join(tmp, `launch_params_${++tempFiles}_${Date.now()}`);
              writeFileSync(path, stringifyYaml({ [fullName]: { ros__parameters: values } }));
              argv.push('--params-file', path);
            }
          }
          nodes.push({ argv, name: name ?? '', namespace: ns, setParams, paramsFiles });
          break;
        }
      }
    }
  };
  run(loadLaunchFile(join(ROOT, 'launch', file), tmp), { configs: new Map(Object.entries(cliArgs)) });
  return nodes;
}

/** Declared arguments and their defaults, evaluated with nothing set. */
export function declaredArgs(file: string, tmp: string): Record<string, string | undefined> {
  const ctx: Context = { configs: new Map() };
  const out: Record<string, string | undefined> = {};
  for (const e of loadLaunchFile(join(ROOT, 'launch', file), tmp)) {
    if (e.kind === 'arg') out[e.name] = e.default === undefined ? undefined : evaluate(e.default, ctx);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Running the node

/** Runs a launched node's command line with --print-params before --ros-args. */
export function runNode(argv: string[], cwd: string): SpawnSyncReturns<string> {
  const [exec, ...rest] = argv;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`,
  };
  delete env.ROBOMESH_NODE;
  return spawnSync(exec, ['--print-params', ...rest], { cwd, env, encoding: 'utf8' });
}

type Printed = Record<string, unknown>;

export function printParams(argv: string[], cwd: string): Printed {
  const r = runNode(argv, cwd);
  assert.equal(r.status, 0, `${argv.join(' ')}\nexit ${r.status}: ${r.stderr}`);
  return flattenObject(JSON.parse(r.stdout) as Record<string, unknown>);
}

function flattenObject(obj: Record<string, unknown>, prefix = '', out: Printed = {}): Printed {
  for (const [k, v] of Object.entries(obj)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v))
      flattenObject(v as Record<string, unknown>, `${prefix}${k}.`, out);
    else out[`${prefix}${k}`] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ROS 2 parameter files

interface Setting {
  name: string;
  value: unknown;
  /** The scalar as written (ROS types 5 as an integer, 5.0 as a double). */
  source?: string;
}

/**
 * The settings of a ROS 2 parameters file (`NODE: {ros__parameters: {…}}`), read as YAML 1.1 like
 * rcl's libyaml-based parser; nested maps flatten to dotted names.
 */
export function paramsFileSettings(file: string): Setting[] {
  const doc = parseDocument(readFileSync(file, 'utf8'), { version: '1.1' });
  assert.deepEqual(doc.errors, [], `${file}: YAML errors`);
  assert.ok(isMap(doc.contents), `${file}: expected a map of node names`);
  const out: Setting[] = [];
  const walk = (map: YAMLMap, prefix: string): void => {
    for (const pair of map.items) {
      const name = `${prefix}${isScalar(pair.key) ? String(pair.key.value) : '?'}`;
      const v = pair.value;
      if (isMap(v)) walk(v, `${name}.`);
      else if (isSeq(v)) out.push({ name, value: v.items.map((i) => (isScalar(i) ? i.value : i)) });
      else if (isScalar(v)) out.push({ name, value: v.value, source: v.source });
      else out.push({ name, value: v });
    }
  };
  for (const section of doc.contents.items) {
    const v = section.value;
    assert.ok(
      isMap(v) && v.items.length === 1 && isScalar(v.items[0].key) && v.items[0].key.value === 'ros__parameters',
      `${file}: ${String(section.key)} must hold only ros__parameters`,
    );
    assert.ok(isMap(v.items[0].value), `${file}: ros__parameters must be a map`);
    walk(v.items[0].value, '');
  }
  return out;
}

/** Why a setting would not load as our parameter in ROS 2 (rcl's parser and our schema). */
export function settingProblem(s: Setting): string | undefined {
  const p = KNOWN.get(s.name);
  if (!p) return 'not a robomesh parameter (ros/params.ts PARAMETERS)';
  const v = s.value;
  switch (p.kind) {
    case 'string':
      return typeof v === 'string' ? undefined : `expected a string, YAML gives ${JSON.stringify(v)}`;
    case 'string[]':
      if (!Array.isArray(v)) return 'expected a list of strings';
      if (v.length === 0) return 'an empty list: rcl cannot type it (leave the parameter out instead)';
      return v.every((x) => typeof x === 'string') ? undefined : 'expected every item to be a string';
    case 'number':
      return typeof v === 'number' && !/^[-+]?\d+$/.test(s.source ?? '')
        ? undefined
        : 'expected a double, written with a decimal point';
    case 'integer':
      return Number.isInteger(v) && /^[-+]?\d+$/.test(s.source ?? '') ? undefined : 'expected an integer';
  }
}

export const configFiles = (): string[] => [
  join(ROOT, 'config', 'robot.yaml'),
  ...readdirSync(join(ROOT, 'config', 'fleet')).map((f) => join(ROOT, 'config', 'fleet', f)),
];

export function filesUnder(dir: string, ext: RegExp): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((f) => ext.test(f) && statSync(f).isFile());
}

// ---------------------------------------------------------------------------------------------
