// The handler's unix socket: created safely (no stale file, no other
// listener, restricted mode), watched for connections, removed at the end.
// Whether the path is in use is decided without connecting to it, since a
// drop-in handler takes a connection for its Firecracker: a handler holds an
// flock on `<socket>.lock` while it listens, and a socket another program
// listens on shows in the kernel's table of unix sockets (/proc/net/unix).
import { lstatSync, statSync, unlinkSync, chmodSync, openSync, closeSync, fstatSync, readSync, writeSync, ftruncateSync, readFileSync, realpathSync, constants as fsc } from 'node:fs';
import { dirname, basename, join, resolve } from 'node:path';
import { listenUnix, acceptConnection, SOCKET_LAYOUT } from '../native/socket.js';
import { closeFd, watchReadable, tryLockExclusive, type FdWatch } from '../native/fd.js';
import { SyscallError } from '../native/libc.js';
import { SocketError } from './errors.js';

const MAX_PATH = SOCKET_LAYOUT.sockaddr_un.path_max - 1;

export class SocketListener {
  private watch: FdWatch | null = null;
  private closed = false;

  private constructor(readonly path: string, readonly fd: number, private readonly ino: number, private readonly lock: SocketLock) {}

  static create(path: string, mode: number): SocketListener {
    const len = Buffer.byteLength(path);
    if (len > MAX_PATH) throw new SocketError(`socket path ${path} is ${len} bytes, the limit is ${MAX_PATH}: use a shorter path`);
    const lock = SocketLock.take(path);
    try {
      clearStale(path);
      let fd: number;
      try {
        fd = listenUnix(path, mode);
      } catch (e) {
        const why = e instanceof SyscallError ? e.code : (e as Error).message;
        throw new SocketError(`socket ${path} cannot be created (${why}): check that its directory exists and is writable`);
      }
      chmodSync(path, mode); // bind applied the umask; make the mode exactly what was asked
      return new SocketListener(path, fd, lstatSync(path).ino, lock);
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  /**
   * Listens again on a socket this path is bound to, through `fd` (a
   * descriptor of it a previous handler left with its keeper,
   * src/state/socket-keeper.ts): the connections queued on it are kept.
   */
  static adopt(path: string, fd: number): SocketListener {
    const lock = SocketLock.take(path);
    try {
      return new SocketListener(path, fd, lstatSync(path).ino, lock);
    } catch (e) {
      lock.release();
      throw new SocketError(`socket ${path} cannot be taken over (${(e as Error).message}): remove it and start again`);
    }
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

  /** Stops listening but leaves the socket bound, for a successor that holds it too (a handover). */
  detach(): void {
    if (this.closed) return;
    this.closed = true;
    this.watch?.close();
    closeFd(this.fd);
    this.lock.release();
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
    this.lock.release(); // last: a successor may take the path only once the socket is gone
  }
}

/** `<socket>.lock`, flocked while a handler listens on the socket; it holds that handler's pid, for messages. */
class SocketLock {
  private constructor(readonly path: string, private fd: number) {}

  static take(socketPath: string): SocketLock {
    const path = `${socketPath}.lock`;
    const notOurs = new SocketError(`${path} exists and is not a snapfault lock file: remove it or choose another socket path`);
    for (let attempt = 0; ; attempt++) {
      let fd: number;
      try {
        fd = openSync(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ELOOP' || code === 'EISDIR') throw notOurs;
        if (code === 'EACCES') throw new SocketError(`the lock file ${path} cannot be opened (permission denied): another user's handler may use this socket; choose another path`);
        throw new SocketError(`socket ${socketPath} cannot be created (${code}): check that its directory exists and is writable`);
      }
      try {
        if (!fstatSync(fd).isFile()) throw notOurs;
        if (!tryLockExclusive(fd)) {
          const pid = readSmall(fd).trim();
          throw new SocketError(`socket ${socketPath} is in use by another handler${/^\d+$/.test(pid) ? ` (pid ${pid})` : ''}: stop it or choose another path`);
        }
        // A handler letting go removes the file while it holds the lock: if that happened between
        // our open and our lock, we hold a lock nobody else will look at. Take the one at the path.
        if (!sameFile(path, fd)) {
          if (attempt >= 100) throw new SocketError(`socket ${socketPath} is being taken and released by other handlers: try again`);
          closeSync(fd);
          continue;
        }
        // Never overwrite a file of the user's that happens to have this name.
        if (!/^(\d+\n?)?$/.test(readSmall(fd))) throw notOurs;
        const pid = Buffer.from(`${process.pid}\n`);
        ftruncateSync(fd, 0);
        writeSync(fd, pid, 0, pid.length, 0);
        return new SocketLock(path, fd);
      } catch (e) {
        closeSync(fd);
        throw e instanceof SocketError ? e : new SocketError(`the lock file ${path} cannot be used (${(e as Error).message}): choose another socket path`);
      }
    }
  }

  release(): void {
    if (this.fd < 0) return;
    try {
      if (sameFile(this.path, this.fd)) unlinkSync(this.path);
    } catch {
      /* gone */
    }
    closeSync(this.fd);
    this.fd = -1;
  }
}

function sameFile(path: string, fd: number): boolean {
  try {
    const a = statSync(path);
    const b = fstatSync(fd);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

/** The first bytes of a small file, as text. */
function readSmall(fd: number): string {
  const b = Buffer.alloc(64);
  return b.toString('latin1', 0, readSync(fd, b, 0, b.length, 0));
}

/** Called with the path's lock held: no snapfault handler listens there. */
function clearStale(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new SocketError(`${path} exists and is not a socket: remove it or choose another --socket path`);
  if (listenedOn(path)) throw new SocketError(`socket ${path} is in use: another program listens on it: stop it or choose another path`);
  unlinkSync(path); // nobody listens: a stale socket from a handler that died
}

const SO_ACCEPTCON = 0x10000; // the Flags column of /proc/net/unix: a listening socket

/**
 * Whether the kernel lists a listening socket bound to `path`. The table has
 * the path as given to bind(2), so the path is tried as given, absolute, and
 * through its folder's real path; a socket bound through another relative
 * path is not recognised (the lock file still covers snapfault's own).
 */
function listenedOn(path: string): boolean {
  let table: string;
  try {
    table = readFileSync('/proc/net/unix', 'latin1');
  } catch {
    return false;
  }
  const names = new Set([path, resolve(path)]);
  try {
    names.add(join(realpathSync(dirname(resolve(path))), basename(path)));
  } catch {
    /* the folder is checked when the socket is created */
  }
  for (const line of table.split('\n')) {
    // Num: RefCount Protocol Flags Type St Inode Path
    const m = /^\s*\S+:\s+\S+\s+\S+\s+([0-9A-Fa-f]+)\s+\S+\s+\S+\s+\d+\s(.+)$/.exec(line);
    if (m && (Number.parseInt(m[1], 16) & SO_ACCEPTCON) !== 0 && names.has(m[2])) return true;
  }
  return false;
}
