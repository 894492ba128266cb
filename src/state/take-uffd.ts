// Takes a recorded VM's userfaultfd out of its running Firecracker
// (pidfd_getfd), after making sure it is the same Firecracker: the pid and
// its start time both match the record, checked again once a pidfd pins the
// process, so a pid reused by another process is never touched.
import { fstatSync } from 'node:fs';
import { pidfdOpen, pidfdGetfd } from '../../native/pidfd.js';
import { closeFd } from '../../native/fd.js';
import { SyscallError } from '../../native/libc.js';
import { processStartTime, findUserfaultfd } from './firecracker-process.js';
import type { VmIdentity } from './vm-record.js';

export type Taken =
  | { kind: 'taken'; pidfd: number; uffd: number }
  /** Firecracker has exited, or its pid now belongs to another process: the record is stale. */
  | { kind: 'gone'; why: string }
  /** Firecracker runs but its userfaultfd cannot be taken (no right to ptrace it, say): the record is kept. */
  | { kind: 'refused'; why: string };

export function takeUffd(id: VmIdentity): Taken {
  const pid = id.pid;
  const before = processStartTime(pid);
  if (before === null) return { kind: 'gone', why: `Firecracker pid ${pid} has exited` };
  if (before !== id.startTime) return { kind: 'gone', why: `pid ${pid} now belongs to another process (started at tick ${before}, not ${id.startTime}): left alone` };
  let pidfd: number;
  try {
    pidfd = pidfdOpen(pid);
  } catch {
    return { kind: 'gone', why: `Firecracker pid ${pid} has exited` };
  }
  try {
    // The pidfd names whichever process had the pid when it was opened: check that it is still ours.
    if (processStartTime(pid) !== id.startTime) {
      closeFd(pidfd);
      return { kind: 'gone', why: `Firecracker pid ${pid} exited and its pid was reused: left alone` };
    }
    const target = findUserfaultfd(pid, id.uffdDev, id.uffdIno);
    if (target === null) {
      closeFd(pidfd);
      return { kind: 'refused', why: `no userfaultfd of Firecracker pid ${pid} matches the recorded one (or its descriptors cannot be read: taking them needs the right to ptrace it)` };
    }
    const uffd = pidfdGetfd(pidfd, target);
    const st = fstatSync(uffd, { bigint: true });
    if (Number(st.dev) !== id.uffdDev || st.ino !== id.uffdIno) {
      // Firecracker closed that descriptor and reused its number meanwhile.
      closeFd(uffd);
      closeFd(pidfd);
      return { kind: 'refused', why: `Firecracker pid ${pid}'s userfaultfd changed while it was being taken` };
    }
    return { kind: 'taken', pidfd, uffd };
  } catch (e) {
    closeFd(pidfd);
    const why = e instanceof SyscallError && e.code === 'EPERM'
      ? 'pidfd_getfd was refused (EPERM): taking a Firecracker\'s userfaultfd needs the right to ptrace it (run snapfault as root, or as its uid where ptrace rules allow)'
      : (e as Error).message;
    return { kind: 'refused', why: `Firecracker pid ${pid}: ${why}` };
  }
}
