// Unix stream sockets: listen, accept, receive a message with SCM_RIGHTS fds,
// read the peer's credentials. Node's net module cannot receive fds.
import { libc, check, errno, addressOf, SyscallError, E } from './libc.js';
import { closeFd } from './fd.js';

const socketFn = libc.func('int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number;
const bindFn = libc.func('int bind(int fd, uintptr_t addr, unsigned int len)') as (fd: number, a: number, l: number) => number;
const listenFn = libc.func('int listen(int fd, int backlog)') as (fd: number, b: number) => number;
const connectFn = libc.func('int connect(int fd, uintptr_t addr, unsigned int len)') as (fd: number, a: number, l: number) => number;
const accept4Fn = libc.func('int accept4(int fd, uintptr_t addr, uintptr_t len, int flags)') as (
  fd: number, a: number, l: number, f: number) => number;
const recvmsgFn = libc.func('long recvmsg(int fd, uintptr_t msg, int flags)') as (fd: number, m: number, f: number) => number;
const sendmsgFn = libc.func('long sendmsg(int fd, uintptr_t msg, int flags)') as (fd: number, m: number, f: number) => number;
const getsockoptFn = libc.func('int getsockopt(int fd, int level, int name, uintptr_t val, uintptr_t len)') as (
  fd: number, level: number, name: number, v: number, l: number) => number;
const fchmodFn = libc.func('int fchmod(int fd, unsigned int mode)') as (fd: number, mode: number) => number;
const socketpairFn = libc.func('int socketpair(int domain, int type, int protocol, uintptr_t sv)') as (
  d: number, t: number, p: number, sv: number) => number;

export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SCM_RIGHTS = 1;
export const SO_PEERCRED = 17;
export const MSG_PEEK = 0x2;
export const MSG_DONTWAIT = 0x40;
export const MSG_CTRUNC = 0x8;
export const MSG_CMSG_CLOEXEC = 0x40000000;

/** Struct layouts (x86_64), checked against the system headers by test/native-abi. */
export const SOCKET_LAYOUT = {
  sockaddr_un: { size: 110, sun_family: 0, sun_path: 2, path_max: 108 },
  msghdr: { size: 56, msg_name: 0, msg_namelen: 8, msg_iov: 16, msg_iovlen: 24, msg_control: 32, msg_controllen: 40, msg_flags: 48 },
  iovec: { size: 16, iov_base: 0, iov_len: 8 },
  cmsghdr: { size: 16, cmsg_len: 0, cmsg_level: 8, cmsg_type: 12, data: 16 },
  ucred: { size: 12, pid: 0, uid: 4, gid: 8 },
} as const;

function sockaddrUn(path: string): Buffer {
  const bytes = Buffer.from(path);
  if (bytes.length >= SOCKET_LAYOUT.sockaddr_un.path_max) {
    throw new SyscallError('bind', E.EINVAL, `socket path is ${bytes.length} bytes, the limit is 107: use a shorter path`);
  }
  const sa = Buffer.alloc(SOCKET_LAYOUT.sockaddr_un.size);
  sa.writeUInt16LE(AF_UNIX, 0);
  bytes.copy(sa, SOCKET_LAYOUT.sockaddr_un.sun_path);
  return sa;
}

/** A non-blocking, close-on-exec listening unix stream socket at `path`, created with `mode`. */
export function listenUnix(path: string, mode: number, backlog = 128): number {
  const sa = sockaddrUn(path);
  const fd = check(socketFn(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 'socket');
  try {
    // fchmod before bind sets the mode of the socket inode bind creates, so
    // there is no window in which another user could connect.
    check(fchmodFn(fd, mode), 'fchmod', path);
    check(bindFn(fd, addressOf(sa), sa.length), 'bind', path);
    check(listenFn(fd, backlog), 'listen', path);
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return fd;
}

/** A connected pair of non-blocking, close-on-exec unix stream sockets. */
export function socketPair(): [number, number] {
  const sv = Buffer.alloc(8);
  check(socketpairFn(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, addressOf(sv)), 'socketpair');
  return [sv.readInt32LE(0), sv.readInt32LE(4)];
}

/** Blocking client connect (tests and tools). */
export function connectUnix(path: string): number {
  const sa = sockaddrUn(path);
  const fd = check(socketFn(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), 'socket');
  if (connectFn(fd, addressOf(sa), sa.length) < 0) {
    const e = errno();
    closeFd(fd);
    throw new SyscallError('connect', e, path);
  }
  return fd;
}

/** accept4 a non-blocking connection; returns -1 when none is pending. */
export function acceptConnection(listenFd: number): number {
  const fd = accept4Fn(listenFd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) return fd;
  const e = errno();
  if (e === E.EAGAIN || e === E.EINTR) return -1;
  throw new SyscallError('accept4', e);
}

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export function peerCredentials(fd: number): PeerCredentials {
  const cred = Buffer.alloc(SOCKET_LAYOUT.ucred.size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(cred.length);
  check(getsockoptFn(fd, SOL_SOCKET, SO_PEERCRED, addressOf(cred), addressOf(len)), 'getsockopt(SO_PEERCRED)');
  return { pid: cred.readInt32LE(0), uid: cred.readUInt32LE(4), gid: cred.readUInt32LE(8) };
}

export interface ReceivedMessage {
  /** Bytes received: 0 means the peer closed the connection. */
  bytes: Buffer;
  /** File descriptors that came with it (SCM_RIGHTS), already close-on-exec. */
  fds: number[];
  /** The kernel dropped fds that did not fit (MSG_CTRUNC); they are gone. */
  truncatedControl: boolean;
}

const MAX_FDS = 16;

/** A reusable receiver for one message with fds: msghdr, iovec and control buffer pre-built. */
export class MessageReceiver {
  private readonly data: Buffer;
  private readonly control = Buffer.alloc(SOCKET_LAYOUT.cmsghdr.data + 4 * MAX_FDS);
  private readonly iov = Buffer.alloc(SOCKET_LAYOUT.iovec.size);
  private readonly msg = Buffer.alloc(SOCKET_LAYOUT.msghdr.size);

  constructor(capacity: number) {
    this.data = Buffer.alloc(capacity);
    this.iov.writeBigUInt64LE(BigInt(addressOf(this.data)), SOCKET_LAYOUT.iovec.iov_base);
    this.iov.writeBigUInt64LE(BigInt(capacity), SOCKET_LAYOUT.iovec.iov_len);
  }

  /**
   * recvmsg without blocking; returns null when nothing is ready. `peek`
   * leaves the message queued (MSG_PEEK): its fds still come, as new
   * descriptors, and the next receive returns the same bytes again.
   */
  receive(fd: number, peek = false): ReceivedMessage | null {
    const L = SOCKET_LAYOUT.msghdr;
    this.msg.fill(0);
    this.msg.writeBigUInt64LE(BigInt(addressOf(this.iov)), L.msg_iov);
    this.msg.writeBigUInt64LE(1n, L.msg_iovlen);
    this.msg.writeBigUInt64LE(BigInt(addressOf(this.control)), L.msg_control);
    this.msg.writeBigUInt64LE(BigInt(this.control.length), L.msg_controllen);
    this.control.fill(0);
    const n = recvmsgFn(fd, addressOf(this.msg), MSG_DONTWAIT | MSG_CMSG_CLOEXEC | (peek ? MSG_PEEK : 0));
    if (n < 0) {
      const e = errno();
      if (e === E.EAGAIN || e === E.EINTR) return null;
      throw new SyscallError('recvmsg', e);
    }
    const fds: number[] = [];
    const C = SOCKET_LAYOUT.cmsghdr;
    const controlLen = Number(this.msg.readBigUInt64LE(L.msg_controllen));
    let off = 0;
    while (off + C.size <= controlLen) {
      const len = Number(this.control.readBigUInt64LE(off + C.cmsg_len));
      if (len < C.size) break;
      if (this.control.readInt32LE(off + C.cmsg_level) === SOL_SOCKET && this.control.readInt32LE(off + C.cmsg_type) === SCM_RIGHTS) {
        for (let p = off + C.data; p + 4 <= off + len; p += 4) fds.push(this.control.readInt32LE(p));
      }
      off += (len + 7) & ~7;
    }
    const flags = this.msg.readInt32LE(L.msg_flags);
    return { bytes: Buffer.from(this.data.subarray(0, n)), fds, truncatedControl: (flags & MSG_CTRUNC) !== 0 };
  }
}

/** sendmsg of data plus fds as SCM_RIGHTS, without blocking (MSG_DONTWAIT). Returns bytes sent. */
export function sendWithFds(fd: number, data: Buffer, fds: number[]): number {
  const L = SOCKET_LAYOUT.msghdr;
  const C = SOCKET_LAYOUT.cmsghdr;
  const iov = Buffer.alloc(SOCKET_LAYOUT.iovec.size);
  iov.writeBigUInt64LE(BigInt(addressOf(data)), 0);
  iov.writeBigUInt64LE(BigInt(data.length), 8);
  const clen = C.data + 4 * fds.length;
  const control = Buffer.alloc((clen + 7) & ~7);
  control.writeBigUInt64LE(BigInt(clen), C.cmsg_len);
  control.writeInt32LE(SOL_SOCKET, C.cmsg_level);
  control.writeInt32LE(SCM_RIGHTS, C.cmsg_type);
  fds.forEach((f, i) => control.writeInt32LE(f, C.data + 4 * i));
  const msg = Buffer.alloc(L.size);
  msg.writeBigUInt64LE(BigInt(addressOf(iov)), L.msg_iov);
  msg.writeBigUInt64LE(1n, L.msg_iovlen);
  if (fds.length > 0) {
    msg.writeBigUInt64LE(BigInt(addressOf(control)), L.msg_control);
    msg.writeBigUInt64LE(BigInt(control.length), L.msg_controllen);
  }
  return check(sendmsgFn(fd, addressOf(msg), MSG_DONTWAIT), 'sendmsg');
}
