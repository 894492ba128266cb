// Reads Firecracker's one handshake message from an accepted connection:
// the JSON text (possibly in several pieces) and the uffd as SCM_RIGHTS.
import { MessageReceiver } from '../../native/socket.js';
import { watchReadable, closeFd, fileStatusFlags, O_NONBLOCK } from '../../native/fd.js';
import { isUserfaultfd } from '../../native/uffd.js';
import { jsonLooksComplete } from './json64.js';
import { HandshakeError } from '../errors.js';

export interface Handshake {
  text: string;
  uffd: number;
  /** The message is still queued on the connection (`keep`): discardHandshake() once it is no longer needed. */
  kept: boolean;
}

/** Large enough for any real mapping message; Firecracker's own example reads only 1 KiB. */
export const MAX_HANDSHAKE_BYTES = 1 << 20;
const receiver = new MessageReceiver(64 * 1024);

/**
 * `keep`: read the message with MSG_PEEK, leaving it queued, so that a
 * successor can read it again if this handler dies before the VM is recorded
 * (src/state/connection-vault.ts). A message that does not come whole in one
 * read (never Firecracker's) is read the ordinary way.
 */
export function receiveHandshake(conn: number, timeoutMs: number, keep = false): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    let chunks: Buffer[] = [];
    let total = 0;
    const fds: number[] = [];
    let peeking = keep;
    let settled = false;
    const finish = (err: HandshakeError | null, value?: Handshake): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      watch.close();
      if (err) {
        for (const fd of fds) closeFd(fd);
        reject(err);
      } else resolve(value as Handshake);
    };
    const timer = setTimeout(() => finish(new HandshakeError('timeout',
      `no mapping message within ${timeoutMs} ms (is the peer Firecracker loading a snapshot with a Uffd backend?)`, total === 0)), timeoutMs);
    const onReadable = (): void => {
      try {
        for (;;) {
          const m = receiver.receive(conn, peeking);
          if (m === null) return;
          fds.push(...m.fds);
          if (m.truncatedControl) return finish(new HandshakeError('bad_fd', 'the mapping message carried more file descriptors than a userfaultfd'));
          if (m.bytes.length === 0) {
            return finish(new HandshakeError('closed', total === 0 ? 'the peer closed the connection without sending the mapping message' : 'the peer closed the connection in the middle of the mapping message', total === 0));
          }
          chunks.push(m.bytes);
          total += m.bytes.length;
          if (total > MAX_HANDSHAKE_BYTES) return finish(new HandshakeError('too_large', `the mapping message exceeds ${MAX_HANDSHAKE_BYTES} bytes`));
          const text = Buffer.concat(chunks).toString('utf8');
          if (!jsonLooksComplete(text)) {
            if (peeking) {
              // Not whole in one read: start again, reading (consuming) it piece by piece.
              for (const fd of fds.splice(0)) closeFd(fd);
              chunks = [];
              total = 0;
              peeking = false;
            }
            continue;
          }
          if (fds.length === 0) return finish(new HandshakeError('no_fd', 'the mapping message came without a userfaultfd (SCM_RIGHTS)'));
          if (fds.length > 1) return finish(new HandshakeError('bad_fd', `the mapping message carried ${fds.length} file descriptors, expected one userfaultfd`));
          const uffd = fds[0];
          if (!isUserfaultfd(uffd)) return finish(new HandshakeError('bad_fd', 'the file descriptor sent with the mapping message is not a userfaultfd'));
          if ((fileStatusFlags(uffd) & O_NONBLOCK) === 0) {
            return finish(new HandshakeError('bad_fd', 'the userfaultfd is blocking; Firecracker creates it with O_NONBLOCK'));
          }
          fds.length = 0;
          return finish(null, { text, uffd, kept: peeking });
        }
      } catch (e) {
        finish(new HandshakeError('peer', (e as Error).message));
      }
    };
    const watch = watchReadable(conn, onReadable);
  });
}

/** Reads and drops what is queued on a connection (a handshake kept by receiveHandshake), closing the fds it carried. */
export function discardHandshake(conn: number): void {
  try {
    for (let i = 0; i < 64; i++) {
      const m = receiver.receive(conn);
      if (m === null || m.bytes.length === 0) return;
      for (const fd of m.fds) closeFd(fd);
    }
  } catch {
    /* the peer is gone: nothing left to drop */
  }
}
