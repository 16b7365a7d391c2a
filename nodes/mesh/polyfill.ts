/**
 * Node 20 lacks Promise.withResolvers, which libp2p, yamux, noise, gossipsub, it-queue and
 * mortice call: without it every node crashes at start-up. Imported first by the mesh host.
 */
interface WithResolvers {
  withResolvers?<T>(): { promise: Promise<T>; resolve: (v: T | PromiseLike<T>) => void; reject: (e?: unknown) => void };
}
const P = Promise as unknown as WithResolvers;
if (typeof P.withResolvers !== 'function') {
  P.withResolvers = <T>() => {
    let resolve!: (v: T | PromiseLike<T>) => void;
    let reject!: (e?: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
export {};
