// Loads the AssemblyScript core (build/core.wasm) onto one shared memory.
// The module is compiled once and posted to workers; each thread instantiates
// it on the same memory, so page tables and bitmaps are visible everywhere.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { instantiateSync } from '@assemblyscript/loader';
import { BuildMissingError } from '../errors.js';

export const WASM_PAGE = 65536;
/** Must match asconfig.json: the module imports a memory of at most this many pages. */
export const MAX_MEMORY_PAGES = 32768;
const INITIAL_MEMORY_PAGES = 64;

const corePath = fileURLToPath(new URL('../../core.wasm', import.meta.url));

export interface CoreFunctions {
  findRegion(vm: number, addr: bigint): number;
  applyRemove(vm: number, start: bigint, end: bigint): void;
  isRemoved(vm: number, addr: bigint): number;
  plan(vm: number, msgs: number, count: number, actions: number): number;
  unmarkPlanned(vm: number, actions: number, from: number, count: number): void;
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
  chunkAcquire(vm: number, snap: number, chunk: number, scratch: number, scratchLen: number): number;
  chunkRelease(snap: number, slot: number): void;
  fillFromChunk(vm: number, snap: number, slot: number, k: number, dst: bigint, msgIndex: number, actions: number): number;
  unmarkFilled(vm: number, dst: bigint, len: bigint): void;
  assembleHuge(vm: number, snap: number, firstPage: bigint, staging: number, scratch: number, scratchLen: number): number;
  prefetchPlan(vm: number, snap: number, first: number, count: number, chunk: number, slot: number, staged: number, maxPages: number, step: number): void;
  prefetchDone(vm: number, action: number, bytes: number): number;
  markPresent(vm: number, addr: bigint): void;
  isPagePresent(vm: number, page: number): number;
}

