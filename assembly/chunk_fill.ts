// Serving faults of a compressed snapshot from a decoded chunk: the faulting
// page first, then (fill-around) every other page stored in the chunk that
// this VM still lacks, in as few multi-page UFFDIO_COPYs as possible.
import {
  VM_FLAGS, FLAG_FILL_AROUND, VM_STAT_FILLED_AROUND, VM_STAT_COPY,
  REGION_BASE, REGION_FILE_OFFSET, REGION_PAGE_SHIFT,
  SNAP_PAGES_PER_CHUNK, SNAP_STORED, SNAP_STORED_TO_PAGE, SNAP_INDEX, SNAP_PAGES, SNAP_CACHE, SNAP_MEM_BASE, PAGE_ZERO,
  ACTION_STRIDE, ACTION_MSG_INDEX, ACTION_IOCTL, ACTION_FILE_PAGE, ACTION_LATE, ZERO_SCAN_PAGE,
  UFFDIO_COPY_DST, UFFDIO_COPY_SRC,
} from './layout';
import { slotData, chunkAcquire, chunkRelease } from './chunk_cache';
import { regionOfFilePage, isPresent, isRemovedPage, markInstalledPages } from './page_state';
import { writeCopy, describe } from './action';

/**
 * Copy actions at `out` for the planned KIND_CHUNK action `act`, whose chunk
 * sits decoded in cache slot `slot`: the faulting page first, then the runs
 * of the chunk's other pages that are neither removed nor installed. Marks
 * the pages it plans installed (the host gives back what fails: giveBack).
 */
export function fillFromChunk(vm: usize, snap: usize, slot: u32, act: usize, out: usize): u32 {
  const dst = load<u64>(act + ACTION_IOCTL + UFFDIO_COPY_DST);
  const k = <u32>load<u64>(act + ACTION_IOCTL + UFFDIO_COPY_SRC);
  const msgIndex = load<u32>(act + ACTION_MSG_INDEX);
  const ppc = load<u32>(snap + SNAP_PAGES_PER_CHUNK);
  const k0 = k - k % ppc;
  const stored = load<u32>(snap + SNAP_STORED);
  const kEnd = k0 + ppc < stored ? k0 + ppc : stored;
  const data = slotData(<usize>load<u32>(snap + SNAP_CACHE), slot);
  const hostData = load<u64>(snap + SNAP_MEM_BASE) + <u64>data; // the copy source as the kernel sees it
  writeCopy(out, dst, hostData + <u64>(k - k0) * ZERO_SCAN_PAGE, ZERO_SCAN_PAGE, 0);
  store<u32>(out + ACTION_MSG_INDEX, msgIndex);
  describe(out, load<u32>(act + ACTION_FILE_PAGE), 1, VM_STAT_COPY, load<u32>(act + ACTION_LATE) != 0);
  let n: u32 = 1;
  if ((load<u32>(vm + VM_FLAGS) & FLAG_FILL_AROUND) == 0) return n;
  const toPage = <usize>load<u32>(snap + SNAP_STORED_TO_PAGE);
  // Runs: consecutive stored pages whose pages are consecutive in one region.
  let runDst: u64 = 0;
  let runSrc: u64 = 0;
  let runLen: u64 = 0;
  let runRegion: usize = 0;
  let runFirstBit: u64 = 0;
  let runFilePage: u64 = 0;
  for (let j = k0; j < kEnd; j++) {
    const page = <u64>load<u32>(toPage + <usize>j * 4);
    const r = regionOfFilePage(vm, page);
    let take = false;
    let bit: u64 = 0;
    let addr: u64 = 0;
    if (r != 0 && load<u32>(r + REGION_PAGE_SHIFT) == 12) {
      bit = (page * ZERO_SCAN_PAGE - load<u64>(r + REGION_FILE_OFFSET)) >> 12;
      addr = load<u64>(r + REGION_BASE) + (bit << 12);
      take = !isRemovedPage(r, bit) && !isPresent(r, bit);
    }
    if (take && runLen > 0 && r == runRegion && addr == runDst + runLen) {
      runLen += ZERO_SCAN_PAGE;
      continue;
    }
    if (runLen > 0) {
      n = flush(out, n, msgIndex, runDst, runSrc, runLen, runRegion, runFirstBit, runFilePage);
      runLen = 0;
    }
    if (take) {
      runDst = addr;
      runSrc = hostData + <u64>(j - k0) * ZERO_SCAN_PAGE;
      runLen = ZERO_SCAN_PAGE;
      runRegion = r;
      runFirstBit = bit;
      runFilePage = page;
    }
  }
  if (runLen > 0) n = flush(out, n, msgIndex, runDst, runSrc, runLen, runRegion, runFirstBit, runFilePage);
  return n;
}

function flush(out: usize, n: u32, msgIndex: u32, dst: u64, src: u64, len: u64, r: usize, firstBit: u64, filePage: u64): u32 {
  const a = out + <usize>n * ACTION_STRIDE;
  writeCopy(a, dst, src, len, 0);
  store<u32>(a + ACTION_MSG_INDEX, msgIndex);
  describe(a, <u32>filePage, <u32>(len >> 12), VM_STAT_FILLED_AROUND, false);
  markInstalledPages(r, firstBit, firstBit + (len >> 12));
  return n + 1;
}

/**
 * Builds the 2 MiB huge page starting at snapshot page `firstPage` in
 * `staging` from zero pages and decoded chunks. 0, or a negative CHUNK_ERR
 * (the failing chunk is stored at `staging`'s first 4 bytes).
 */
export function assembleHuge(vm: usize, snap: usize, firstPage: u64, staging: usize, scratch: usize, scratchLen: u32, owner: u32): i32 {
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
    const slot = chunkAcquire(vm, snap, c, scratch, scratchLen, owner);
    if (slot < 0) {
      store<u32>(staging, c);
      return slot;
    }
    memory.copy(out, slotData(cache, <u32>slot) + <usize>(k % ppc) * ZERO_SCAN_PAGE, ZERO_SCAN_PAGE);
    chunkRelease(snap, <u32>slot);
  }
  return 0;
}

/** Turns the planned KIND_ASSEMBLE action `act` into the copy of its huge page, assembled at host address `staging`. */
export function copyAssembled(act: usize, staging: u64, len: u64): void {
  writeCopy(act, load<u64>(act + ACTION_IOCTL + UFFDIO_COPY_DST), staging, len, 0);
}
