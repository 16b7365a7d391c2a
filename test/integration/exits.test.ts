import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import {
  type ExitHead,
  attr,
  chooseThreshold,
  declareExit,
  node,
  opset13Model,
  parseModel,
  serializeModel,
  tensorValueInfo,
  textLikeImage,
  fitExits,
  judgeExit,
  loadCalibration,
  parseExit,
  renderTextLines,
} from '../../nodes/inference/index.js';
import { tensorProto } from '../../nodes/inference/onnx-model.js';
import { type Feeds, ModelSlicer } from '../../nodes/inference/slicer.js';
import { prng } from '../../nodes/util/index.js';
import type { Robot } from '../../nodes/robot/robot.js';
import { robomesh } from '../helpers/cli.js';
import { startFleet, testIdentities } from '../helpers/fleet.js';
import { sessions, slicerFor } from '../helpers/models.js';

/**
 * Early exits on PaddleOCR's text-direction classifier (a real pretrained model), fitted on text
 * lines rendered in the installed TrueType fonts, half upside down.
 */
const argmax = (x: ArrayLike<number>): number => {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
};

async function lines(count: number, seed: number): Promise<{ dir: string; feeds: Feeds[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'robomesh-lines-'));
  await renderTextLines(dir, { count, seed });
  const feeds = await loadCalibration(dir, { name: 'x', shape: [1, 3, 48, 192] });
  return { dir, feeds };
}

/** Share of inputs where exit-or-whole answers as the whole model does, and the share that exited. */
async function judge(
  slicer: ModelSlicer,
  exit: ExitHead,
  feeds: Feeds[],
): Promise<{ agreement: number; rate: number }> {
  let agree = 0;
  let exited = 0;
  const output = slicer.analysis.index.outputs[0];
  for (const f of feeds) {
    const whole = argmax((await slicer.runWhole(f))[output].data as Float32Array);
    const { logits } = await slicer.runHeadWithExit(exit, 'fp32', f);
    const verdict = judgeExit(exit.info, logits);
    if (verdict.confident) exited++;
    const answer = verdict.confident ? argmax(verdict.outputs[0].data as Float32Array) : whole;
    if (answer === whole) agree++;
  }
  return { agreement: agree / feeds.length, rate: exited / feeds.length };
}

