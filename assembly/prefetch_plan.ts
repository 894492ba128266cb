// Prefetch planning: from a range of snapshot pages to a batch of DONTWAKE
// copies (and zeropages) of the runs of pages the VM still lacks. The
// prefetch worker calls it while holding the VM's fence, so no REMOVE is
// read between the check of the bitmaps here and the ioctls that follow.
import {
  VM_SRC_BASE, VM_ZERO_BITMAP, VM_STAT_PREFETCHED, VM_STAT_PREFETCH_ZERO, VM_STAT_PREFETCH_BYTES,
  REGION_BASE, REGION_FILE_OFFSET, REGION_PAGE_SHIFT,
  SNAP_INDEX, SNAP_PAGES, SNAP_PAGES_PER_CHUNK, SNAP_CACHE, SNAP_MEM_BASE, PAGE_ZERO,
  ACTION_STRIDE, ACTION_KIND, ACTION_WAKE, KIND_COPY, KIND_ZEROPAGE,
  STEP_CONSUMED, STEP_KIND, STEP_ARG, STEP_COUNT, STEP_STAGING, STEP_ACTION, STEP_MAX_ACTIONS,
  STEP_NONE, STEP_ACTIONS, STEP_NEED_CHUNK, STEP_NEED_ASSEMBLE, MODE_DONTWAKE, UFFDIO_RANGE_START,
} from './layout';
import { testBit } from './bitmap';
import { regionOfFilePage, isPresent, isRemovedPage, markInstalled } from './page_state';
import { slotData } from './chunk_cache';
import { writeCopy, writeZeropage, describe } from './action';

const SRC_ZERO: u64 = 0xffffffffffffffff;

/**
 * Plans the runs of [first, first + count) snapshot pages (4 KiB units)
 * into `step`: pages present, removed or outside every region are skipped.
 * A batch holds at most STEP_MAX_ACTIONS runs and `maxPages` pages (a zero
 * page counts a quarter: mapping it is that much cheaper), each run one
 * kind. Compressed snapshots: stored pages must come from `chunk`, decoded
 * in cache slot `slot`; a page of another chunk ends the batch, or, first,
 * asks for its chunk (STEP_NEED_CHUNK). A huge page of a compressed
 * snapshot is a batch of its own, copied from the staging buffer once
 * assembled (STEP_NEED_ASSEMBLE; `staged` names the assembled huge page, or -1).
 */
