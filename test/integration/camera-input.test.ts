import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { loadModelArg } from '../../nodes/inference/bundled-models.js';
import { textLikeImage } from '../../nodes/inference/sample-images.js';
import type { Robot } from '../../nodes/robot/robot.js';
import { resultDigest } from '../../protocol/result-summary.js';
import type { Tensor } from '../../protocol/tensor-frame.js';
import { readBag } from '../../ros/bag-reader.js';
import { RosError } from '../../ros/errors.js';
import { type CameraFit, compressedToTensor, imageToTensor, tensorToRgb8 } from '../../ros/image.js';
import { McapTransport } from '../../ros/mcap-transport.js';
import { codec } from '../../ros/messages.js';
import { resolveParams } from '../../ros/params.js';
import { RobotRosNode } from '../../ros/robot-ros-node.js';
import { startRobot } from '../../ros/robot-setup.js';
import { sharedCache } from '../helpers/fleet.js';

/**
 * Camera frames as real cameras send them (640×480, bgr8, JPEG through image_transport) reach the
 * OCR detector (320×320 input) as its preprocessing expects. "By hand" below is written apart from
 * ros/image.ts: its own channel order, its own letterbox and normalisation, sharp called directly.
 */
const W = 640;
const H = 480;
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];
const FIT: CameraFit = { height: 320, width: 320, resize: 'letterbox' };

/** A text-like picture as packed RGB bytes. */
const picture = (): Uint8Array => tensorToRgb8(textLikeImage(H, W, 7), H, W);

/** Scale to fit 320×320 keeping the aspect ratio (640×480 → 320×240), top left, zeros elsewhere. */
async function byHand(rgb: Uint8Array, w: number, h: number): Promise<Float32Array> {
  const s = Math.min(320 / w, 320 / h);
  const [sw, sh] = [Math.round(w * s), Math.round(h * s)];
  const small = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
    .resize(sw, sh, { fit: 'fill', kernel: 'linear' })
    .raw()
    .toBuffer();
  const out = new Float32Array(3 * 320 * 320);
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < sh; y++)
      for (let x = 0; x < sw; x++)
        out[c * 320 * 320 + y * 320 + x] = (small[(y * sw + x) * 3 + c] / 255 - MEAN[c]) / STD[c];
  return out;
}

/** The detector's text mask (DB's probability map over its 0.3 threshold), for comparing detections. */
const mask = (probabilities: Float32Array): Uint8Array => Uint8Array.from(probabilities, (p) => (p > 0.3 ? 1 : 0));

