// The uffd wrapper against a real userfaultfd in this process: the resolving
// ioctls are issued on registered memory that no thread touches until filled.
import { expect } from 'chai';
import { createUserfaultfd, registerMissing, unregister, copy, zeropage, wake, isUserfaultfd, UFFD_FEATURE } from '../../native/uffd.js';
import { bareUnregister } from '../helpers/bare-unregister.js';
import { Worker } from 'node:worker_threads';
import { mmapAnonymous, munmap, readMemory, writeMemory, madvise, MADV, type Mapping } from '../../native/mmap.js';
import { closeFd, fileStatusFlags, O_NONBLOCK, PollSet, POLL, EventFd, dataExtents } from '../../native/fd.js';
import { E } from '../../native/libc.js';
import { TempDir } from '../helpers/images.js';
import { openSync, closeSync, ftruncateSync, writeSync } from 'node:fs';

describe('native/uffd on a real userfaultfd', () => {
  let fd: number;
  let guest: Mapping;
  let src: Mapping;
  const PAGE = 4096;

  beforeEach(() => {
    fd = createUserfaultfd(UFFD_FEATURE.EVENT_REMOVE);
    guest = mmapAnonymous(16 * PAGE);
    src = mmapAnonymous(PAGE);
    registerMissing(fd, guest.addr, guest.length);
  });
  afterEach(() => {
    closeFd(fd);
    munmap(guest);
    munmap(src);
  });

  it('is recognised as a non-blocking userfaultfd', () => {
    expect(isUserfaultfd(fd)).to.equal(true);
    expect(fileStatusFlags(fd) & O_NONBLOCK).to.equal(O_NONBLOCK);
    const ev = new EventFd();
    expect(isUserfaultfd(ev.fd)).to.equal(false);
    ev.close();
  });

  it('UFFDIO_COPY fills a page, a second copy reports EEXIST, WAKE succeeds', () => {
    const bytes = Buffer.alloc(PAGE, 0xab);
    writeMemory(src.addr, bytes);
    expect(copy(fd, guest.addr + PAGE, src.addr, PAGE)).to.equal(PAGE);
    expect(readMemory(guest.addr + PAGE, PAGE).equals(bytes)).to.equal(true);
    expect(copy(fd, guest.addr + PAGE, src.addr, PAGE)).to.equal(-E.EEXIST);
    expect(wake(fd, guest.addr + PAGE, PAGE)).to.equal(0);
  });

  it('UFFDIO_ZEROPAGE maps zeros', () => {
    expect(zeropage(fd, guest.addr, 2 * PAGE)).to.equal(2 * PAGE);
    expect(readMemory(guest.addr, 2 * PAGE).every((b) => b === 0)).to.equal(true);
  });

  it('UFFDIO_UNREGISTER leaves a range to the kernel: zeros without a message, no REMOVE, no copy into it', () => {
    const set = new PollSet(1);
    set.add(fd, POLL.IN);
    expect(unregister(fd, guest.addr + 4 * PAGE, 8 * PAGE)).to.equal(0);
    // This thread would hang on a registered missing page: here the kernel maps zeros itself.
    writeMemory(guest.addr + 5 * PAGE, Buffer.alloc(PAGE, 7));
    expect(readMemory(guest.addr + 4 * PAGE, PAGE).every((b) => b === 0)).to.equal(true);
    madvise(guest.addr + 5 * PAGE, PAGE, MADV.DONTNEED);
    expect(readMemory(guest.addr + 5 * PAGE, PAGE).every((b) => b === 0)).to.equal(true);
    expect(set.wait(0)).to.equal(0); // no fault, no REMOVE was queued
    // The uffd no longer owns the range: a copy there fails (the handler must skip it).
    expect(copy(fd, guest.addr + 6 * PAGE, src.addr, PAGE)).to.equal(-E.ENOENT);
    // The rest stays registered.
    expect(zeropage(fd, guest.addr, PAGE)).to.equal(PAGE);
    expect(unregister(fd, guest.addr + 100, PAGE)).to.equal(-E.EINVAL);
  });

  it('rejects an unaligned destination with EINVAL', () => {
    expect(copy(fd, guest.addr + 100, src.addr, PAGE)).to.equal(-E.EINVAL);
  });

  it('poll reports nothing pending on an idle uffd', () => {
    const set = new PollSet(1);
    set.add(fd, POLL.IN);
    expect(set.wait(0)).to.equal(0);
  });

  it('eventfd wakes a poll set', () => {
    const ev = new EventFd();
    const set = new PollSet(1);
    set.add(ev.fd, POLL.IN);
    ev.signal();
    expect(set.wait(1000)).to.equal(1);
    expect(set.revents(0) & POLL.IN).to.equal(POLL.IN);
    expect(ev.drain()).to.equal(true);
    expect(ev.drain()).to.equal(false);
    ev.close();
  });
});

