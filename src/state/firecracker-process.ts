// A recorded Firecracker, found again through /proc: is it still the same
// process, and which of its descriptors is the userfaultfd it sent us.
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';

/**
 * The process's start time in clock ticks after boot (field 22 of
 * /proc/PID/stat), or null when there is no such process. A pid reused by
 * another process has another start time.
 */
export function processStartTime(pid: number): bigint | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // Field 2, the command, is in parentheses and may hold spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = fields[22 - 3];
  return start !== undefined && /^\d+$/.test(start) ? BigInt(start) : null;
}

export const USERFAULTFD_LINK = 'anon_inode:[userfaultfd]';

/**
 * The number, in process `pid`, of the userfaultfd with this device and
 * inode (each userfaultfd has an inode of its own), or null when it holds no
 * such descriptor. Reading another process's descriptors needs the right to
 * ptrace it; a process we may not look at holds none we can use either.
 */
export function findUserfaultfd(pid: number, dev: number, ino: bigint): number | null {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return null;
  }
  for (const name of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${name}`) !== USERFAULTFD_LINK) continue;
      const st = statSync(`/proc/${pid}/fd/${name}`, { bigint: true });
      if (Number(st.dev) === dev && st.ino === ino) return Number(name);
    } catch {
      /* closed meanwhile */
    }
  }
  return null;
}

/** True when process `pid` holds any userfaultfd (a Firecracker past creating its guest memory). */
export function holdsUserfaultfd(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((name) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${name}`) === USERFAULTFD_LINK;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}
