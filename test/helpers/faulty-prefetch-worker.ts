// A prefetch worker entry for tests: the real prefetch thread, with an ioctl
// that injects faults, chosen by the test's environment (the product reads none):
//   SF_TEST_PREFETCH_STALL_MS  hold every copy that long after its pages were
//                              checked, inside the fence, before issuing it;
//   SF_TEST_PREFETCH_DIE=1     end the thread at its first copy, inside the fence
//                              (and, from a compressed snapshot, holding a chunk);
//   SF_TEST_PREFETCH_UNREGISTER=1  before its first UFFDIO_ZEROPAGE, take that
//                              range out of the uffd (a bare UFFDIO_UNREGISTER),
//                              as a handler before a takeover may have: ENOENT.
import { ioctlRaw, UFFDIO } from '../../native/uffd.js';
import { unregisterZeropageRange } from './bare-unregister.js';
import { runPrefetchThread } from '../../src/prefetch/prefetch-thread.js';

const stallMs = Number(process.env.SF_TEST_PREFETCH_STALL_MS ?? 0);
const die = process.env.SF_TEST_PREFETCH_DIE === '1';
let unregisterNext = process.env.SF_TEST_PREFETCH_UNREGISTER === '1';
const word = new Int32Array(new SharedArrayBuffer(4));

runPrefetchThread((fd, req, arg) => {
  if (stallMs > 0) Atomics.wait(word, 0, 0, stallMs);
  if (die) process.exit(70); // in a worker thread: ends this thread only
  if (unregisterNext && req === UFFDIO.ZEROPAGE) {
    unregisterNext = false;
    if (unregisterZeropageRange(fd, arg) < 0) process.exit(72);
  }
  return ioctlRaw(fd, req, arg);
});
