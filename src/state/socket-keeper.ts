// The listening socket's keeper (--state-dir): a `sleep` process holding a
// copy of the handler's listening socket, so that the socket, and the
// Firecracker connections queued on it, outlive a handler that dies. A
// connection queued on a socket whose last holder dies is reset, its
// handshake lost with it (Firecracker sends it once), and its guest frozen
// for good; with a keeper the next handler takes the same socket back
// (pidfd_getfd) and accepts them. A Firecracker that connects while no
// handler runs waits in the queue instead of failing its load. The keeper
// also holds both ends of the connection vault (connection-vault.ts), so
// that connections accepted but not yet recorded outlive the handler too.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, rmSync, fstatSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pidfdOpen, pidfdGetfd, pidfdSignal, SIGKILL } from '../../native/pidfd.js';
import { closeFd } from '../../native/fd.js';
import { processStartTime } from './firecracker-process.js';
import { ConnectionVault } from './connection-vault.js';

/** The keeper's descriptors: the socket, then the vault's two ends. */
const KEEPER_FD = 3;
const VAULT_SEND_FD = 4;
const VAULT_QUEUE_FD = 5;
const RECORD = 'keeper';

export class SocketKeeper {
  private constructor(private readonly dir: string, private pidfd: number) {}

  /** Starts a keeper of listening socket `fd` and of `vault`, and records it in the state directory. */
  static start(dir: string, fd: number, vault: ConnectionVault): SocketKeeper {
    const child = spawn('sleep', ['infinity'], { stdio: ['ignore', 'ignore', 'ignore', fd, vault.sendFd, vault.queueFd], detached: true });
    child.on('error', () => undefined); // no `sleep`: the record below is then never found alive
    child.unref();
    const pid = child.pid ?? 0;
    const start = pid ? processStartTime(pid) : null;
    if (!pid || start === null) throw new Error('the socket keeper (sleep) could not be started');
    const pidfd = pidfdOpen(pid);
    writeFileSync(join(dir, RECORD), `${pid} ${start}\n`, { mode: 0o600 });
    return new SocketKeeper(dir, pidfd);
  }

  /**
   * The keeper a handler that is gone left, a descriptor of its socket and
   * its vault (null from a keeper without one), when it is still running and
   * keeps a listening socket bound to `socketPath`; else null (a keeper of
   * anything else is stopped).
   */
  static adopt(dir: string, socketPath: string): { keeper: SocketKeeper; fd: number; vault: ConnectionVault | null } | null {
    let text = '';
    try {
      text = readFileSync(join(dir, RECORD), 'latin1');
    } catch {
      return null;
    }
    const m = /^(\d+) (\d+)\n$/.exec(text);
    if (!m || processStartTime(Number(m[1])) !== BigInt(m[2])) {
      rmSync(join(dir, RECORD), { force: true });
      return null;
    }
    let pidfd = -1;
    try {
      pidfd = pidfdOpen(Number(m[1]));
      if (processStartTime(Number(m[1])) !== BigInt(m[2])) throw new Error('pid reused');
    } catch {
      closeFd(pidfd);
      rmSync(join(dir, RECORD), { force: true });
      return null;
    }
    const keeper = new SocketKeeper(dir, pidfd);
    let fd = -1;
    try {
      fd = pidfdGetfd(pidfd, KEEPER_FD);
      if (listeningPath(fd) === resolve(socketPath)) return { keeper, fd, vault: adoptVault(pidfd) };
    } catch {
      /* not what we left there */
    }
    closeFd(fd);
    keeper.stop();
    return null;
  }

  /** Ends the keeper: the socket is closed for good (its queued connections reset). */
  stop(): void {
    if (this.pidfd < 0) return;
    try {
      pidfdSignal(this.pidfd, SIGKILL);
    } catch {
      /* gone */
    }
    closeFd(this.pidfd);
    this.pidfd = -1;
    rmSync(join(this.dir, RECORD), { force: true });
  }

  /** Leaves the keeper running for a successor (a handover). */
  leave(): void {
    closeFd(this.pidfd);
    this.pidfd = -1;
  }
}

/** The vault the keeper holds, or null from a keeper without one (an older snapfault's). */
function adoptVault(pidfd: number): ConnectionVault | null {
  let send = -1;
  let queue = -1;
  try {
    // The keeper is ours (pid, start time and socket checked): its fds 4 and 5 are the vault if they are sockets.
    send = pidfdGetfd(pidfd, VAULT_SEND_FD);
    queue = pidfdGetfd(pidfd, VAULT_QUEUE_FD);
    if (fstatSync(send).isSocket() && fstatSync(queue).isSocket()) return ConnectionVault.adopt(send, queue);
  } catch {
    /* a keeper without a vault */
  }
  closeFd(send);
  closeFd(queue);
  return null;
}

const SO_ACCEPTCON = 0x10000;

/** The path a listening unix socket is bound to, from the kernel's table (its inode is the socket's), or null. */
function listeningPath(fd: number): string | null {
  const ino = fstatSync(fd).ino;
  for (const line of readFileSync('/proc/net/unix', 'latin1').split('\n')) {
    // Num: RefCount Protocol Flags Type St Inode Path
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && Number(f[6]) === ino && (Number.parseInt(f[3], 16) & SO_ACCEPTCON) !== 0) return resolve(f.slice(7).join(' '));
  }
  return null;
}
