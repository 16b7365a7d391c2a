import assert from 'node:assert/strict';
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseDocument } from 'yaml';
import { robotProcessEnv } from '../../nodes/util/malloc-tunables.js';

import {
  ROOT,
  LAUNCHER,
  FIXTURES,
  ROBOT_LAUNCH_FILES,
  KNOWN,
  pythonWith,
  python,
  readXml,
  runLaunch,
  declaredArgs,
  runNode,
  printParams,
  paramsFileSettings,
  settingProblem,
  configFiles,
  filesUnder,
} from '../helpers/launch-files.js';
/*
 * The ROS 2 packaging (package.xml, CMakeLists.txt, bin/robomesh_node) and launch files, checked
 * without ROS 2: the launch descriptions are expanded the way launch / launch_ros do it (for the
 * subset they use) into the command line `ros2 launch` would run, and that command line is run
 * against the built entry point with --print-params.
 */

describe('ROS 2 package and launch files', () => {
  let tmp: string;
  let customConfig: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'robomesh-launch-'));
    customConfig = join(tmp, 'custom.yaml');
    writeFileSync(
      customConfig,
      '/**:\n  ros__parameters:\n    topics:\n      scan: front_lidar/scan\n ' +
        '   map:\n      resolution: 0.1\n    fleet:\n      name: lab\n',
    );
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  describe('package files', () => {
    const catkinPython = (): string => {
      const py = pythonWith('catkin_pkg.package');
      if (!py)
        assert.fail('python3-catkin-pkg is missing: install it (apt-get install python3-catkin-pkg); CI installs it');
      return py;
    };

    it('package.xml is a valid format 3 ament_cmake package (catkin_pkg)', () => {
      const p = JSON.parse(
        execFileSync(catkinPython(), [join(FIXTURES, 'parse_package.py'), ROOT], { encoding: 'utf8' }),
      );
      assert.equal(p.name, 'robomesh');
      assert.equal(p.format, 3);
      assert.equal(p.version, '0.1.0');
      assert.deepEqual(p.licenses, ['Apache-2.0']);
      assert.equal(p.build_type, 'ament_cmake');
      assert.deepEqual(p.buildtool, ['ament_cmake']);
      assert.deepEqual([...p.exec].sort(), ['nodejs', 'robomesh_msgs', 'ros2launch']);
      assert.equal(
        p.version,
        (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version,
        'same version as package.json',
      );
    });

    it('ros/robomesh_msgs/package.xml is valid (catkin_pkg)', () => {
      const dir = join(ROOT, 'ros', 'robomesh_msgs');
      const p = JSON.parse(
        execFileSync(catkinPython(), [join(FIXTURES, 'parse_package.py'), dir], { encoding: 'utf8' }),
      );
      assert.equal(p.name, 'robomesh_msgs');
    });

    it('CMakeLists.txt does not build ros/robomesh_msgs a second time', () => {
      const cmake = readFileSync(join(ROOT, 'CMakeLists.txt'), 'utf8').replace(/#.*$/gm, '');
      assert.doesNotMatch(cmake, /add_subdirectory/i);
      assert.match(cmake, /install\(PROGRAMS bin\/robomesh_node DESTINATION lib\/\$\{PROJECT_NAME\}\)/);
    });

    it(
      'CMakeLists.txt installs the ament layout and the ' + 'installed launcher runs (cmake with a stub ament_cmake)',
      function () {
        if (spawnSync('cmake', ['--version']).status !== 0)
          assert.fail('cmake is missing: install it (apt-get install cmake); CI installs it');
        const work = join(tmp, 'cmake');
        const src = join(work, 'src');
        const stub = join(work, 'ament_cmake');
        mkdirSync(join(src, 'bin'), { recursive: true });
        mkdirSync(stub, { recursive: true });
        // Only ament_package() is stubbed (the real one also installs package.xml and env hooks).
        writeFileSync(
          join(stub, 'ament_cmakeConfig.cmake'),
          'macro(ament_package)\n  install(FILES package.xml DESTINATION share/${PROJECT_NAME})\nendmacro()\n',
        );
        const configure = (dir: string): SpawnSyncReturns<string> =>
          spawnSync('cmake', ['-S', dir, '-B', join(work, `build-${basename(dir)}`), `-Dament_cmake_DIR=${stub}`], {
            encoding: 'utf8',
          });

        // Without the npm build: a clear error.
        const bare = join(work, 'bare');
        mkdirSync(bare);
        cpSync(join(ROOT, 'CMakeLists.txt'), join(bare, 'CMakeLists.txt'));
        const failed = configure(bare);
        assert.notEqual(failed.status, 0);
        assert.match(failed.stderr, /npm ci && npm run build/);

        // A source tree like the repo after `npm ci && npm run build` (node_modules linked, not copied).
        for (const f of ['CMakeLists.txt', 'package.xml', 'package.json']) cpSync(join(ROOT, f), join(src, f));
        for (const d of ['dist', 'launch', 'config']) cpSync(join(ROOT, d), join(src, d), { recursive: true });
        cpSync(LAUNCHER, join(src, 'bin', 'robomesh_node'));
        symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
        const ok = configure(src);
        assert.equal(ok.status, 0, ok.stderr);
        const prefix = join(work, 'install');
        execFileSync('cmake', ['--install', join(work, 'build-src'), '--prefix', prefix], { encoding: 'utf8' });

        const share = join(prefix, 'share', 'robomesh');
        for (const f of [
          'package.xml',
          'package.json',
          'dist/ros/robot-node.js',
          'node_modules',
          'config/robot.yaml',
          'config/fleet/r1.yaml',
          ...readdirSync(join(ROOT, 'launch')).map((f) => `launch/${f}`),
        ]) {
          assert.ok(existsSync(join(share, f)), `share/robomesh/${f} installed`);
        }
        const installed = join(prefix, 'lib', 'robomesh', 'robomesh_node');
        assert.ok(statSync(installed).mode & 0o111, 'lib/robomesh/robomesh_node is executable');
        // As `ros2 run robomesh robomesh_node --ros-args …` would start it, with the installed config.
        const printed = printParams(
          [
            installed,
            '--ros-args',
            '-r',
            '__node:=r5',
            '--params-file',
            join(share, 'config', 'robot.yaml'),
            '-p',
            'topics.scan:=front/scan',
          ],
          tmp,
        );
        assert.equal(printed.robot_name, 'r5');
        assert.equal(printed['topics.scan'], 'front/scan');
        assert.equal(printed['map.resolution'], 0.05);
      },
    );

    it('bin/robomesh_node runs the source tree build and says what to do when there is none', () => {
      const printed = printParams(
        [LAUNCHER, '--ros-args', '-r', '__node:=r6', '-r', '__ns:=/r6', '-p', 'robot_name:=r6'],
        tmp,
      );
      assert.equal(printed.robot_name, 'r6');
      assert.equal(printed.namespace, '/r6');
      const lonely = join(tmp, 'lonely');
      mkdirSync(lonely);
      cpSync(LAUNCHER, join(lonely, 'robomesh_node'));
      chmodSync(join(lonely, 'robomesh_node'), 0o755);
      const r = runNode([join(lonely, 'robomesh_node')], tmp);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /cannot find robot-node\.js/);
      assert.match(r.stderr, /npm ci && npm run build/);
    });

    it(
      'bin/robomesh_node starts the robot with the robot ' + 'malloc tunables, unless the caller set malloc tunables',
      () => {
        // ROBOMESH_NODE stands in for node: a script printing the environment it was given.
        const fake = join(tmp, 'print-tunables');
        writeFileSync(fake, '#!/bin/sh\nprintf "%s" "$GLIBC_TUNABLES"\n');
        chmodSync(fake, 0o755);
        const run = (tunables?: string): string => {
          const env: NodeJS.ProcessEnv = { ...process.env, ROBOMESH_NODE: fake };
          if (tunables === undefined) delete env.GLIBC_TUNABLES;
          else env.GLIBC_TUNABLES = tunables;
          const r = spawnSync(LAUNCHER, [], { env, encoding: 'utf8' });
          assert.equal(r.status, 0, r.stderr);
          return r.stdout;
        };
        assert.equal(run(), robotProcessEnv({}).GLIBC_TUNABLES, 'the same values as ROBOT_MALLOC_TUNABLES');
        assert.equal(
          run('glibc.pthread.rseq=0'),
          robotProcessEnv({ GLIBC_TUNABLES: 'glibc.pthread.rseq=0' }).GLIBC_TUNABLES,
        );
        assert.equal(run('glibc.malloc.arena_max=2'), 'glibc.malloc.arena_max=2', 'malloc tunables of the caller win');
      },
    );
  });

  describe('file syntax', () => {
    it('XML launch files are well-formed, with no "--" inside comments', () => {
      const files = filesUnder(join(ROOT, 'launch'), /\.xml$/);
      assert.ok(files.length >= 2);
      for (const f of files) {
        for (const [, comment] of readFileSync(f, 'utf8').matchAll(/<!--([\s\S]*?)-->/g))
          assert.ok(!comment.includes('--'), `${f}: "--" inside a comment`);
        assert.equal(readXml(f).tag, 'launch', f);
      }
    });

    it('YAML files under launch/ and config/ parse', () => {
      const files = [...filesUnder(join(ROOT, 'launch'), /\.ya?ml$/), ...filesUnder(join(ROOT, 'config'), /\.ya?ml$/)];
      assert.ok(files.length >= 5);
      for (const f of files) assert.deepEqual(parseDocument(readFileSync(f, 'utf8')).errors, [], f);
    });

    it('robot.launch.py compiles (py_compile)', () => {
      execFileSync(python(), ['-m', 'py_compile', join(ROOT, 'launch', 'robot.launch.py')], {
        env: { ...process.env, PYTHONPYCACHEPREFIX: join(tmp, 'pycache') }, // keep launch/ clean
      });
    });

    it('configs are ROS 2 parameter files that set only robomesh parameters, typed as ROS will type them', () => {
      for (const f of configFiles()) {
        const settings = paramsFileSettings(f);
        assert.ok(settings.length > 0, f);
        for (const s of settings) assert.equal(settingProblem(s), undefined, `${f}: ${s.name}`);
        // The launch files set these; a params file given after them would override them.
        for (const s of settings)
          assert.ok(!['robot_name', 'namespace', 'config_file'].includes(s.name), `${f} must not set ${s.name}`);
      }
    });
  });

  for (const file of ROBOT_LAUNCH_FILES) {
    describe(file, () => {
      it('declares robot, namespace and config with their defaults', () => {
        assert.deepEqual(declaredArgs(file, tmp), {
          robot: 'robot',
          namespace: '',
          config: join(ROOT, 'config', 'robot.yaml'),
        });
      });

      it('defaults: one robomesh_node named robot, the package config as config_file and params file', () => {
        const nodes = runLaunch(file, {}, tmp);
        assert.equal(nodes.length, 1);
        const [node] = nodes;
        const config = join(ROOT, 'config', 'robot.yaml');
        assert.deepEqual(node.argv.slice(0, 6), [LAUNCHER, '--ros-args', '-r', '__node:=robot', '-r', '__ns:=/']);
        assert.deepEqual(node.argv.slice(-2), ['--params-file', config]);
        assert.deepEqual(node.setParams, { robot_name: 'robot', config_file: config });
        assert.deepEqual(node.paramsFiles, [config]);

        const printed = printParams(node.argv, tmp);
        assert.equal(printed.robot_name, 'robot');
        assert.equal(printed.namespace, '/');
        assert.equal(printed.config_file, config);
        for (const s of paramsFileSettings(config))
          assert.deepEqual(printed[s.name], s.value, `${s.name} from config/robot.yaml`);
      });

      it('robot:=r7 namespace:=/lab config:=FILE reach the node', () => {
        const [node] = runLaunch(file, { robot: 'r7', namespace: '/lab', config: customConfig }, tmp);
        assert.ok(node.argv.includes('__node:=r7') && node.argv.includes('__ns:=/lab'), node.argv.join(' '));
        const printed = printParams(node.argv, tmp);
        assert.equal(printed.robot_name, 'r7');
        assert.equal(printed.namespace, '/lab');
        assert.equal(printed.config_file, customConfig);
        assert.equal(printed['topics.scan'], 'front_lidar/scan');
        assert.equal(printed['topics.odom'], 'odom', 'unset topics keep their defaults');
        assert.equal(printed['map.resolution'], 0.1);
        assert.equal(printed['fleet.name'], 'lab');
      });

      it('a config with a misspelled key: the node exits 2 naming it', () => {
        const bad = join(tmp, 'misspelled.yaml');
        writeFileSync(bad, '/**:\n  ros__parameters:\n    topics:\n      scna: lidar\n');
        const [node] = runLaunch(file, { robot: 'r8', config: bad }, tmp);
        const r = runNode(node.argv, tmp);
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, /topics\.scna/);
      });
    });
  }

  it('the three robot launch files give the node the same settings', () => {
    const args = { robot: 'r9', namespace: 'ns9', config: customConfig };
    const [xml, yaml, py] = ROBOT_LAUNCH_FILES.map((f) => {
      const [node] = runLaunch(f, args, tmp);
      return printParams(node.argv, tmp);
    });
    assert.equal(xml.namespace, '/ns9', 'a relative namespace is made absolute');
    assert.deepEqual(yaml, xml);
    assert.deepEqual(py, xml);
  });

  it('launch files set only parameters from PARAMETERS', () => {
    const names = [...ROBOT_LAUNCH_FILES, 'fleet.launch.xml'].flatMap((f) =>
      runLaunch(f, {}, tmp).flatMap((n) => Object.keys(n.setParams)),
    );
    assert.ok(names.length > 0);
    for (const n of names) assert.ok(KNOWN.has(n), `${n} is not in PARAMETERS`);
  });

  it('fleet.launch.xml starts r0, r1, r2 in /r0, /r1, /r2, each with its own config', () => {
    const nodes = runLaunch('fleet.launch.xml', {}, tmp);
    assert.deepEqual(
      nodes.map((n) => [n.name, n.namespace, n.paramsFiles]),
      [0, 1, 2].map((i) => [`r${i}`, `/r${i}`, [join(ROOT, 'config', 'fleet', `r${i}.yaml`)]]),
    );
    const printed = nodes.map((n) => printParams(n.argv, tmp));
    printed.forEach((p, i) => {
      assert.equal(p.robot_name, `r${i}`);
      assert.equal(p.namespace, `/r${i}`);
      assert.equal(p.config_file, join(ROOT, 'config', 'fleet', `r${i}.yaml`));
      assert.equal(p['fleet.name'], 'local');
      assert.deepEqual(p['fleet.listen'], [`/ip4/127.0.0.1/tcp/${4700 + i}`]);
      assert.deepEqual(p['fleet.dev_members'], ['r0', 'r1', 'r2'], 'a development fleet out of the box');
      assert.deepEqual(
        p['fleet.bootstrap'],
        [0, 1].slice(0, i).map((k) => `/ip4/127.0.0.1/tcp/${4700 + k}/p2p/dev:r${k}`),
        'each dials the robots before it',
      );
    });
    assert.equal(new Set(printed.map((p) => p.data_dir)).size, 3, 'each robot has its own data directory');
  });
});