describe('camera frames of any size and encoding, fitted to the model as its preprocessing expects', function () {
  this.timeout(180_000);
  let dir: string;
  let session: ort.InferenceSession;
  const detect = async (data: Float32Array): Promise<Float32Array> => {
    const out = await session.run({ x: new ort.Tensor('float32', data, [1, 3, 320, 320]) });
    return out[session.outputNames[0]].data as Float32Array;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rm-camera-'));
    session = await ort.InferenceSession.create((await loadModelArg('builtin:ocr-det')).bytes);
  });
  after(async () => {
    await session?.release();
    await rm(dir, { recursive: true, force: true });
  });

  it('a 640×480 bgr8 stream and a JPEG stream detect what the same pictures preprocessed by hand do', async () => {
    const rgb = picture();
    const bgr = Uint8Array.from(rgb, (_, i) => rgb[i - (i % 3) + 2 - (i % 3)]);
    const jpeg = new Uint8Array(
      await sharp(rgb, { raw: { width: W, height: H, channels: 3 } })
        .jpeg({ quality: 90 })
        .toBuffer(),
    );
    const jpegPixels = new Uint8Array(await sharp(jpeg).raw().toBuffer());

    // The conversions themselves: the same tensors as by hand.
    const fromBgr = await imageToTensor({ height: H, width: W, encoding: 'bgr8', step: 3 * W, data: bgr }, FIT);
    const fromJpeg = await compressedToTensor({ format: 'jpeg', data: jpeg }, FIT);
    const handBgr = await byHand(rgb, W, H);
    const handJpeg = await byHand(jpegPixels, W, H);
    const maxDiff = (a: Tensor, b: Float32Array) =>
      (a.data as Float32Array).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
    assert.deepEqual(fromBgr.dims, [1, 3, 320, 320]);
    assert.ok(maxDiff(fromBgr, handBgr) < 1e-6, `bgr8: ${maxDiff(fromBgr, handBgr)}`);
    assert.ok(maxDiff(fromJpeg, handJpeg) < 1e-6, `jpeg: ${maxDiff(fromJpeg, handJpeg)}`);

    // Through a robot's ROS node: two streams in a bag, one result each.
    const bagPath = join(dir, 'camera.mcap');
    const bag = await McapTransport.create(codec, bagPath);
    const raw = bag.publisher('/camera/image_raw', 'sensor_msgs/msg/Image');
    const compressed = bag.publisher('/camera/image_raw/compressed', 'sensor_msgs/msg/CompressedImage');
    for (let k = 0; k < 3; k++) {
      const stamp = { sec: k + 1, nanosec: 0 };
      bag.setClock(BigInt(k + 1) * 1_000_000_000n);
      raw.publish({
        header: { stamp, frame_id: 'camera' },
        height: H,
        width: W,
        encoding: 'bgr8',
        is_bigendian: 0,
        step: 3 * W,
        data: bgr,
      });
      compressed.publish({ header: { stamp, frame_id: 'camera' }, format: 'jpeg', data: jpeg });
    }
    await bag.close();

    const params = resolveParams([
      {
        robot_name: 'cam',
        data_dir: join(dir, 'cam'),
        models: ['builtin:ocr-det'],
        'fleet.listen': ['/ip4/127.0.0.1/tcp/0'],
        'fleet.mdns': false,
      },
    ]);
    const output = join(dir, 'out.mcap');
    const transport = await McapTransport.create(codec, output);
    let robot: Robot | undefined;
    try {
      robot = await startRobot(params, { cacheDir: await sharedCache(), profileRuns: 2, probeIntervalMs: 0 });
      const node = new RobotRosNode(robot, transport, params);
      await transport.replay(bagPath);
      node.close();
      assert.equal(node.counts.errors, 0);
      assert.equal(node.counts.results, 6, 'every frame inferred (a replay waits for each)');
    } finally {
      await transport.close();
      await robot?.stop();
    }
    const results: { summary: Float32Array }[] = [];
    for await (const m of readBag(output))
      if (m.topic === '/robomesh/inference') results.push(codec.decode(m.type, m.data) as (typeof results)[0]);
    assert.equal(results.length, 6);

    const handRaw = await detect(handBgr);
    const handCompressed = await detect(handJpeg);
    const found = mask(handRaw).reduce((n, v) => n + v, 0);
    assert.ok(found > 500, `the detector finds text in the picture (${found} pixels)`);
    // Detections from the node's own tensors: the same text mask as by hand.
    assert.deepEqual(mask(await detect(fromBgr.data as Float32Array)), mask(handRaw));
    assert.deepEqual(mask(await detect(fromJpeg.data as Float32Array)), mask(handCompressed));
    // And what the node published (mean, mean square, min, max of the map) is the hand run's.
    const expect = [handRaw, handCompressed].map(
      (p) => resultDigest([{ name: 'p', dtype: 'float32', dims: [p.length], data: p }]).values,
    );
    results.forEach((r, i) => {
      const want = expect[i % 2];
      [...r.summary].forEach((v, k) =>
        assert.ok(Math.abs(v - want[k] / 1e6) < 1e-4, `result ${i} value ${k}: ${v} vs ${want[k] / 1e6}`),
      );
    });
  });

  it('rgb8, rgba8, bgra8 and mono8, with padded rows, fit the same; stretch; bad frames are typed errors', async () => {
    const rgb = picture();
    const pad = 16;
    const as = (encoding: string, channels: number, pixel: (i: number) => number[]) => {
      const step = W * channels + pad;
      const data = new Uint8Array(step * H);
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data.set(pixel((y * W + x) * 3), y * step + x * channels);
      return { height: H, width: W, encoding, step, data };
    };
    const reference = await byHand(rgb, W, H);
    for (const img of [
      as('rgb8', 3, (i) => [rgb[i], rgb[i + 1], rgb[i + 2]]),
      as('rgba8', 4, (i) => [rgb[i], rgb[i + 1], rgb[i + 2], 255]),
      as('bgra8', 4, (i) => [rgb[i + 2], rgb[i + 1], rgb[i], 255]),
    ]) {
      const t = await imageToTensor(img, FIT);
      assert.ok(
        (t.data as Float32Array).every((v, i) => Math.abs(v - reference[i]) < 1e-6),
        `${img.encoding} with ${pad} bytes of row padding`,
      );
    }
    // Grey: every channel the same picture.
    const grey = as('mono8', 1, (i) => [rgb[i + 1]]);
    const g = (await imageToTensor(grey, FIT)).data as Float32Array;
    const plane = 320 * 320;
    assert.ok(Math.abs(g[0] * STD[0] + MEAN[0] - (g[plane] * STD[1] + MEAN[1])) < 1e-6);
    // Stretch: the whole input covered, no padding left.
    const stretched = (
      await imageToTensor(
        as('rgb8', 3, (i) => [rgb[i], rgb[i + 1], rgb[i + 2]]),
        {
          ...FIT,
          resize: 'stretch',
        },
      )
    ).data as Float32Array;
    assert.notEqual(stretched[plane - 1], 0, 'the bottom right corner holds the picture');
    // A PNG of the same picture decodes to the same pixels as the raw frame (lossless).
    const png = new Uint8Array(
      await sharp(rgb, { raw: { width: W, height: H, channels: 3 } })
        .png()
        .toBuffer(),
    );
    const fromPng = (await compressedToTensor({ format: 'png', data: png }, FIT)).data as Float32Array;
    assert.ok(fromPng.every((v, i) => Math.abs(v - reference[i]) < 1e-6));

    const code = (err: unknown) => err instanceof RosError && err.code === 'BAD_IMAGE';
    await assert.rejects(imageToTensor({ ...grey, encoding: 'yuv422' }, FIT), code);
    await assert.rejects(imageToTensor({ ...grey, data: grey.data.subarray(0, 100) }, FIT), code);
    await assert.rejects(imageToTensor({ ...grey, width: 100_000, height: 100_000 }, FIT), code);
    await assert.rejects(
      compressedToTensor({ format: 'jpeg', data: Uint8Array.from([0xff, 0xd8, 1, 2, 3]) }, FIT),
      code,
    );
    await assert.rejects(compressedToTensor({ format: 'jpeg', data: new Uint8Array(0) }, FIT), code);
  });
});
