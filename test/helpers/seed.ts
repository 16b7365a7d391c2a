/** The seed for randomised tests: ROBOMESH_SEED to replay a failure, else a fresh one. */
export function testSeed(): number {
  const fromEnv = process.env.ROBOMESH_SEED;
  return fromEnv ? Number(fromEnv) : Math.floor(Math.random() * 2 ** 31);
}

/** Runs `body` and, if it throws, says which seed reproduces it. */
export async function withSeed<T>(seed: number, body: () => T | Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    const e = err as Error;
    e.message = `${e.message}\n    (reproduce with ROBOMESH_SEED=${seed})`;
    throw e;
  }
}