// The kernel wakes the faults waiting in a range before it takes the range
// out of the uffd; a fault entering under the VMA lock just then queues
// itself after that wake-up and sleeps for good. A "vCPU" thread faults in
// range A, then in range B; A is unregistered (waking it) and, a varying few
// microseconds later, B, while the thread is on its way into B.
describe('native/uffd: an unregister racing a fault on its way in', function () {
  this.timeout(120_000);
  const MiB = 1 << 20;
  /** Enough to see the race on a loaded machine (~1 round in 100 idle, ~1 in 1000 with both CPUs busy). */
  const MAX_ROUNDS = 40_000;
  const BARE_ENOUGH = 5;

  it('leaves no fault asleep: unregister wakes the range once it is out (a bare UFFDIO_UNREGISTER, in alternate rounds, leaves some)', async () => {
    const sab = new SharedArrayBuffer(32);
    const ctl = new Int32Array(sab, 0, 2); // [0]: 1 go, 2 quit; [1]: 1 when both touches returned
    const addrs = new Float64Array(sab, 16, 2);
    const vcpu = new Worker(`
      const { workerData } = require('node:worker_threads');
      const koffi = require(workerData.koffi);
      const memcpy = koffi.load('libc.so.6').func('uintptr_t memcpy(uintptr_t, uintptr_t, size_t)');
      const ctl = new Int32Array(workerData.sab, 0, 2);
      const addrs = new Float64Array(workerData.sab, 16, 2);
      const out = Number(koffi.address(Buffer.alloc(8)));
      for (;;) {
        Atomics.wait(ctl, 0, 0);
        if (ctl[0] === 2) break;
        Atomics.store(ctl, 0, 0);
        memcpy(out, addrs[0], 8);
        memcpy(out, addrs[1], 8);
        Atomics.store(ctl, 1, 1);
        Atomics.notify(ctl, 1);
      }
    `, { eval: true, workerData: { koffi: new URL('../../../node_modules/koffi/index.cjs', import.meta.url).pathname, sab } });
    const asleep = { ours: 0, bare: 0 };
    let round = 0;
    try {
      for (; round < MAX_ROUNDS && asleep.bare < BARE_ENOUGH; round++) {
        const ours = round % 2 === 0;
        const fd = createUserfaultfd(UFFD_FEATURE.EVENT_REMOVE);
        const guest = mmapAnonymous(8 * MiB);
        const b = guest.addr + 4 * MiB;
        try {
          registerMissing(fd, guest.addr, 8 * MiB);
          addrs[0] = guest.addr;
          addrs[1] = b + 7 * 4096;
          Atomics.store(ctl, 1, 0);
          Atomics.store(ctl, 0, 1);
          Atomics.notify(ctl, 0);
          const set = new PollSet(1);
          set.add(fd, POLL.IN);
          expect(set.wait(5000), 'the fault in A').to.equal(1);
          expect(unregister(fd, guest.addr, 4 * MiB)).to.equal(0);
          const until = process.hrtime.bigint() + BigInt((round % 400) * 250);
          while (process.hrtime.bigint() < until) { /* spin: 0-100 µs */ }
          expect((ours ? unregister : bareUnregister)(fd, b, 4 * MiB)).to.equal(0);
          if (Atomics.wait(ctl, 1, 0, 20) === 'timed-out') {
            asleep[ours ? 'ours' : 'bare']++;
            expect(wake(fd, b, 4 * MiB)).to.equal(0);
            expect(Atomics.wait(ctl, 1, 0, 5000), 'the vCPU after a wake').to.not.equal('timed-out');
          }
        } finally {
          closeFd(fd);
          munmap(guest);
        }
      }
    } finally {
      Atomics.store(ctl, 0, 2);
      Atomics.notify(ctl, 0);
      await vcpu.terminate();
    }
    expect(asleep.ours, `faults left asleep by unregister in ${round} rounds`).to.equal(0);
    expect(asleep.bare, `the race never showed in ${round} rounds: nothing was tested`).to.be.at.least(1);
  });
});

describe('native/fd dataExtents', () => {
  it('finds the data of a sparse file and nothing in its holes', () => {
    const tmp = new TempDir();
    const path = tmp.file('sparse');
    const f = openSync(path, 'w+');
    ftruncateSync(f, 64 << 20);
    writeSync(f, Buffer.alloc(4096, 1), 0, 4096, 16 << 20);
    closeSync(f);
    const rf = openSync(path, 'r');
    const ext = dataExtents(rf, 64 << 20);
    closeSync(rf);
    tmp.remove();
    expect(ext.length).to.equal(1);
    expect(ext[0][0]).to.be.at.most(16 << 20);
    expect(ext[0][1]).to.be.at.least((16 << 20) + 4096);
    expect(ext[0][1] - ext[0][0]).to.be.below(4 << 20);
  });
});
