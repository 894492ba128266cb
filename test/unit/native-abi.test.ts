// Every constant, struct size and field offset native/ hard-codes, checked
// against the system headers by compiling a C probe with gcc.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../helpers/paths.js';
import { TempDir } from '../helpers/images.js';
import * as uffd from '../../native/uffd.js';
import * as socket from '../../native/socket.js';
import * as fd from '../../native/fd.js';
import * as mmap from '../../native/mmap.js';
import * as sched from '../../native/sched.js';
import * as pidfd from '../../native/pidfd.js';
import * as epoll from '../../native/epoll.js';
import { compileCore, createSharedMemory, instantiateCore } from '../../src/core/wasm-core.js';

describe('native ABI against the kernel and libc headers', () => {
  let probe: Record<string, number>;
  const tmp = new TempDir();

  before(() => {
    const exe = join(tmp.path, 'abi_probe');
    execFileSync('gcc', ['-Wall', '-o', exe, join(ROOT, 'test/native/abi_probe.c')]);
    probe = JSON.parse(execFileSync(exe).toString()) as Record<string, number>;
  });
  after(() => tmp.remove());

  const same = (name: string, ours: number): void => {
    expect(probe[name], `probe has no ${name}`).to.be.a('number');
    expect(ours, name).to.equal(probe[name]);
  };

  it('userfaultfd ioctl numbers and constants', () => {
    for (const [k, v] of Object.entries(uffd.UFFDIO)) same(`UFFDIO_${k}`, v);
    same('USERFAULTFD_IOC_NEW', uffd.USERFAULTFD_IOC_NEW);
    same('UFFD_API', uffd.UFFD_API);
    for (const [k, v] of Object.entries(uffd.UFFD_EVENT)) same(`UFFD_EVENT_${k}`, v);
    for (const [k, v] of Object.entries(uffd.UFFD_PAGEFAULT_FLAG)) same(`UFFD_PAGEFAULT_FLAG_${k}`, v);
    for (const [k, v] of Object.entries(uffd.UFFD_FEATURE)) same(`UFFD_FEATURE_${k}`, v);
    same('UFFDIO_REGISTER_MODE_MISSING', uffd.UFFDIO_REGISTER_MODE_MISSING);
    same('UFFDIO_COPY_MODE_DONTWAKE', uffd.UFFDIO_COPY_MODE_DONTWAKE);
    same('UFFDIO_ZEROPAGE_MODE_DONTWAKE', uffd.UFFDIO_ZEROPAGE_MODE_DONTWAKE);
    same('UFFD_USER_MODE_ONLY', uffd.UFFD_USER_MODE_ONLY);
    same('O_CLOEXEC', uffd.O_CLOEXEC);
  });

  it('userfaultfd struct layouts', () => {
    for (const [struct, fields] of Object.entries(uffd.LAYOUT)) {
      for (const [field, v] of Object.entries(fields)) same(`${struct}.${field}`, v);
    }
  });

  it('the WASM core uses the same uffd_msg and uffdio_range layouts (zero ranges are unregistered from the core\'s structs)', () => {
    const core = instantiateCore(compileCore(), createSharedMemory());
    same('uffd_msg.size', core.layout.MSG_SIZE);
    same('uffdio_range.size', core.layout.UFFDIO_RANGE_SIZE);
    same('uffdio_range.start', core.layout.UFFDIO_RANGE_START);
    same('uffdio_range.len', core.layout.UFFDIO_RANGE_LEN);
    same('UFFDIO_UNREGISTER', uffd.UFFDIO.UNREGISTER);
  });

  it('socket struct layouts and constants', () => {
    for (const [struct, fields] of Object.entries(socket.SOCKET_LAYOUT)) {
      for (const [field, v] of Object.entries(fields)) same(`${struct}.${field}`, v);
    }
    for (const k of ['AF_UNIX', 'SOCK_STREAM', 'SOCK_NONBLOCK', 'SOCK_CLOEXEC', 'SOL_SOCKET', 'SCM_RIGHTS', 'SO_PEERCRED',
      'MSG_PEEK', 'MSG_DONTWAIT', 'MSG_CTRUNC', 'MSG_CMSG_CLOEXEC'] as const) same(k, socket[k]);
  });

  it('poll, eventfd, fcntl, lseek, sched constants', () => {
    for (const [k, v] of Object.entries(fd.POLL)) same(`POLL${k}`, v);
    same('pollfd.size', fd.POLLFD_SIZE);
    for (const k of ['EFD_NONBLOCK', 'EFD_CLOEXEC', 'F_GETFL', 'F_DUPFD_CLOEXEC', 'O_NONBLOCK', 'O_RDONLY', 'O_CLOEXEC', 'SEEK_DATA', 'SEEK_HOLE'] as const) same(k, fd[k]);
    same('SCHED_IDLE', sched.SCHED_IDLE);
    same('SCHED_BATCH', sched.SCHED_BATCH);
    for (const [k, v] of Object.entries(epoll.EPOLL)) same(k.startsWith('CTL') || k === 'CLOEXEC' ? `EPOLL_${k}` : `EPOLL${k}`, v);
    for (const [k, v] of Object.entries(epoll.EPOLL_EVENT)) same(`epoll_event.${k}`, v);
  });

  it('mmap, madvise, pidfd and signal constants', () => {
    for (const [k, v] of Object.entries(mmap.PROT)) if (k !== 'NONE') same(`PROT_${k}`, v);
    for (const [k, v] of Object.entries(mmap.MAP)) same(`MAP_${k}`, v);
    for (const [k, v] of Object.entries(mmap.MADV)) same(`MADV_${k}`, v);
    same('SYS_pidfd_open', pidfd.SYS_pidfd_open);
    same('SYS_pidfd_send_signal', pidfd.SYS_pidfd_send_signal);
    same('SYS_pidfd_getfd', pidfd.SYS_pidfd_getfd);
    same('PIDFD_NONBLOCK', pidfd.PIDFD_NONBLOCK);
    same('SIGKILL', pidfd.SIGKILL);
    same('SIGTERM', pidfd.SIGTERM);
    same('SIGUSR2', pidfd.SIGUSR2);
  });
});
