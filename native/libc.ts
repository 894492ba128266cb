// The one place that loads libc. Every other file in native/ declares the
// functions of its own concern against this handle.
import koffi from 'koffi';
import { constants } from 'node:os';

export const libc = koffi.load('libc.so.6');

/** errno of the calling thread, as left by the last koffi call. */
export function errno(): number {
  return koffi.errno();
}

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, value]) => [value, name]),
);

const strerrorFn = libc.func('const char *strerror(int errnum)') as (e: number) => string;

/** A failed libc call: names the call, the errno and what it means. */
export class SyscallError extends Error {
  readonly call: string;
  readonly errno: number;
  readonly code: string;

  constructor(call: string, err: number, context = '') {
    const code = errnoNames.get(err) ?? `errno ${err}`;
    super(`${call}${context ? ` (${context})` : ''} failed: ${code}: ${strerrorFn(err)}`);
    this.name = 'SyscallError';
    this.call = call;
    this.errno = err;
    this.code = code;
  }
}

/** Throws a SyscallError when rc < 0, else returns rc. */
export function check(rc: number, call: string, context = ''): number {
  if (rc < 0) throw new SyscallError(call, errno(), context);
  return rc;
}

export const E = {
  EPERM: constants.errno.EPERM,
  ENOENT: constants.errno.ENOENT,
  ESRCH: constants.errno.ESRCH,
  EINTR: constants.errno.EINTR,
  EBADF: constants.errno.EBADF,
  EAGAIN: constants.errno.EAGAIN,
  ENOMEM: constants.errno.ENOMEM,
  EFAULT: constants.errno.EFAULT,
  EEXIST: constants.errno.EEXIST,
  EINVAL: constants.errno.EINVAL,
  ENOSPC: constants.errno.ENOSPC,
  ENXIO: constants.errno.ENXIO,
} as const;

/** The raw address of any byte view (koffi gives BigInt; user addresses fit in 2^53). */
export function addressOf(view: ArrayBufferView): number {
  return Number(koffi.address(view));
}
