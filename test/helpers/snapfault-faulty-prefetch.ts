// The snapfault command line with test/helpers/faulty-prefetch-worker.ts as
// its prefetch worker: node build/test/helpers/snapfault-faulty-prefetch.js ARGS.
import { run } from '../../src/cli.js';

const prefetchWorker = new URL('./faulty-prefetch-worker.js', import.meta.url);
run(process.argv.slice(2), { prefetchWorker }).then((code) => process.exit(code));