/** The memory layout constants, as the core exports them. */
export interface CoreLayout {
  MSG_SIZE: number;
  VM_NREGIONS: number;
  VM_SRC_BASE: number;
  VM_SRC_SIZE: number;
  VM_ZERO_SRC: number;
  VM_ZERO_BITMAP: number;
  VM_STAT_COPY: number;
  VM_STAT_ZERO: number;
  VM_STAT_REMOVED_ZERO: number;
  VM_STAT_REMOVE_EVENTS: number;
  VM_STAT_OTHER_EVENTS: number;
  VM_STAT_BYTES: number;
  VM_REGIONS: number;
  VM_MAX_REGIONS: number;
  VM_TABLE_SIZE: number;
  REGION_STRIDE: number;
  REGION_BASE: number;
  REGION_SIZE: number;
  REGION_END: number;
  REGION_FILE_OFFSET: number;
  REGION_PAGE_SHIFT: number;
  REGION_REMOVED: number;
  ACTION_STRIDE: number;
  ACTION_KIND: number;
  ACTION_MSG_INDEX: number;
  ACTION_IOCTL: number;
  ACTION_WAKE: number;
  KIND_COPY: number;
  KIND_ZEROPAGE: number;
  KIND_UNMAPPED: number;
  ZERO_SCAN_PAGE: number;
  LZ4_DECODE_SLACK: number;
  VM_SNAP: number;
  VM_FLAGS: number;
  FLAG_FILL_AROUND: number;
  VM_STAT_CHUNK_HITS: number;
  VM_STAT_CHUNK_MISSES: number;
  VM_STAT_FILLED_AROUND: number;
  REGION_PRESENT: number;
  FLAG_PREFETCH: number;
  VM_FENCE_READ: number;
  VM_FENCE_COPY: number;
  VM_FENCE_READ_WAITERS: number;
  VM_FENCE_COPY_WAITERS: number;
  VM_STAT_PREFETCHED: number;
  VM_STAT_PREFETCH_ZERO: number;
  VM_STAT_PREFETCH_BYTES: number;
  VM_STAT_LATE: number;
  ACTION_FILE_PAGE: number;
  ACTION_PAGES: number;
  KIND_WAKE: number;
  STEP_CONSUMED: number;
  STEP_KIND: number;
  STEP_ARG: number;
  STEP_STAGING: number;
  STEP_ACTION: number;
  STEP_SIZE: number;
  STEP_NONE: number;
  STEP_NEED_CHUNK: number;
  STEP_NEED_ASSEMBLE: number;
  STEP_COUNT: number;
  STEP_ACTIONS: number;
  STEP_MAX_ACTIONS: number;
  SNAP_FD: number;
  SNAP_PAGES: number;
  SNAP_PAGES_PER_CHUNK: number;
  SNAP_CHUNKS: number;
  SNAP_STORED: number;
  SNAP_INDEX: number;
  SNAP_CHUNK_TABLE: number;
  SNAP_STORED_TO_PAGE: number;
  SNAP_CACHE: number;
  SNAP_CODEC: number;
  SNAP_MEM_BASE: number;
  SNAP_SIZE: number;
  CACHE_SLOTS: number;
  SLOT_STRIDE: number;
  CHUNK_ERR_IO: number;
  CHUNK_ERR_CHECKSUM: number;
  CHUNK_ERR_DECODE: number;
  CHUNK_ERR_RANGE: number;
  KIND_CHUNK: number;
  KIND_ASSEMBLE: number;
  LZ4_TABLE_BYTES: number;
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

const layoutKeys: (keyof CoreLayout)[] = [
  'MSG_SIZE', 'VM_NREGIONS', 'VM_SRC_BASE', 'VM_SRC_SIZE', 'VM_ZERO_SRC', 'VM_ZERO_BITMAP', 'VM_STAT_COPY',
  'VM_STAT_ZERO', 'VM_STAT_REMOVED_ZERO', 'VM_STAT_REMOVE_EVENTS', 'VM_STAT_OTHER_EVENTS', 'VM_STAT_BYTES',
  'VM_REGIONS', 'VM_MAX_REGIONS', 'VM_TABLE_SIZE', 'REGION_STRIDE', 'REGION_BASE', 'REGION_SIZE', 'REGION_END',
  'REGION_FILE_OFFSET', 'REGION_PAGE_SHIFT', 'REGION_REMOVED', 'ACTION_STRIDE', 'ACTION_KIND', 'ACTION_MSG_INDEX',
  'ACTION_IOCTL', 'ACTION_WAKE', 'KIND_COPY', 'KIND_ZEROPAGE', 'KIND_UNMAPPED', 'ZERO_SCAN_PAGE',
  'LZ4_DECODE_SLACK', 'LZ4_TABLE_BYTES', 'VM_SNAP', 'VM_FLAGS', 'FLAG_FILL_AROUND', 'VM_STAT_CHUNK_HITS',
  'VM_STAT_CHUNK_MISSES', 'VM_STAT_FILLED_AROUND', 'REGION_PRESENT', 'FLAG_PREFETCH', 'VM_FENCE_READ', 'VM_FENCE_COPY',
  'VM_FENCE_READ_WAITERS', 'VM_FENCE_COPY_WAITERS', 'VM_STAT_PREFETCHED', 'VM_STAT_PREFETCH_ZERO', 'VM_STAT_PREFETCH_BYTES', 'VM_STAT_LATE',
  'ACTION_FILE_PAGE', 'ACTION_PAGES', 'KIND_WAKE', 'STEP_CONSUMED', 'STEP_KIND', 'STEP_ARG', 'STEP_STAGING', 'STEP_ACTION', 'STEP_SIZE', 'STEP_NONE',
  'STEP_NEED_CHUNK', 'STEP_NEED_ASSEMBLE', 'STEP_COUNT', 'STEP_ACTIONS', 'STEP_MAX_ACTIONS', 'SNAP_FD', 'SNAP_PAGES', 'SNAP_PAGES_PER_CHUNK', 'SNAP_CHUNKS',
  'SNAP_STORED', 'SNAP_INDEX', 'SNAP_CHUNK_TABLE', 'SNAP_STORED_TO_PAGE', 'SNAP_CACHE', 'SNAP_CODEC', 'SNAP_MEM_BASE', 'SNAP_SIZE', 'CACHE_SLOTS',
  'SLOT_STRIDE', 'CHUNK_ERR_IO', 'CHUNK_ERR_CHECKSUM', 'CHUNK_ERR_DECODE', 'CHUNK_ERR_RANGE', 'KIND_CHUNK', 'KIND_ASSEMBLE',
];

/**
 * The core's one import: pread(2) of a compressed chunk into shared memory
 * (src/core/host-pread.ts). Threads that never read chunks (pack workers) go
 * without, and need not load the native layer at all.
 */
export type HostPread = (fd: number, dst: number, len: number, offset: bigint) => number;
const NO_PREAD: HostPread = () => -5; // -EIO

/** Instantiates the core on `memory` in the calling thread. */
export function instantiateCore(module: WebAssembly.Module, memory: WebAssembly.Memory, pread: HostPread = NO_PREAD): Core {
  // The loader validates the imports and reads the layout; the functions are
  // taken from the raw instance: the loader's wrappers allocate (rest
  // arguments) on every call, which the fault path must not.
  const env = { memory, pread } as { memory: WebAssembly.Memory };
  const { instance } = instantiateSync<Record<string, unknown>>(module, { env });
  const exports = instance.exports as Record<string, unknown>;
  const layout = {} as Record<keyof CoreLayout, number>;
  for (const key of layoutKeys) {
    const g = exports[key];
    if (!(g instanceof WebAssembly.Global)) throw new BuildMissingError(corePath, `it does not export ${key}`);
    layout[key] = Number(g.value);
  }
  return { fn: exports as unknown as CoreFunctions, layout, memory };
}
