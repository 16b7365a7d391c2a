/** Polls `condition` until true; fails after `timeoutMs` with `what`. Bounded in time and count. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
  everyMs = 25,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (let i = 0; Date.now() < end && i < timeoutMs / everyMs + 10; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
