// Entry point of a fault worker thread (fault-thread.ts), with the real ioctl.
import { ioctlRaw } from '../../native/uffd.js';
import { runFaultThread } from './fault-thread.js';

runFaultThread(ioctlRaw);
