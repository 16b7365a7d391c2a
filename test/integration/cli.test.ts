import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { ocrModelPath } from '../../nodes/inference/bundled-models.js';
import { textLikeImage } from '../../nodes/inference/sample-images.js';
import { ModelRegistry, SessionCache, outputsToTensors, parseModel } from '../../nodes/inference/index.js';
import { decodeChainManifest } from '../../protocol/chain-manifest.js';
import { inputsFor, slicerFor } from '../helpers/models.js';

const CLI = fileURLToPath(new URL('../../nodes/apps/cli/main.js', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function robomesh(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = (err as { code?: unknown } | null)?.code;
      resolve({ code: err ? (typeof code === 'number' ? code : 1) : 0, stdout, stderr });
    });
  });
}

describe('robomesh CLI', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'robomesh-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('--help on every command', async () => {
    for (const args of [['--help'], ['slice', '--help'], ['profile', '--help'], ['demo', '--help']]) {
      const r = await robomesh(...args);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Usage: robomesh/);
    }
  });

  it('slice --list --json prints the documented cut objects', async () => {
    const r = await robomesh(
      'slice',
      ocrModelPath('ch_PP-OCRv4_det_infer.onnx'),
      '--list',
      '--json',
      '--input-shape',
      'x=1x3x320x320',
    );
    assert.equal(r.code, 0, r.stderr);
    const cuts = JSON.parse(r.stdout) as Record<string, unknown>[];
    assert.ok(cuts.length > 5);
    for (const c of cuts) {
      assert.deepEqual(Object.keys(c).sort(), ['bytes', 'headShare', 'id', 'tensors']);
      assert.deepEqual(Object.keys(c.bytes as object).sort(), ['fp16', 'fp32', 'int8']);
      for (const t of c.tensors as Record<string, unknown>[]) {
        assert.deepEqual(Object.keys(t).sort(), ['dtype', 'name', 'shape']);
        assert.equal(t.dtype, 'float32');
        assert.equal((t.shape as number[])[2] <= 160, true);
      }
    }
    assert.ok(
      cuts.some((c) => (c.tensors as unknown[]).length > 1),
      'the detector has multi-tensor cuts',
    );
    const table = await robomesh('slice', 'builtin:cnn', '--list');
    assert.equal(table.code, 0);
    assert.match(table.stdout, /head share/);
  });

  it('slice --cut --out writes head, tail and cut.json that chain to the whole model', async () => {
    const list = JSON.parse((await robomesh('slice', 'builtin:ocr-cls', '--list', '--json')).stdout) as {
      id: string;
    }[];
    const cut = list[Math.floor(list.length / 2)].id;
    for (const precision of ['fp32', 'int8']) {
      const out = join(dir, `cls-${precision}`);
      const r = await robomesh('slice', 'builtin:ocr-cls', '--cut', cut, '--precision', precision, '--out', out);
      assert.equal(r.code, 0, r.stderr);
      const meta = JSON.parse(await readFile(join(out, 'cut.json'), 'utf8')) as {
        tensors: string[];
        boundary: { parts: string[] }[];
      };
      assert.ok(meta.tensors.length >= 1);
      const head = await ort.InferenceSession.create(join(out, 'head.onnx'));
      const tail = await ort.InferenceSession.create(join(out, 'tail.onnx'));
      const whole = await ort.InferenceSession.create(ocrModelPath('ch_ppocr_mobile_v2.0_cls_infer.onnx'));
      assert.deepEqual([...tail.inputNames].sort(), meta.boundary.flatMap((b) => b.parts).sort());
      const x = new ort.Tensor('float32', textLikeImage(48, 192, 5, 4), [4, 3, 48, 192]);
      const expected = (await whole.run({ x }))[whole.outputNames[0]].data as Float32Array;
      const got = (await tail.run(await head.run({ x })))[tail.outputNames[0]].data as Float32Array;
      const diff = Math.max(...expected.map((v, i) => Math.abs(v - got[i])));
      assert.ok(diff <= (precision === 'fp32' ? 1e-4 : 0.02), `${precision}: max |Δ| ${diff}`);
      await Promise.all([head.release(), tail.release(), whole.release()]);
    }
  });

  it('chain build writes stage files and a manifest that run as the whole model; bad input is one line', async () => {
    const out = join(dir, 'chain');
    const r = await robomesh('chain', 'build', 'builtin:cnn', '--stages', '3', '--precision', 'fp16', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /3 stages at fp16/);
    const manifest = decodeChainManifest(await readFile(join(out, 'chain.json'), 'utf8'));
    assert.equal(manifest.stages.length, 3);
    const registry = new ModelRegistry(new SessionCache({ threads: 1 }));
    for (const file of (await readdir(out)).filter((f) => f.endsWith('.onnx')))
      await registry.addStage(parseModel(new Uint8Array(await readFile(join(out, file)))), file);
    assert.deepEqual(registry.hashes().sort(), manifest.stages.map((x) => x.hash).sort());
    const slicer = await slicerFor('cnn');
    const feeds = inputsFor(slicer, 'cnn', 2);
    let tensors = outputsToTensors(feeds);
    for (const stage of manifest.stages)
      tensors = await registry.runFrom(stage.hash, 'input', 'fp32', 'channel', tensors);
    const whole = Object.values(await slicer.runWhole(feeds))[0].data as Float32Array;
    const got = tensors[0].data as Float32Array;
    assert.ok(
      whole.every((v, i) => Math.abs(v - got[i]) <= 1e-2),
      'fp16 boundaries stay close to the whole model',
    );
    // chain run: one robot per stage on loopback, a stream through them.
    const run = await robomesh('chain', 'run', out, '--fps', '20', '--seconds', '1');
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /(\d+) of 20 frames delivered .*results in frame order/);
    assert.match(run.stdout, /stage 3: median [\d.]+ ms .* on s3 ×\d+/);
    for (const [args, message] of [
      [['chain', 'run', join(dir, 'nowhere')], /cannot read a chain in/],
      [['chain', 'build', 'builtin:cnn', '--stages', '1', '--out', out], /at least 2 stages/],
      [['chain', 'build', 'builtin:cnn', '--cuts', 'c999,c1', '--out', out], /no cut 'c999'/],
      [['chain', 'build', 'builtin:cnn', '--stages', '40', '--out', out], /no 39 cuts/],
      [['chain', 'build', 'builtin:cnn', '--out', join(dir, 'chain', 'chain.json', 'sub')], /cannot write to/],
      [['chain', 'build', join(dir, 'missing.onnx')], /cannot read model/],
      [['chain', 'build', 'builtin:cnn', '--replicas', '1,0,1', '--out', out], /--replicas needs 3 whole numbers/],
    ] as [string[], RegExp][]) {
      const bad = await robomesh(...args);
      assert.equal(bad.code, 2, `${args.join(' ')}: ${bad.stderr}`);
      assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
      assert.match(bad.stderr, message);
    }
  });

  it('bad input gets a clear message and exit code 2, never a stack trace', async () => {
    const garbage = join(dir, 'garbage.onnx');
    await writeFile(garbage, 'this is not protobuf at all \u0000\u00ff');
    const cases: [string[], RegExp][] = [
      [['slice', join(dir, 'missing.onnx'), '--list'], /cannot read model .*missing\.onnx/],
      [['slice', garbage, '--list'], /not a valid ONNX|no graph nodes/],
      [['slice', 'builtin:cnn', '--cut', 'c999', '--out', dir], /no cut 'c999'.*cuts: c\d/],
      [['slice', 'builtin:cnn', '--cut', 'c1'], /--cut needs --out/],
      [['slice', 'builtin:cnn'], /give --list/],
      [['slice', 'builtin:nope', '--list'], /no built-in model 'nope'/],
      [['slice', 'builtin:cnn', '--list', '--input-shape', 'image=1x3x32x32'], /dim 2 is fixed at 64/],
      [['slice', 'builtin:cnn', '--list', '--input-shape', 'nope=1x2'], /no input 'nope'/],
    ];
    for (const [args, message] of cases) {
      const r = await robomesh(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
    // Option errors too: one line, exit 2, no help text dumped.
    for (const args of [
      ['slice', 'builtin:cnn', '--list', '--precision', 'int4'],
      ['fleet', '--robots', 'many'],
      ['audit', 'tasks', '--bogus'],
      ['no-such-command'],
    ]) {
      const r = await robomesh(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: one line, got ${r.stderr}`);
      assert.match(r.stderr, /^robomesh: /);
    }
    // A --out that cannot be written (a file where a folder should be).
    await writeFile(join(dir, 'a-file'), 'x');
    const out = await robomesh('slice', 'builtin:cnn', '--cut', 'c1', '--out', join(dir, 'a-file', 'sub'));
    assert.equal(out.code, 2, out.stderr);
    assert.match(out.stderr, /^robomesh: cannot write to .*a-file\/sub/);
    assert.doesNotMatch(out.stderr, /\n\s+at /);
  });

  it('profile measures every cut once, then reuses the stored profile', async () => {
    const cache = join(dir, 'profiles');
    const first = await robomesh('profile', 'builtin:cnn', '--runs', '3', '--cache-dir', cache, '--json');
    assert.equal(first.code, 0, first.stderr);
    const profile = JSON.parse(first.stdout) as {
      wholeMs: number;
      cuts: { id: string; headMs: number; tailMs: number }[];
    };
    const list = JSON.parse((await robomesh('slice', 'builtin:cnn', '--list', '--json')).stdout) as { id: string }[];
    assert.deepEqual(
      profile.cuts.map((c) => c.id),
      list.map((c) => c.id),
    );
    for (const c of profile.cuts) assert.ok(c.headMs > 0 && c.tailMs > 0);
    assert.ok(profile.wholeMs > 0);
    const second = await robomesh('profile', 'builtin:cnn', '--runs', '3', '--cache-dir', cache, '--json');
    assert.match(second.stderr, /using the profile measured/);
    assert.deepEqual(JSON.parse(second.stdout), profile);
    const table = await robomesh('profile', 'builtin:cnn', '--runs', '3', '--cache-dir', cache);
    assert.match(table.stdout, /\(head\+tail\)\/whole/);
  });
});
