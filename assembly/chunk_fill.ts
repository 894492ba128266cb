// Serving faults of a compressed snapshot from a decoded chunk: the faulting
// page first, then (fill-around) every other page stored in the chunk that
// this VM still lacks, in as few multi-page UFFDIO_COPYs as possible.
import {
  VM_NREGIONS, VM_REGIONS, VM_FLAGS, FLAG_FILL_AROUND, VM_STAT_FILLED_AROUND, VM_STAT_COPY, VM_STAT_BYTES,
  REGION_STRIDE, REGION_BASE, REGION_SIZE, REGION_FILE_OFFSET, REGION_PAGE_SHIFT, REGION_REMOVED, REGION_PRESENT,
  SNAP_PAGES_PER_CHUNK, SNAP_STORED, SNAP_STORED_TO_PAGE, SNAP_INDEX, SNAP_PAGES, SNAP_CACHE, SNAP_MEM_BASE, PAGE_ZERO,
  ACTION_STRIDE, ACTION_KIND, ACTION_MSG_INDEX, ACTION_IOCTL, ACTION_WAKE, KIND_COPY, ZERO_SCAN_PAGE,
} from './layout';
import { slotData, chunkAcquire, chunkRelease } from './chunk_cache';
import { findRegion } from './page_index';
import { testBit, setBits } from './bitmap';

/** The region holding snapshot page `page` (4 KiB units), or 0. */
export function regionOfFilePage(vm: usize, page: u64): usize {
  const off = page * ZERO_SCAN_PAGE;
  const n = load<u32>(vm + VM_NREGIONS);
  let r = vm + VM_REGIONS;
  for (let i: u32 = 0; i < n; i++, r += REGION_STRIDE) {
    const start = load<u64>(r + REGION_FILE_OFFSET);
    if (off >= start && off < start + load<u64>(r + REGION_SIZE)) return r;
  }
  return 0;
}

@inline function writeCopy(a: usize, msgIndex: u32, dst: u64, src: u64, len: u64): void {
  store<u32>(a + ACTION_KIND, KIND_COPY);
  store<u32>(a + ACTION_MSG_INDEX, msgIndex);
  const io = a + ACTION_IOCTL;
  store<u64>(io, dst);
  store<u64>(io + 8, src);
  store<u64>(io + 16, len);
  store<u64>(io + 24, 0);
  store<i64>(io + 32, 0);
  store<u64>(a + ACTION_WAKE, dst);
  store<u64>(a + ACTION_WAKE + 8, len);
}

/**
 * Copy actions for a fault at `dst` on stored page `k`, whose chunk sits
 * decoded in cache slot `slot`: the faulting page first, then the runs of the
 * chunk's other pages that are neither removed nor already filled. Marks
 * every page it plans as filled (unmarkFilled takes back what failed).
 */
