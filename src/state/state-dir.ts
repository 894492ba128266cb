// The state directory (--state-dir): one VM record a served VM
// (vm-record.ts); `pending-<pid>`, a connection accepted whose handshake is
// not recorded yet; `lock`, flocked by the one snapfault that owns the
// directory; and `successor`, the pid of a snapfault started with --takeover
// while it waits for the owner to hand over (a standby leaves the directory to
// it). The kernel lets go of the flock however the owner ends, so a successor
// finds the directory free the moment its owner is gone.
import { mkdirSync, writeFileSync, readFileSync, renameSync, openSync, closeSync, readdirSync, unlinkSync, fstatSync, readSync, writeSync, ftruncateSync, constants as fsc } from 'node:fs';
import { join, resolve } from 'node:path';
import { tryLockExclusive } from '../../native/fd.js';
import { StateError } from '../errors.js';
import { processStartTime } from './firecracker-process.js';

/** The process holding a state directory: its pid and start time, so a reused pid is never taken for it. */
export interface StateOwner {
  pid: number;
  startTime: bigint;
}

export class StateDir {
  private constructor(readonly path: string, private lockFd: number) {}

  /**
   * Takes the directory (creating it, mode 0700): a StateDir, or the owner
   * that holds it now (null if that one cannot be named).
   */
  static take(dir: string): StateDir | { owner: StateOwner | null } {
    const path = resolve(dir);
    try {
      mkdirSync(path, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new StateError(`state directory ${path} cannot be created (${(e as NodeJS.ErrnoException).code}): check its parent exists and is writable`);
    }
    let fd: number;
    try {
      fd = openSync(join(path, 'lock'), fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
    } catch (e) {
      throw new StateError(`state directory ${path} cannot be used (${(e as NodeJS.ErrnoException).code} on its lock file): check its owner and mode`);
    }
    if (!fstatSync(fd).isFile() || !tryLockExclusive(fd)) {
      const owner = readOwner(fd);
      closeSync(fd);
      return { owner };
    }
    const me = Buffer.from(`${process.pid} ${processStartTime(process.pid) ?? 0}\n`);
    ftruncateSync(fd, 0);
    writeSync(fd, me, 0, me.length, 0);
    return new StateDir(path, fd);
  }

  /** Waits until the directory's owner lets go (a handover), polling every millisecond or so. */
  static async takeWhenFree(dir: string, timeoutMs: number): Promise<StateDir> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = StateDir.take(dir);
      if (got instanceof StateDir) return got;
      if (Date.now() > deadline) throw new StateError(`state directory ${resolve(dir)} was not handed over within ${timeoutMs / 1000} s: its owner${got.owner ? ` (pid ${got.owner.pid})` : ''} did not let go`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /**
   * Names this process as the successor a handover is for (--takeover), before
   * the owner is asked: a standby seeing the directory free then leaves it to
   * this process while it lives. Returns the function that withdraws it.
   */
  static announceSuccessor(dir: string): () => void {
    const path = join(resolve(dir), 'successor');
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${process.pid} ${processStartTime(process.pid) ?? 0}\n`, { mode: 0o600 });
    renameSync(tmp, path);
    return () => {
      if (readOwnerFile(path)?.pid === process.pid) unlinkSync(path);
    };
  }

  /** The snapfault a handover is for, if one is announced and still running. */
  static liveSuccessor(dir: string): StateOwner | null {
    const s = readOwnerFile(join(resolve(dir), 'successor'));
    return s && s.pid !== process.pid && processStartTime(s.pid) === s.startTime ? s : null;
  }

  /** The VM records present, oldest handler's leftovers included; half-written ones (never renamed into place) are removed. */
  records(): string[] {
    const out: string[] = [];
    for (const name of readdirSync(this.path)) {
      if (/^\.vm-\d+\.state\.tmp$/.test(name)) unlinkSync(join(this.path, name));
      else if (/^vm-\d+\.state$/.test(name)) out.push(join(this.path, name));
    }
    return out;
  }

  /**
   * Notes a connection accepted from `pid` before its handshake is read: if
   * this handler dies before the VM is recorded, the handshake dies with it,
   * and a successor finds the Firecracker by this mark (takeover).
   */
  markPending(pid: number, startTime: bigint): string {
    const path = join(this.path, `pending-${pid}`);
    writeFileSync(path, `${startTime}\n`, { mode: 0o600 });
    return path;
  }

  /** The connections a handler that is gone had accepted without recording them: pid and start time. */
  pending(): Array<{ path: string; pid: number; startTime: bigint | null }> {
    const out = [];
    for (const name of readdirSync(this.path)) {
      const m = /^pending-(\d+)$/.exec(name);
      if (!m) continue;
      const path = join(this.path, name);
      let text = '';
      try {
        text = readFileSync(path, 'latin1');
      } catch {
        /* removed meanwhile */
      }
      out.push({ path, pid: Number(m[1]), startTime: /^\d+\n$/.test(text) ? BigInt(text.trim()) : null });
    }
    return out;
  }

  /** Lets go of the directory: the next snapfault may take it (and the VMs recorded in it). */
  release(): void {
    if (this.lockFd < 0) return;
    closeSync(this.lockFd);
    this.lockFd = -1;
  }
}

/** "pid starttime\n", as the lock file and the successor file hold it. */
function parseOwner(text: string): StateOwner | null {
  const m = /^(\d+) (\d+)\n/.exec(text);
  return m ? { pid: Number(m[1]), startTime: BigInt(m[2]) } : null;
}

function readOwnerFile(path: string): StateOwner | null {
  try {
    return parseOwner(readFileSync(path, 'latin1'));
  } catch {
    return null;
  }
}

function readOwner(fd: number): StateOwner | null {
  const b = Buffer.alloc(64);
  try {
    return parseOwner(b.toString('latin1', 0, readSync(fd, b, 0, b.length, 0)));
  } catch {
    return null;
  }
}