describe('early exits (builtin:ocr-cls on rendered text lines)', function () {
  this.timeout(300_000);
  let slicer: ModelSlicer;
  let calib: { dir: string; feeds: Feeds[] };
  let heldOut: { dir: string; feeds: Feeds[] };
  let exits: ExitHead[];
  let best: ExitHead;

  before(async () => {
    slicer = await slicerFor('ocr-cls');
    calib = await lines(1000, 5);
    heldOut = await lines(200, 77);
    exits = await fitExits(slicer, calib.feeds, { seed: 3 });
    best = [...exits].sort((a, b) => b.info.exitRate - a.info.exitRate)[0];
    process.stdout.write(
      `      exits: ${exits
        .map((e) => `${e.info.cut} rate ${e.info.exitRate.toFixed(2)} agree ${e.info.agreement.toFixed(3)}`)
        .join('; ')}\n`,
    );
  });
  after(async () => {
    for (const d of [calib?.dir, heldOut?.dir]) if (d) await rm(d, { recursive: true, force: true });
  });

  it('fitting is deterministic for a seed', async () => {
    const again = await fitExits(slicer, calib.feeds, { seed: 3, cuts: [best.info.cut] });
    assert.equal(again[0].hash, best.hash, 'same seed, same exit bytes');
    const other = await fitExits(slicer, calib.feeds, { seed: 4, cuts: [best.info.cut] });
    assert.notEqual(other[0].hash, best.hash, 'another seed splits the inputs otherwise');
  });

  it('the fitted threshold keeps agreement ≥ the target on held-out inputs', async () => {
    // The exit a robot would use most, on the fifth of the calibration lines kept out of fitting
    // and threshold, and on 200 lines rendered from another seed.
    assert.ok(best.info.agreement >= 0.99, `${best.info.cut}: ${best.info.agreement} on its test share`);
    assert.ok(best.info.exitRate >= 0.3, `the best exit answers ${best.info.exitRate} of inputs`);
    // Every exit, within one miss in its 200 test inputs (15 exits, each a draw of 200).
    for (const e of exits) assert.ok(e.info.agreement >= 0.985, `${e.info.cut}: ${e.info.agreement} on its test share`);
    const fresh = await judge(slicer, best, heldOut.feeds);
    assert.ok(fresh.agreement >= 0.99, `agreement ${fresh.agreement} on 200 lines never seen in fitting`);
    assert.ok(fresh.rate >= 0.2, `exit rate ${fresh.rate} on fresh lines`);
  });

  it('chooses the lowest threshold that keeps the target with misses counted at an upper bound', () => {
    // 20 inputs; the one at 0.9 disagrees. With none seen the bound is 3 misses; with one, 1 + 2√2 + 1.
    const judged = Array.from({ length: 20 }, (_, i) => ({ confidence: (100 - i) / 100, agrees: i !== 5 }));
    assert.equal(chooseThreshold(judged, 0.85), 0.96, '3 of 20 bounded is 0.85; the miss at 0.95 makes 4.8');
    assert.equal(chooseThreshold(judged, 0.75), 0.81, '4.8 of 20 is within 0.75');
    assert.ok(chooseThreshold(judged, 0.9) > 1, 'never exits when nothing qualifies');
  });

  it('exits are stored as ONNX files identified by hash; a foreign file is refused with a clear error', async () => {
    const parsed = parseExit(best.bytes, 'exit.onnx');
    assert.equal(parsed.hash, best.hash);
    assert.deepEqual(parsed.info, best.info);
    const model = slicer.analysis.model.bytes;
    assert.throws(() => parseExit(model, 'ocr-cls.onnx'), /not a robomesh exit/);
  });

  it('`robomesh exits fit` writes exits with a table; bad input is one line, exit 2', async () => {
    const out = await mkdtemp(join(tmpdir(), 'robomesh-exits-'));
    try {
      const ok = await robomesh([
        'exits',
        'fit',
        'builtin:ocr-cls',
        '--calib',
        calib.dir,
        '--out',
        out,
        '--cut',
        best.info.cut,
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /exit rate/);
      const files = await readdir(out);
      assert.equal(files.length, 1);
      const written = parseExit(new Uint8Array(await readFile(join(out, files[0]))));
      assert.equal(written.info.cut, best.info.cut);
      const bad = await robomesh(['exits', 'fit', 'builtin:ocr-cls', '--calib', join(out, 'nope')]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /^robomesh: cannot read calibration directory .*nope/);
      assert.equal(bad.stderr.trim().split('\n').length, 1);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  describe('on two robots over libp2p', () => {
    let robots: Robot[];
    let exitFile: string;
    let neverFile: string;
    before(async () => {
      const dir = await mkdtemp(join(tmpdir(), 'robomesh-exit-files-'));
      exitFile = join(dir, 'exit.onnx');
      neverFile = join(dir, 'never.onnx');
      await writeFile(exitFile, best.bytes);
      // The same exit with a threshold no input reaches: every request goes on to the cut.
      const never = (await fitExits(slicer, calib.feeds, { seed: 3, cuts: [best.info.cut], target: 1 }))[0];
      assert.ok(never.info.threshold > 1, 'a target of 100 % with a margin for misses never exits');
      await writeFile(neverFile, never.bytes);
      const model = { arg: 'builtin:ocr-cls', inputShape: { x: [1, 3, 48, 192] } };
      robots = await startFleet(await testIdentities(2, 190), [model], (i) => ({
        models: [{ ...model, exits: i === 0 ? [exitFile] : [] }],
      }));
    });
    after(async () => {
      for (const r of robots ?? []) await r.stop();
    });

    it('a confident exit finishes on the requester with no bytes sent', async () => {
      const [requester, peer] = robots;
      const hash = requester.models.hashes()[0];
      const servedBefore = peer.service.served;
      let taken = 0;
      let shipped = 0;
      for (const f of heldOut.feeds.slice(0, 20)) {
        const input = [{ name: 'x', dtype: 'float32' as const, dims: [1, 3, 48, 192], data: f.x.data as Float32Array }];
        const { decision, outputs } = await requester.infer(hash, input, {
          force: { kind: 'split', cut: best.info.cut, precision: 'fp32', exit: true },
        });
        assert.equal(decision.exit?.cut, best.info.cut);
        if (!decision.exit!.taken) {
          shipped++;
          continue;
        }
        taken++;
        assert.equal(decision.executor, requester.peerId);
        assert.equal(decision.bytes, undefined, 'nothing shipped');
        const whole = (await slicer.runWhole(f))[slicer.analysis.index.outputs[0]].data as Float32Array;
        assert.equal(argmax(outputs[0].data as Float32Array), argmax(whole));
      }
      assert.ok(taken >= 4, `${taken} of 20 exited`);
      assert.equal(peer.service.served, servedBefore + shipped, 'the peer served only the requests that did not exit');
    });

    it('an unconfident exit continues to the cut and the peer', async () => {
      const [requester, peer] = robots;
      const hash = requester.models.hashes()[0];
      await requester.models.addExit(parseExit(new Uint8Array(await readFile(neverFile))), neverFile);
      const servedBefore = peer.service.served;
      const f = heldOut.feeds[0];
      const input = [{ name: 'x', dtype: 'float32' as const, dims: [1, 3, 48, 192], data: f.x.data as Float32Array }];
      const { decision, outputs } = await requester.infer(hash, input, {
        force: { kind: 'split', cut: best.info.cut, precision: 'fp32', exit: true, peer: peer.peerId },
      });
      assert.equal(decision.exit?.taken, false);
      assert.equal(decision.executor, peer.peerId);
      assert.ok((decision.bytes?.sent ?? 0) > 0, 'the boundary was shipped');
      assert.equal(peer.service.served, servedBefore + 1);
      const whole = (await slicer.runWhole(f))[slicer.analysis.index.outputs[0]].data as Float32Array;
      const got = outputs[0].data as Float32Array;
      for (let i = 0; i < whole.length; i++) assert.ok(Math.abs(got[i] - whole[i]) < 1e-4);
    });

    it('an exit that does not answer as the model does, or for another model, is refused', async () => {
      const [requester] = robots;
      await assert.rejects(
        requester.models.addExit({ ...best, info: { ...best.info, classes: 3 } }, 'three.onnx'),
        /three\.onnx answers 3 scores/,
      );
      await assert.rejects(
        requester.models.addExit({ ...best, info: { ...best.info, model: 'f'.repeat(64) } }, 'other.onnx'),
        /other\.onnx belongs to model ffffffffffff/,
      );
    });

    it('the scheduler plans exits jointly with cut, peer and precision', () => {
      const [requester] = robots;
      const hash = requester.models.hashes()[0];
      const f = heldOut.feeds[0];
      const input = [{ name: 'x', dtype: 'float32' as const, dims: [1, 3, 48, 192], data: f.x.data as Float32Array }];
      const plans = requester.scheduler.plans(hash, input);
      const withExit = plans.filter((p) => p.exit);
      assert.ok(
        withExit.some((p) => p.kind === 'local'),
        'an exit with its misses finished locally',
      );
      assert.ok(
        withExit.some((p) => p.kind === 'split'),
        'an exit before a split',
      );
      for (const p of withExit) {
        const { headMs, exitMs, afterExitMs } = p.breakdown;
        const expected = headMs + exitMs! + (1 - p.exit!.rate) * afterExitMs!;
        assert.ok(Math.abs(p.predictedMs - expected) < 1e-6, 'mean latency from the exit rate');
      }
      const other = [{ ...input[0], dims: [1, 3, 48, 96], data: new Float32Array(3 * 48 * 96) }];
      assert.equal(
        requester.scheduler.plans(hash, other).filter((p) => p.exit).length,
        0,
        'no exit at an input shape it was not fitted at',
      );
    });
  });
});

describe('declared exits: an output the model computes at an earlier depth', function () {
  this.timeout(120_000);
  /** Stem → t1 → (early: pool, linear) and (trunk: conv, pool, linear → logits), seeded weights. */
  function earlyHeadModel(): Uint8Array {
    const random = prng(5);
    const w = (name: string, dims: number[]) =>
      tensorProto(
        name,
        1,
        dims,
        Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => random() - 0.5),
      );
    const graph = {
      name: 'early_head',
      node: [
        node('Conv', ['x', 'c1.w', 'c1.b'], ['c1'], [attr('pads', [1, 1, 1, 1]), attr('strides', [2, 2])]),
        node('Relu', ['c1'], ['t1']),
        node('GlobalAveragePool', ['t1'], ['e.pool']),
        node('Flatten', ['e.pool'], ['e.flat']),
        node('Gemm', ['e.flat', 'e.w', 'e.b'], ['early'], [attr('transB', 1)]),
        node('Conv', ['t1', 'c2.w', 'c2.b'], ['c2'], [attr('pads', [1, 1, 1, 1]), attr('strides', [2, 2])]),
        node('Relu', ['c2'], ['t2']),
        node('Conv', ['t2', 'c3.w', 'c3.b'], ['c3'], [attr('pads', [1, 1, 1, 1])]),
        node('Relu', ['c3'], ['t3']),
        node('GlobalAveragePool', ['t3'], ['f.pool']),
        node('Flatten', ['f.pool'], ['f.flat']),
        node('Gemm', ['f.flat', 'f.w', 'f.b'], ['logits'], [attr('transB', 1)]),
      ],
      initializer: [
        w('c1.w', [8, 3, 3, 3]),
        w('c1.b', [8]),
        w('e.w', [4, 8]),
        w('e.b', [4]),
        w('c2.w', [16, 8, 3, 3]),
        w('c2.b', [16]),
        w('c3.w', [16, 16, 3, 3]),
        w('c3.b', [16]),
        w('f.w', [4, 16]),
        w('f.b', [4]),
      ],
      input: [tensorValueInfo('x', 1, [1, 3, 32, 32])],
      output: [tensorValueInfo('logits', 1, [1, 4]), tensorValueInfo('early', 1, [1, 4])],
    };
    return serializeModel(opset13Model('test early head', graph));
  }
  const feeds: Feeds[] = Array.from({ length: 60 }, (_, k) => ({
    x: new ort.Tensor('float32', textLikeImage(32, 32, 100 + k), [1, 3, 32, 32]),
  }));

  it('the model without the early output gets cuts past it; the exit reproduces that output', async () => {
    const original = parseModel(earlyHeadModel(), 'early-head');
    const before = await ModelSlicer.open(original, sessions);
    const declared = await declareExit(original, 'early', feeds, sessions, { target: 0.9 });
    const { slicer, exit } = declared;
    assert.deepEqual(slicer.analysis.index.outputs, ['logits']);
    const exitCut = slicer.analysis.cuts.find((c) => c.id === exit.info.cut)!;
    assert.deepEqual(
      exitCut.tensors.map((t) => t.name),
      ['t1'],
      'the exit reads the trunk tensor its branch starts from',
    );
    assert.ok(
      slicer.analysis.cuts.some((c) => c.headShare > exitCut.headShare),
      'cuts after the branch (with the early output live to the end, there were none)',
    );
    assert.ok(!before.analysis.cuts.some((c) => c.headShare > exitCut.headShare + 0.01));
    const whole = await ort.InferenceSession.create(original.bytes, { logSeverityLevel: 3 });
    try {
      for (const f of feeds.slice(0, 5)) {
        const expected = await whole.run(f);
        const { logits } = await slicer.runHeadWithExit(exit, 'fp32', f);
        const early = expected.early.data as Float32Array;
        for (let i = 0; i < 4; i++) assert.ok(Math.abs(logits[i] - early[i]) < 1e-5, 'the exit is the early head');
        const final = (await slicer.runWhole(f)).logits.data as Float32Array;
        assert.deepEqual(Array.from(final), Array.from(expected.logits.data as Float32Array));
      }
    } finally {
      await whole.release();
    }
    assert.equal(parseExit(exit.bytes).info.model, declared.model.hash, 'the exit belongs to the pruned model');
    await assert.rejects(declareExit(original, 'nope', feeds, sessions), /no output 'nope'/);
  });
});
