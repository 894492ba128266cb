// A fault worker entry for tests: the real fault thread, with an ioctl that
// injects faults, chosen by the test's environment (the product reads none):
//   SF_TEST_FAULT_DIE=1         end the thread at its first ioctl (a worker crash).
//   SF_TEST_FAULT_UNREGISTER=1  before the first UFFDIO_ZEROPAGE, take its page
//                               out of the uffd (a bare UFFDIO_UNREGISTER), as
//                               an unregister racing the fault would: the
//                               fault in hand then meets ENOENT.
import { ioctlRaw, UFFDIO } from '../../native/uffd.js';
import { unregisterZeropageRange } from './bare-unregister.js';
import { runFaultThread } from '../../src/worker/fault-thread.js';

const die = process.env.SF_TEST_FAULT_DIE === '1';
let unregisterNext = process.env.SF_TEST_FAULT_UNREGISTER === '1';

runFaultThread((fd, req, arg) => {
  if (die) process.exit(71); // in a worker thread: ends this thread only
  if (unregisterNext && req === UFFDIO.ZEROPAGE) {
    unregisterNext = false;
    if (unregisterZeropageRange(fd, arg) < 0) process.exit(72);
  }
  return ioctlRaw(fd, req, arg);
});
