// Page lookup and fault planning: from a batch of uffd_msg to ready-to-issue
// ioctl structs. Removes are applied before any fault of the same batch, so a
// fault read ahead of the REMOVE that preceded it still gets zeros.
import {
  MSG_SIZE, MSG_EVENT, MSG_PF_ADDRESS, MSG_RM_START, MSG_RM_END, EVENT_PAGEFAULT, EVENT_REMOVE,
  VM_NREGIONS, VM_SRC_BASE, VM_SRC_SIZE, VM_ZERO_SRC, VM_ZERO_BITMAP, VM_STAT_COPY, VM_STAT_ZERO,
  VM_STAT_REMOVED_ZERO, VM_STAT_REMOVE_EVENTS, VM_STAT_OTHER_EVENTS, VM_STAT_BYTES, VM_REGIONS,
  REGION_STRIDE, REGION_BASE, REGION_END, REGION_FILE_OFFSET, REGION_PAGE_SHIFT, REGION_REMOVED,
  ACTION_STRIDE, ACTION_KIND, ACTION_MSG_INDEX, ACTION_IOCTL, ACTION_WAKE, KIND_COPY, KIND_ZEROPAGE, KIND_UNMAPPED,
  VM_SNAP, SNAP_INDEX, SNAP_PAGES, PAGE_ZERO, KIND_CHUNK, KIND_ASSEMBLE,
  REGION_PRESENT, ACTION_FILE_PAGE, ACTION_PAGES, KIND_WAKE, VM_STAT_LATE,
} from './layout';
import { testBit as bitIsSet, setBits } from './bitmap';

/** The region entry holding addr, or 0. Regions are few (2-3), a scan beats a search. */
export function findRegion(vm: usize, addr: u64): usize {
  const n = load<u32>(vm + VM_NREGIONS);
  let r = vm + VM_REGIONS;
  for (let i: u32 = 0; i < n; i++, r += REGION_STRIDE) {
    if (addr >= load<u64>(r + REGION_BASE) && addr < load<u64>(r + REGION_END)) return r;
  }
  return 0;
}

/**
 * Records that [start, end) was removed: every page it touches reads as zeros
 * from now on, and is missing again (the madvise zaps it).
 */
export function applyRemove(vm: usize, start: u64, end: u64): void {
  const n = load<u32>(vm + VM_NREGIONS);
  let r = vm + VM_REGIONS;
  for (let i: u32 = 0; i < n; i++, r += REGION_STRIDE) {
    const base = load<u64>(r + REGION_BASE);
    const rend = load<u64>(r + REGION_END);
    const s = start > base ? start : base;
    const e = end < rend ? end : rend;
    if (s >= e) continue;
    const shift = <u64>load<u32>(r + REGION_PAGE_SHIFT);
    const mask = (<u64>1 << shift) - 1;
    // A partial page cannot be removed by madvise; round outwards to be safe.
    const first = (s - base) >> shift;
    const last = (e - base + mask) >> shift;
    setBits(load<u32>(r + REGION_REMOVED), first, last, true);
    setBits(load<u32>(r + REGION_PRESENT), first, last, false);
  }
}

/** True when the page at addr was removed (tests and the prefetcher). */
export function isRemoved(vm: usize, addr: u64): bool {
  const r = findRegion(vm, addr);
  if (r == 0) return false;
  return bitIsSet(load<u32>(r + REGION_REMOVED), (addr - load<u64>(r + REGION_BASE)) >> <u64>load<u32>(r + REGION_PAGE_SHIFT));
}

@inline function bump(vm: usize, counter: u32, by: u64): void {
  store<u64>(vm + counter, load<u64>(vm + counter) + by);
}

/**
 * Turns `count` uffd_msg at `msgs` into actions at `actions`; returns how many.
 * REMOVE events of the batch are applied first. Faults on a page already
 * planned in this batch are dropped (the first copy wakes every waiter).
 */
