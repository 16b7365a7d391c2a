/**
 * `work`, or a rejection with the signal's reason once it aborts, whichever comes first. For
 * stacks that do not always heed a signal (opening a libp2p stream to a peer just cut off, or
 * writing under tc's backpressure, never settled): the deadline holds whatever they do. The loser
 * ends in its own time, unread.
 */
export function settleBy<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  const aborted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  aborted.catch(() => undefined);
  work.catch(() => undefined);
  return Promise.race([work, aborted]);
}
