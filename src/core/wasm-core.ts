// Loads the AssemblyScript core (build/core.wasm) onto one shared memory.
// The module is compiled once and posted to workers; each thread instantiates
// it on the same memory, so page tables and bitmaps are visible everywhere.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { instantiateSync } from '@assemblyscript/loader';
import { BuildMissingError } from '../errors.js';
import { LAYOUT, type CoreLayout } from './layout.generated.js';

export type { CoreLayout };

export const WASM_PAGE = 65536;
/** Must match asconfig.json: the module imports a memory of at most this many pages. */
export const MAX_MEMORY_PAGES = 32768;
const INITIAL_MEMORY_PAGES = 64;

const corePath = fileURLToPath(new URL('../../core.wasm', import.meta.url));

export interface CoreFunctions {
  findRegion(vm: number, addr: bigint): number;
  markRemoved(vm: number, start: bigint, end: bigint): void;
  isRemoved(vm: number, addr: bigint): number;
  markPresent(vm: number, addr: bigint): void;
  isPagePresent(vm: number, page: number): number;
  giveBack(vm: number, dst: bigint, len: bigint): void;
  plan(vm: number, msgs: number, count: number, actions: number): number;
  settle(vm: number, action: number, copied: number): void;
  unmarkPlanned(vm: number, actions: number, from: number, count: number): void;
  keepFaults(msgs: number, from: number, count: number): number;
  scanZeroPages(buf: number, len: number, bitmap: number, firstPage: bigint): number;
  markZeroPages(bitmap: number, first: bigint, last: bigint): void;
  lz4DecodeBlock(src: number, srcLen: number, dst: number, dstLen: number): number;
  lz4EncodeBlock(src: number, srcLen: number, dst: number, dstCap: number, table: number): number;
  lz4Bound(n: number): number;
  xxh32(p: number, len: number, seed: number): number;
  cacheInit(cache: number, sets: number, ways: number, slotBytes: number, data: number): void;
  slotData(cache: number, slot: number): number;
  chunkBytes(snap: number, chunk: number): number;
  loadChunk(snap: number, chunk: number, dst: number, scratch: number, scratchLen: number): number;
  chunkAcquire(vm: number, snap: number, chunk: number, scratch: number, scratchLen: number, owner: number): number;
  chunkRelease(snap: number, slot: number): void;
  /** Chunks the calling thread has read and decoded so far (its own count). */
  chunkLoadsHere(): number;
  cacheReleaseOwner(cache: number, owner: number): number;
  fillFromChunk(vm: number, snap: number, slot: number, action: number, out: number): number;
  assembleHuge(vm: number, snap: number, firstPage: bigint, staging: number, scratch: number, scratchLen: number, owner: number): number;
  copyAssembled(action: number, staging: bigint, len: bigint): void;
  prefetchPlan(vm: number, snap: number, first: number, count: number, chunk: number, slot: number, staged: number, maxPages: number, step: number): void;
  prefetchDone(vm: number, action: number, bytes: number): number;
  zeroRuns(vm: number, minBytes: bigint, out: number, max: number): number;
  markUnregistered(vm: number, start: bigint, len: bigint): void;
}

export interface Core {
  readonly fn: CoreFunctions;
  readonly layout: CoreLayout;
  readonly memory: WebAssembly.Memory;
}

export function compileCore(): WebAssembly.Module {
  let bytes: Buffer;
  try {
    bytes = readFileSync(corePath);
  } catch {
    throw new BuildMissingError(corePath);
  }
  return new WebAssembly.Module(new Uint8Array(bytes));
}

export function createSharedMemory(): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: INITIAL_MEMORY_PAGES, maximum: MAX_MEMORY_PAGES, shared: true });
}

/**
 * The core's one import: pread(2) of a compressed chunk into shared memory
 * (src/core/host-pread.ts). Threads that never read chunks (pack workers) go
 * without, and need not load the native layer at all.
 */
export type HostPread = (fd: number, dst: number, len: number, offset: bigint) => number;
const NO_PREAD: HostPread = () => -5; // -EIO

/** The imports that read and check a store's chunk by name (src/core/named-chunks.ts). */
export interface NamedChunkReads {
  readNamed(dirfd: number, name: number, dst: number, len: number): number;
  checkNamed(name: number, at: number, len: number): number;
}
const NO_NAMED: NamedChunkReads = { readNamed: () => -5, checkNamed: () => 0 };

/** Instantiates the core on `memory` in the calling thread. */
export function instantiateCore(module: WebAssembly.Module, memory: WebAssembly.Memory, pread: HostPread = NO_PREAD, named: NamedChunkReads = NO_NAMED): Core {
  // The loader validates the imports and reads the layout; the functions are
  // taken from the raw instance: the loader's wrappers allocate (rest
  // arguments) on every call, which the fault path must not.
  const env = { memory, pread, readNamed: named.readNamed, checkNamed: named.checkNamed } as { memory: WebAssembly.Memory };
  const { instance } = instantiateSync<Record<string, unknown>>(module, { env });
  const exports = instance.exports as Record<string, unknown>;
  // The host's layout was generated from this module's source: a module built since is refused, never misread.
  for (const [key, want] of Object.entries(LAYOUT)) {
    const g = exports[key];
    if (!(g instanceof WebAssembly.Global) || Number(g.value) !== want) {
      throw new BuildMissingError(corePath, `its ${key} does not match src/core/layout.generated.ts (rebuild with npm run build)`);
    }
  }
  return { fn: exports as unknown as CoreFunctions, layout: LAYOUT, memory };
}
