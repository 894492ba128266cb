// pidfds: a handle on a process that cannot be confused with a later process
// reusing its pid, so killing a peer never hits a bystander.
import { libc, check, errno, SyscallError, E } from './libc.js';

const syscallFn = libc.func('long syscall(long n, long a, long b, long c, long d)') as (
  n: number, a: number, b: number, c: number, d: number) => number;

export const SYS_pidfd_send_signal = 424;
export const SYS_pidfd_open = 434;
export const SYS_pidfd_getfd = 438;
export const PIDFD_NONBLOCK = 0o4000;

export const SIGKILL = 9;
export const SIGTERM = 15;
export const SIGUSR2 = 12;

/** Opens a pidfd for pid (close-on-exec by default). */
export function pidfdOpen(pid: number): number {
  return check(syscallFn(SYS_pidfd_open, pid, PIDFD_NONBLOCK, 0, 0), 'pidfd_open', `pid ${pid}`);
}

/** Sends a signal through a pidfd; returns false if the process has already exited. */
export function pidfdSignal(pidfd: number, signal: number): boolean {
  if (syscallFn(SYS_pidfd_send_signal, pidfd, signal, 0, 0) === 0) return true;
  const e = errno();
  if (e === E.ESRCH) return false;
  throw new SyscallError('pidfd_send_signal', e);
}

/**
 * Duplicates descriptor `targetFd` of the process behind `pidfd` into this
 * one (close-on-exec), as pidfd_getfd(2) does: the way a handler takes a
 * running Firecracker's userfaultfd. Needs the right to ptrace that process
 * (PTRACE_MODE_ATTACH_REALCREDS): root, or the same uid where ptrace rules allow.
 */
export function pidfdGetfd(pidfd: number, targetFd: number): number {
  return check(syscallFn(SYS_pidfd_getfd, pidfd, targetFd, 0, 0), 'pidfd_getfd', `fd ${targetFd}`);
}
