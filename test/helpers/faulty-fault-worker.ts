// A fault worker entry for tests: the real fault thread, with an ioctl that
// injects faults, chosen by the test's environment (the product reads none):
//   SF_TEST_FAULT_DIE=1   end the thread at its first ioctl (a worker crash).
import { ioctlRaw } from '../../native/uffd.js';
import { runFaultThread } from '../../src/worker/fault-thread.js';

const die = process.env.SF_TEST_FAULT_DIE === '1';

runFaultThread((fd, req, arg) => {
  if (die) process.exit(71); // in a worker thread: ends this thread only
  return ioctlRaw(fd, req, arg);
});
