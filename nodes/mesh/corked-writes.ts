import { Socket } from 'node:net';
import type { MessageStream } from '@libp2p/interface';

type SendData = (data: Parameters<Send>[0]) => ReturnType<Send>;
type Send = (data: { byteLength: number; [Symbol.iterator](): Iterator<Uint8Array> }) => {
  sentBytes: number;
  canSendMore: boolean;
};

/**
 * Makes a TCP connection write what it is handed in one tick with one system call.
 *
 * @libp2p/tcp writes every buffer of a message separately, and noise hands it two per frame (its
 * length and its ciphertext); a robot sending gossip, sync and pings to six peers made tens of
 * thousands of writes a second per 25-robot process (the socket write was 10 % of its CPU,
 * measured). Node's remedy is cork() now and uncork() on the next tick, which turns the tick's
 * writes into one writev. The transport offers no hook for it, so this wraps the connection's
 * own sendData (the method its send queue calls); anything that is not a TCP connection of
 * this shape is left as it is. Backpressure is unchanged: write() still says when the socket's
 * buffer is full, and the socket still emits 'drain'.
 */
export function corkWrites(connection: MessageStream): boolean {
  const target = connection as unknown as { socket?: unknown; sendData?: unknown };
  const socket = target.socket;
  const sendData = target.sendData;
  if (!(socket instanceof Socket) || typeof sendData !== 'function') return false;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  const send = sendData as SendData;
  target.sendData = ((data) => {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    return send.call(connection, data);
  }) satisfies SendData;
  return true;
}
