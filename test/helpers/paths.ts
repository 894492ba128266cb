import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

/** The repository root (tests run from build/test/...). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const SNAPFAULT = join(ROOT, 'bin', 'snapfault');
export const FC_SIM = join(ROOT, 'build', 'fc-sim');
export const REF_HANDLER = join(ROOT, 'build', 'ref-handler');
/** The CLI with a prefetch worker that injects faults (test/helpers/faulty-prefetch-worker.ts): run with node. */
export const SNAPFAULT_FAULTY_PREFETCH = join(ROOT, 'build', 'test', 'helpers', 'snapfault-faulty-prefetch.js');
