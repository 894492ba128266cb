// Entry point of the prefetch worker thread (prefetch-thread.ts), with the real ioctl.
import { ioctlRaw } from '../../native/uffd.js';
import { runPrefetchThread } from './prefetch-thread.js';

runPrefetchThread(ioctlRaw);