export function fillFromChunk(vm: usize, snap: usize, slot: u32, k: u32, dst: u64, msgIndex: u32, actions: usize): u32 {
  const ppc = load<u32>(snap + SNAP_PAGES_PER_CHUNK);
  const k0 = k - k % ppc;
  const stored = load<u32>(snap + SNAP_STORED);
  const kEnd = k0 + ppc < stored ? k0 + ppc : stored;
  const data = slotData(<usize>load<u32>(snap + SNAP_CACHE), slot);
  const hostData = load<u64>(snap + SNAP_MEM_BASE) + <u64>data; // the copy source as the kernel sees it
  writeCopy(actions, msgIndex, dst, hostData + <u64>(k - k0) * ZERO_SCAN_PAGE, ZERO_SCAN_PAGE);
  let n: u32 = 1;
  const faultRegion = findRegion(vm, dst);
  if (faultRegion != 0) {
    const base = load<u64>(faultRegion + REGION_BASE);
    const bit = (dst - base) >> 12;
    setBits(load<u32>(faultRegion + REGION_PRESENT), bit, bit + 1, true);
  }
  bump(vm, VM_STAT_COPY, 1);
  bump(vm, VM_STAT_BYTES, ZERO_SCAN_PAGE);
  if ((load<u32>(vm + VM_FLAGS) & FLAG_FILL_AROUND) == 0) return n;
  const toPage = <usize>load<u32>(snap + SNAP_STORED_TO_PAGE);
  // Runs: consecutive stored pages whose pages are consecutive in one region.
  let runDst: u64 = 0;
  let runSrc: u64 = 0;
  let runLen: u64 = 0;
  let runRegion: usize = 0;
  let runFirstBit: u64 = 0;
  for (let j = k0; j < kEnd; j++) {
    const page = <u64>load<u32>(toPage + <usize>j * 4);
    const r = regionOfFilePage(vm, page);
    let take = false;
    let bit: u64 = 0;
    let addr: u64 = 0;
    if (r != 0 && load<u32>(r + REGION_PAGE_SHIFT) == 12) {
      bit = (page * ZERO_SCAN_PAGE - load<u64>(r + REGION_FILE_OFFSET)) >> 12;
      addr = load<u64>(r + REGION_BASE) + (bit << 12);
      take = !testBit(load<u32>(r + REGION_REMOVED), bit) && !testBit(load<u32>(r + REGION_PRESENT), bit);
    }
    if (take && runLen > 0 && r == runRegion && addr == runDst + runLen) {
      runLen += ZERO_SCAN_PAGE;
      continue;
    }
    if (runLen > 0) {
      n = flush(vm, actions, n, msgIndex, runDst, runSrc, runLen, runRegion, runFirstBit);
      runLen = 0;
    }
    if (take) {
      runDst = addr;
      runSrc = hostData + <u64>(j - k0) * ZERO_SCAN_PAGE;
      runLen = ZERO_SCAN_PAGE;
      runRegion = r;
      runFirstBit = bit;
    }
  }
  if (runLen > 0) n = flush(vm, actions, n, msgIndex, runDst, runSrc, runLen, runRegion, runFirstBit);
  return n;
}

function flush(vm: usize, actions: usize, n: u32, msgIndex: u32, dst: u64, src: u64, len: u64, r: usize, firstBit: u64): u32 {
  writeCopy(actions + <usize>n * ACTION_STRIDE, msgIndex, dst, src, len);
  setBits(load<u32>(r + REGION_PRESENT), firstBit, firstBit + (len >> 12), true);
  bump(vm, VM_STAT_FILLED_AROUND, len >> 12);
  bump(vm, VM_STAT_BYTES, len);
  return n + 1;
}

/** Takes back the filled marks of a planned copy that did not happen (EAGAIN). */
export function unmarkFilled(vm: usize, dst: u64, len: u64): void {
  const r = findRegion(vm, dst);
  if (r == 0) return;
  const first = (dst - load<u64>(r + REGION_BASE)) >> 12;
  setBits(load<u32>(r + REGION_PRESENT), first, first + (len >> 12), false);
}

@inline function bump(vm: usize, counter: u32, by: u64): void {
  store<u64>(vm + counter, load<u64>(vm + counter) + by);
}

/**
 * Builds the 2 MiB huge page starting at snapshot page `firstPage` in
 * `staging` from zero pages and decoded chunks. 0, or a negative CHUNK_ERR
 * (the failing chunk is stored at `staging`'s first 4 bytes).
 */
export function assembleHuge(vm: usize, snap: usize, firstPage: u64, staging: usize, scratch: usize, scratchLen: u32): i32 {
  const index = <usize>load<u32>(snap + SNAP_INDEX);
  const pages = <u64>load<u32>(snap + SNAP_PAGES);
  const ppc = load<u32>(snap + SNAP_PAGES_PER_CHUNK);
  const cache = <usize>load<u32>(snap + SNAP_CACHE);
  for (let i: u32 = 0; i < 512; i++) {
    const page = firstPage + <u64>i;
    const out = staging + <usize>i * ZERO_SCAN_PAGE;
    const k = page < pages ? load<u32>(index + <usize>page * 4) : PAGE_ZERO;
    if (k == PAGE_ZERO) {
      memory.fill(out, 0, ZERO_SCAN_PAGE);
      continue;
    }
    const c = k / ppc;
    const slot = chunkAcquire(vm, snap, c, scratch, scratchLen);
    if (slot < 0) {
      store<u32>(staging, c);
      return slot;
    }
    memory.copy(out, slotData(cache, <u32>slot) + <usize>(k % ppc) * ZERO_SCAN_PAGE, ZERO_SCAN_PAGE);
    chunkRelease(snap, <u32>slot);
  }
  return 0;
}
