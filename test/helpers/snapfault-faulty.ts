// The snapfault command line with the test-side workers that inject faults
// (test/helpers/faulty-prefetch-worker.ts, faulty-fault-worker.ts): each does
// what the test's environment asks of it, and nothing without it.
// node build/test/helpers/snapfault-faulty.js ARGS
import { run } from '../../src/cli.js';

const prefetchWorker = new URL('./faulty-prefetch-worker.js', import.meta.url);
const faultWorker = new URL('./faulty-fault-worker.js', import.meta.url);
run(process.argv.slice(2), { prefetchWorker, faultWorker }).then((code) => process.exit(code));
