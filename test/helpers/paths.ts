import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

/** The repository root (tests run from build/test/...). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const SNAPFAULT = join(ROOT, 'bin', 'snapfault');
export const FC_SIM = join(ROOT, 'build', 'fc-sim');
export const REF_HANDLER = join(ROOT, 'build', 'ref-handler');
/** The CLI with workers that inject faults as the environment says (test/helpers/snapfault-faulty.ts): run with node. */
export const SNAPFAULT_FAULTY = join(ROOT, 'build', 'test', 'helpers', 'snapfault-faulty.js');