export function plan(vm: usize, msgs: usize, count: u32, actions: usize): u32 {
  for (let i: u32 = 0; i < count; i++) {
    const m = msgs + i * MSG_SIZE;
    if (load<u8>(m + MSG_EVENT) == EVENT_REMOVE) {
      applyRemove(vm, load<u64>(m + MSG_RM_START), load<u64>(m + MSG_RM_END));
      bump(vm, VM_STAT_REMOVE_EVENTS, 1);
    }
  }
  let n: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const m = msgs + i * MSG_SIZE;
    const event = load<u8>(m + MSG_EVENT);
    if (event != EVENT_PAGEFAULT) {
      if (event != EVENT_REMOVE) bump(vm, VM_STAT_OTHER_EVENTS, 1);
      continue;
    }
    const addr = load<u64>(m + MSG_PF_ADDRESS);
    const a = actions + n * ACTION_STRIDE;
    store<u32>(a + ACTION_MSG_INDEX, i);
    const r = findRegion(vm, addr);
    if (r == 0) {
      store<u32>(a + ACTION_KIND, KIND_UNMAPPED);
      store<u64>(a + ACTION_IOCTL, addr);
      return n + 1;
    }
    const shift = <u64>load<u32>(r + REGION_PAGE_SHIFT);
    const pageSize = <u64>1 << shift;
    const base = load<u64>(r + REGION_BASE);
    const page = (addr - base) >> shift;
    const dst = base + (page << shift);
    if (alreadyPlanned(actions, n, dst)) continue;
    store<u64>(a + ACTION_WAKE, dst);
    store<u64>(a + ACTION_WAKE + 8, pageSize);
    const io = a + ACTION_IOCTL;
    const fileOff = load<u64>(r + REGION_FILE_OFFSET) + (page << shift);
    store<u32>(a + ACTION_FILE_PAGE, <u32>(fileOff >> 12));
    store<u32>(a + ACTION_PAGES, <u32>(pageSize >> 12));
    const present = load<u32>(r + REGION_PRESENT);
    if (bitIsSet(present, page)) {
      // Installed already (prefetch, fill-around) after this fault was queued: wake the thread.
      store<u32>(a + ACTION_KIND, KIND_WAKE);
      bump(vm, VM_STAT_LATE, 1);
      n++;
      continue;
    }
    // Claimed now, so the prefetch worker leaves it alone; unmarkPlanned takes it back on EAGAIN.
    setBits(present, page, page + 1, true);
    const removed = bitIsSet(load<u32>(r + REGION_REMOVED), page);
    if (!removed && fileOff + pageSize > load<u64>(vm + VM_SRC_SIZE)) {
      // The snapshot is shorter than the region: never invent bytes.
      store<u32>(a + ACTION_KIND, KIND_UNMAPPED);
      store<u64>(a + ACTION_IOCTL, addr);
      return n + 1;
    }
    const snap = <usize>load<u32>(vm + VM_SNAP);
    if (snap != 0 && !removed) {
      // Compressed snapshot: the page index says zero page, or which stored page.
      const filePage = fileOff >> 12;
      const k = filePage < <u64>load<u32>(snap + SNAP_PAGES) ? load<u32>(<usize>load<u32>(snap + SNAP_INDEX) + <usize>filePage * 4) : PAGE_ZERO;
      if (shift == 12 && k == PAGE_ZERO) {
        store<u32>(a + ACTION_KIND, KIND_ZEROPAGE);
        store<u64>(io, dst);
        store<u64>(io + 8, pageSize);
        store<u64>(io + 16, 0);
        store<i64>(io + 24, 0);
        bump(vm, VM_STAT_ZERO, 1);
      } else {
        // The host decodes (chunk_fill.ts) and issues the copies: dst, then the stored page or the first snapshot page.
        store<u32>(a + ACTION_KIND, shift == 12 ? KIND_CHUNK : KIND_ASSEMBLE);
        store<u64>(io, dst);
        store<u64>(io + 8, shift == 12 ? <u64>k : filePage);
        if (shift != 12) {
          // fillFromChunk counts its own copies; an assembled huge page is counted here.
          bump(vm, VM_STAT_COPY, 1);
          bump(vm, VM_STAT_BYTES, pageSize);
        }
      }
    } else if (shift == 12 && (removed || isZeroPage(vm, fileOff))) {
      // uffdio_zeropage { range { start, len }, mode, zeropage }
      store<u32>(a + ACTION_KIND, KIND_ZEROPAGE);
      store<u64>(io, dst);
      store<u64>(io + 8, pageSize);
      store<u64>(io + 16, 0);
      store<i64>(io + 24, 0);
      bump(vm, removed ? VM_STAT_REMOVED_ZERO : VM_STAT_ZERO, 1);
    } else {
      // uffdio_copy { dst, src, len, mode, copy }; hugetlbfs zeros come from a zeroed huge page.
      store<u32>(a + ACTION_KIND, KIND_COPY);
      store<u64>(io, dst);
      store<u64>(io + 8, removed ? load<u64>(vm + VM_ZERO_SRC) : load<u64>(vm + VM_SRC_BASE) + fileOff);
      store<u64>(io + 16, pageSize);
      store<u64>(io + 24, 0);
      store<i64>(io + 32, 0);
      bump(vm, removed ? VM_STAT_REMOVED_ZERO : VM_STAT_COPY, 1);
      bump(vm, VM_STAT_BYTES, pageSize);
    }
    n++;
  }
  return n;
}

/** Takes back the present marks of planned actions [from, count) that were not issued (EAGAIN). */
export function unmarkPlanned(vm: usize, actions: usize, from: u32, count: u32): void {
  for (let j = from; j < count; j++) {
    const a = actions + j * ACTION_STRIDE;
    if (load<u32>(a + ACTION_KIND) == KIND_WAKE) continue;
    const dst = load<u64>(a + ACTION_WAKE);
    const r = findRegion(vm, dst);
    if (r == 0) continue;
    const shift = <u64>load<u32>(r + REGION_PAGE_SHIFT);
    const first = (dst - load<u64>(r + REGION_BASE)) >> shift;
    const len = load<u64>(a + ACTION_WAKE + 8);
    setBits(load<u32>(r + REGION_PRESENT), first, first + ((len + (<u64>1 << shift) - 1) >> shift), false);
  }
}

@inline function alreadyPlanned(actions: usize, n: u32, dst: u64): bool {
  for (let j: u32 = 0; j < n; j++) {
    if (load<u64>(actions + j * ACTION_STRIDE + ACTION_WAKE) == dst) return true;
  }
  return false;
}

@inline function isZeroPage(vm: usize, fileOff: u64): bool {
  const bitmap = load<u32>(vm + VM_ZERO_BITMAP);
  return bitmap != 0 && bitIsSet(bitmap, fileOff >> 12);
}
