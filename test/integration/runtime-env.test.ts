import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { INFERENCE_MALLOC_TUNABLES, hasInferenceEnv, inferenceProcessEnv } from '../../nodes/inference/runtime-env.js';
import { ROBOT_MALLOC_TUNABLES, hasMallocTunables, robotProcessEnv } from '../../nodes/util/malloc-tunables.js';

describe('inference process environment', () => {
  it('adds the malloc tunables to GLIBC_TUNABLES and leaves the rest of the env alone', () => {
    const env = inferenceProcessEnv({ PATH: '/bin', FOO: 'bar' });
    assert.equal(env.PATH, '/bin');
    assert.equal(env.FOO, 'bar');
    const items = env.GLIBC_TUNABLES!.split(':');
    for (const [key, value] of Object.entries(INFERENCE_MALLOC_TUNABLES))
      assert.ok(items.includes(`${key}=${value}`), key);
    assert.ok(hasInferenceEnv(env));
    assert.ok(!hasInferenceEnv({ PATH: '/bin' }));
  });

  it('keeps tunables the caller already set, including its own values for ours', () => {
    const base = { GLIBC_TUNABLES: 'glibc.pthread.rseq=0:glibc.malloc.trim_threshold=1048576' };
    const env = inferenceProcessEnv(base);
    const items = env.GLIBC_TUNABLES!.split(':');
    assert.ok(items.includes('glibc.pthread.rseq=0'));
    assert.ok(items.includes('glibc.malloc.trim_threshold=1048576'));
    assert.equal(items.filter((i) => i.startsWith('glibc.malloc.trim_threshold=')).length, 1);
    assert.equal(base.GLIBC_TUNABLES, 'glibc.pthread.rseq=0:glibc.malloc.trim_threshold=1048576', 'input not modified');
    assert.deepEqual(inferenceProcessEnv(env), env, 'idempotent');
  });

  it('a child started with it runs and sees the tunables', () => {
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(process.env.GLIBC_TUNABLES ?? "")'], {
      env: inferenceProcessEnv(),
      encoding: 'utf8',
    });
    assert.equal(child.status, 0, child.stderr);
    assert.ok(hasInferenceEnv({ GLIBC_TUNABLES: child.stdout }));
  });
});

describe('robot process environment', () => {
  it('robot processes get their own, smaller malloc tunables the same way', () => {
    const env = robotProcessEnv({ PATH: '/bin', GLIBC_TUNABLES: 'glibc.pthread.rseq=0' });
    assert.equal(env.PATH, '/bin');
    const items = env.GLIBC_TUNABLES!.split(':');
    assert.ok(items.includes('glibc.pthread.rseq=0'));
    for (const [key, value] of Object.entries(ROBOT_MALLOC_TUNABLES)) {
      assert.ok(items.includes(`${key}=${value}`), key);
      assert.ok(value <= INFERENCE_MALLOC_TUNABLES[key], `${key} not above the inference value`);
    }
    assert.ok(hasMallocTunables(ROBOT_MALLOC_TUNABLES, env));
    assert.ok(!hasMallocTunables(ROBOT_MALLOC_TUNABLES, { GLIBC_TUNABLES: 'glibc.malloc.top_pad=1' }));
  });
});
