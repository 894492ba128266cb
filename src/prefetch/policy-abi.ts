// The interface between snapfault and a prefetch policy module (docs/prefetch.md):
// checked when the module is loaded, so a wrong module fails at start with a
// message that says what is missing. Pages cross it as u32 (snapshot/limits.ts
// keeps them below 2^32); fault times as u32 µs, which wrap every 71.6 minutes.
import { PolicyError } from '../errors.js';

export const POLICY_ABI_VERSION = 1;
/** Ranges a policy may return from one call. */
export const POLICY_MAX_RANGES = 64;

const REQUIRED_EXPORTS: Record<string, WebAssembly.ImportExportKind> = {
  memory: 'memory',
  sf_abi_version: 'function',
  sf_init: 'function',
  sf_fault: 'function',
};
const OPTIONAL_EXPORTS: Record<string, WebAssembly.ImportExportKind> = { sf_idle: 'function' };
const ALLOWED_IMPORTS = new Set(['env.abort', 'env.sf_present']);

/** Compiles and checks a policy module; PolicyError names what is wrong. */
export function compilePolicy(bytes: Uint8Array, name: string): WebAssembly.Module {
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(new Uint8Array(bytes));
  } catch (e) {
    throw new PolicyError(`prefetch policy ${name} is not a valid WebAssembly module (${(e as Error).message}); build it with asc, see docs/prefetch.md`);
  }
  const exports = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
  for (const [key, kind] of Object.entries(REQUIRED_EXPORTS)) {
    if (exports.get(key) !== kind) throw new PolicyError(`prefetch policy ${name} does not export the ${kind} ${key}; see docs/prefetch.md for the policy interface`);
  }
  for (const [key, kind] of Object.entries(OPTIONAL_EXPORTS)) {
    if (exports.has(key) && exports.get(key) !== kind) throw new PolicyError(`prefetch policy ${name}: its export ${key} must be a ${kind}`);
  }
  for (const imp of WebAssembly.Module.imports(module)) {
    const key = `${imp.module}.${imp.name}`;
    if (!ALLOWED_IMPORTS.has(key) || imp.kind !== 'function') {
      throw new PolicyError(`prefetch policy ${name} imports ${key}, which snapfault does not provide (only ${[...ALLOWED_IMPORTS].join(' and ')}); build it with --runtime stub and no host bindings`);
    }
  }
  return module;
}
