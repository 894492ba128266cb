// The handler's unix socket: created safely (no stale file, no other
// listener, restricted mode), watched for connections, removed at the end.
import { lstatSync, unlinkSync, chmodSync } from 'node:fs';
import { listenUnix, connectUnix, acceptConnection, SOCKET_LAYOUT } from '../native/socket.js';
import { closeFd, watchReadable, type FdWatch } from '../native/fd.js';
import { SyscallError } from '../native/libc.js';
import { SocketError } from './errors.js';

const MAX_PATH = SOCKET_LAYOUT.sockaddr_un.path_max - 1;

export class SocketListener {
  private watch: FdWatch | null = null;
  private closed = false;

  private constructor(readonly path: string, readonly fd: number, private readonly ino: number) {}

  static create(path: string, mode: number): SocketListener {
    const len = Buffer.byteLength(path);
    if (len > MAX_PATH) throw new SocketError(`socket path ${path} is ${len} bytes, the limit is ${MAX_PATH}: use a shorter path`);
    clearStale(path);
    let fd: number;
    try {
      fd = listenUnix(path, mode);
    } catch (e) {
      const why = e instanceof SyscallError ? e.code : (e as Error).message;
      throw new SocketError(`socket ${path} cannot be created (${why}): check that its directory exists and is writable`);
    }
    chmodSync(path, mode); // bind applied the umask; make the mode exactly what was asked
    return new SocketListener(path, fd, lstatSync(path).ino);
  }

  /** Calls onConnection with each accepted, non-blocking, close-on-exec fd. */
  start(onConnection: (fd: number) => void): void {
    this.watch = watchReadable(this.fd, () => {
      for (;;) {
        if (this.closed) return;
        const conn = acceptConnection(this.fd);
        if (conn < 0) return;
        onConnection(conn);
      }
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watch?.close();
    closeFd(this.fd);
    try {
      // Remove the socket only if it is still ours, not one a successor created.
      if (lstatSync(this.path).ino === this.ino) unlinkSync(this.path);
    } catch {
      /* already gone */
    }
  }
}

function clearStale(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new SocketError(`${path} exists and is not a socket: remove it or choose another --socket path`);
  try {
    const fd = connectUnix(path);
    closeFd(fd);
  } catch {
    unlinkSync(path); // nobody listens: a stale socket from a handler that died
    return;
  }
  throw new SocketError(`socket ${path} is in use by another handler: stop it or choose another path`);
}