export function prefetchPlan(
  vm: usize, snap: usize, firstPage: u32, count: u32, chunk: i32, slot: i32, staged: i32, maxPages: u32, step: usize,
): void {
  const first = <u64>firstPage;
  const budget = maxPages * 4; // in quarter pages
  let used: u32 = 0;
  let n: u32 = 0;
  let runPages: u32 = 0;
  let runDst: u64 = 0;
  let runSrc: u64 = 0;
  let runRegion: usize = 0;
  let runFirst: u64 = 0;
  let i: u32 = 0;
  store<u32>(step + STEP_KIND, STEP_NONE);
  while (i < count) {
    const page = first + <u64>i;
    const r = regionOfFilePage(vm, page);
    if (r == 0) {
      i++;
      continue;
    }
    const shift = <u64>load<u32>(r + REGION_PAGE_SHIFT);
    const rOff = load<u64>(r + REGION_FILE_OFFSET);
    const bit = ((page << 12) - rOff) >> shift;
    const dst = load<u64>(r + REGION_BASE) + (bit << shift);
    const eligible = !isPresent(r, bit) && !isRemovedPage(r, bit);
    if (shift != 12) {
      // A huge page: a copy of its own, from the file or from an assembled staging page.
      const hugeFirst = (rOff + (bit << shift)) >> 12;
      const pagesLeft = <u32>(hugeFirst + 512 - page);
      if (!eligible) {
        i += pagesLeft;
        continue;
      }
      if (runPages > 0 || n > 0) break;
      let src: u64;
      if (snap == 0) {
        src = load<u64>(vm + VM_SRC_BASE) + (hugeFirst << 12);
      } else if (staged == <i32>hugeFirst) {
        src = load<u64>(step + STEP_STAGING);
      } else {
        return need(step, STEP_NEED_ASSEMBLE, <u32>hugeFirst, i);
      }
      writeAction(step + STEP_ACTION, KIND_COPY, dst, src, <u64>1 << shift, <u32>hugeFirst, 512);
      n = 1;
      i = i + pagesLeft < count ? i + pagesLeft : count;
      break;
    }
    if (!eligible) {
      i++;
      continue;
    }
    // Where the page's bytes are: SRC_ZERO for a zero page.
    let src: u64;
    if (snap == 0) {
      const zeros = load<u32>(vm + VM_ZERO_BITMAP);
      src = zeros != 0 && testBit(zeros, page) ? SRC_ZERO : load<u64>(vm + VM_SRC_BASE) + (page << 12);
    } else {
      const k = page < <u64>load<u32>(snap + SNAP_PAGES) ? load<u32>(<usize>load<u32>(snap + SNAP_INDEX) + <usize>page * 4) : PAGE_ZERO;
      if (k == PAGE_ZERO) {
        src = SRC_ZERO;
      } else {
        const ppc = load<u32>(snap + SNAP_PAGES_PER_CHUNK);
        if (<i32>(k / ppc) != chunk || slot < 0) {
          if (runPages > 0 || n > 0) break;
          return need(step, STEP_NEED_CHUNK, k / ppc, i);
        }
        src = load<u64>(snap + SNAP_MEM_BASE) + <u64>slotData(<usize>load<u32>(snap + SNAP_CACHE), <u32>slot) + <u64>(k % ppc) * 4096;
      }
    }
    const cost: u32 = src == SRC_ZERO ? 1 : 4;
    if (used + cost > budget) break;
    const continues = runPages > 0 && r == runRegion && dst == runDst + (<u64>runPages << 12) &&
      (runSrc == SRC_ZERO ? src == SRC_ZERO : src != SRC_ZERO && src == runSrc + (<u64>runPages << 12));
    if (!continues) {
      if (runPages > 0) {
        flushRun(step, n, runDst, runSrc, runPages, runFirst);
        n++;
        runPages = 0;
        if (n == STEP_MAX_ACTIONS) break;
      }
      runDst = dst;
      runSrc = src;
      runRegion = r;
      runFirst = page;
    }
    runPages++;
    used += cost;
    i++;
  }
  if (runPages > 0) {
    flushRun(step, n, runDst, runSrc, runPages, runFirst);
    n++;
  }
  store<u32>(step + STEP_CONSUMED, i);
  store<u32>(step + STEP_COUNT, n);
  if (n > 0) store<u32>(step + STEP_KIND, STEP_ACTIONS);
}

function need(step: usize, kind: u32, arg: u32, consumed: u32): void {
  store<u32>(step + STEP_KIND, kind);
  store<u32>(step + STEP_ARG, arg);
  store<u32>(step + STEP_CONSUMED, consumed);
  store<u32>(step + STEP_COUNT, 0);
}

function flushRun(step: usize, n: u32, dst: u64, src: u64, pages: u32, firstPage: u64): void {
  const a = step + STEP_ACTION + <usize>n * ACTION_STRIDE;
  const len = <u64>pages << 12;
  if (src == SRC_ZERO) writeAction(a, KIND_ZEROPAGE, dst, 0, len, <u32>firstPage, pages);
  else writeAction(a, KIND_COPY, dst, src, len, <u32>firstPage, pages);
}

/** A DONTWAKE copy or zeropage: the fault worker wakes its own faults. */
function writeAction(a: usize, kind: u32, dst: u64, src: u64, len: u64, filePage: u32, pages: u32): void {
  if (kind == KIND_COPY) writeCopy(a, dst, src, len, MODE_DONTWAKE);
  else writeZeropage(a, dst, len, MODE_DONTWAKE);
  describe(a, filePage, pages, 0, false);
}

/**
 * Records that `doneBytes` of the planned action at `a` are in (the rest
 * failed): marks them present and counts them. Returns the pages marked.
 */
export function prefetchDone(vm: usize, a: usize, doneBytes: u32): u32 {
  const bytes = <u64>doneBytes;
  if (bytes == 0) return 0;
  markInstalled(vm, load<u64>(a + ACTION_WAKE + UFFDIO_RANGE_START), bytes);
  const pages = bytes >> 12;
  const counter = load<u32>(a + ACTION_KIND) == KIND_ZEROPAGE ? VM_STAT_PREFETCH_ZERO : VM_STAT_PREFETCHED;
  store<u64>(vm + counter, load<u64>(vm + counter) + pages);
  if (counter == VM_STAT_PREFETCHED) store<u64>(vm + VM_STAT_PREFETCH_BYTES, load<u64>(vm + VM_STAT_PREFETCH_BYTES) + bytes);
  return <u32>pages;
}
