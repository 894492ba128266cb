// Fault planning: from a batch of uffd_msg to ready-to-issue ioctl structs.
// Removes are applied before any fault of the same batch, so a fault read
// ahead of the REMOVE that preceded it still gets zeros. Every fault gets a
// real ioctl (page_state.ts says why); counters move only once an action is
// done (settle), so a retry after EAGAIN counts nothing twice.
import {
  MSG_SIZE, MSG_EVENT, MSG_PF_ADDRESS, MSG_RM_START, MSG_RM_END, EVENT_PAGEFAULT, EVENT_REMOVE,
  VM_SRC_BASE, VM_SRC_SIZE, VM_ZERO_SRC, VM_ZERO_BITMAP, VM_STAT_COPY, VM_STAT_ZERO,
  VM_STAT_REMOVED_ZERO, VM_STAT_REMOVE_EVENTS, VM_STAT_OTHER_EVENTS, VM_STAT_BYTES, VM_STAT_LATE, VM_STAT_FILLED_AROUND,
  REGION_BASE, REGION_FILE_OFFSET, ACTION_STRIDE, ACTION_KIND, ACTION_MSG_INDEX, ACTION_IOCTL, ACTION_WAKE,
  ACTION_PAGES, ACTION_STAT, ACTION_LATE, KIND_COPY, KIND_UNMAPPED, VM_SNAP, SNAP_INDEX, SNAP_PAGES, PAGE_ZERO,
  KIND_CHUNK, KIND_ASSEMBLE, UFFDIO_COPY_DST, UFFDIO_COPY_SRC, UFFDIO_COPY_LEN, UFFDIO_RANGE_START, UFFDIO_RANGE_LEN,
} from './layout';
import { testBit } from './bitmap';
import { findRegion, pageShift, claimForFault, isRemovedPage, markRemoved, giveBack } from './page_state';
import { writeCopy, writeZeropage, writeWake, describe } from './action';

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
      markRemoved(vm, load<u64>(m + MSG_RM_START), load<u64>(m + MSG_RM_END));
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
    if (r == 0) return unmapped(a, addr, n);
    const shift = pageShift(r);
    const pageSize = <u64>1 << shift;
    const base = load<u64>(r + REGION_BASE);
    const page = (addr - base) >> shift;
    const dst = base + (page << shift);
    if (alreadyPlanned(actions, n, dst)) continue;
    const fileOff = load<u64>(r + REGION_FILE_OFFSET) + (page << shift);
    const removed = isRemovedPage(r, page);
    // The snapshot is shorter than the region: never invent bytes.
    if (!removed && fileOff + pageSize > load<u64>(vm + VM_SRC_SIZE)) return unmapped(a, addr, n);
    const late = claimForFault(r, page);
    const filePage = <u32>(fileOff >> 12);
    const pages = <u32>(pageSize >> 12);
    const snap = <usize>load<u32>(vm + VM_SNAP);
    if (snap != 0 && !removed) {
      // Compressed snapshot: the page index says zero page, or which stored page.
      const k = <u64>filePage < <u64>load<u32>(snap + SNAP_PAGES) ? load<u32>(<usize>load<u32>(snap + SNAP_INDEX) + <usize>filePage * 4) : PAGE_ZERO;
      if (shift == 12 && k == PAGE_ZERO) {
        writeZeropage(a, dst, pageSize, 0);
        describe(a, filePage, pages, VM_STAT_ZERO, late);
      } else {
        // The host decodes (chunk_fill.ts) and issues the copies: dst, then the stored page or the first snapshot page.
        store<u32>(a + ACTION_KIND, shift == 12 ? KIND_CHUNK : KIND_ASSEMBLE);
        store<u64>(a + ACTION_IOCTL + UFFDIO_COPY_DST, dst);
        store<u64>(a + ACTION_IOCTL + UFFDIO_COPY_SRC, shift == 12 ? <u64>k : <u64>filePage);
        writeWake(a, dst, pageSize);
        describe(a, filePage, pages, VM_STAT_COPY, late);
      }
    } else if (shift == 12 && (removed || isZeroPage(vm, fileOff))) {
      writeZeropage(a, dst, pageSize, 0);
      describe(a, filePage, pages, removed ? VM_STAT_REMOVED_ZERO : VM_STAT_ZERO, late);
    } else {
      // hugetlbfs has no ZEROPAGE: its zeros come from a zeroed huge page.
      writeCopy(a, dst, removed ? load<u64>(vm + VM_ZERO_SRC) : load<u64>(vm + VM_SRC_BASE) + fileOff, pageSize, 0);
      describe(a, filePage, pages, removed ? VM_STAT_REMOVED_ZERO : VM_STAT_COPY, late);
    }
    n++;
  }
  return n;
}

function unmapped(a: usize, addr: u64, n: u32): u32 {
  store<u32>(a + ACTION_KIND, KIND_UNMAPPED);
  store<u64>(a + ACTION_IOCTL, addr);
  return n + 1;
}

/**
 * Counts a done action: a late fault (its page was installed ahead) as late,
 * any other by its resolution; and the bytes it copied (`copied`: 0 when the
 * page was there already, EEXIST).
 */
export function settle(vm: usize, a: usize, copied: bool): void {
  const stat = load<u32>(a + ACTION_STAT);
  if (load<u32>(a + ACTION_LATE) != 0) bump(vm, VM_STAT_LATE, 1);
  else if (stat != 0) bump(vm, stat, stat == VM_STAT_FILLED_AROUND ? <u64>load<u32>(a + ACTION_PAGES) : 1);
  if (copied && load<u32>(a + ACTION_KIND) == KIND_COPY) bump(vm, VM_STAT_BYTES, load<u64>(a + ACTION_IOCTL + UFFDIO_COPY_LEN));
}

/**
 * Gives back the pages that planned actions [from, count) claimed and did
 * not install (EAGAIN). A late fault claimed nothing: its page was marked by
 * whoever installed it.
 */
export function unmarkPlanned(vm: usize, actions: usize, from: u32, count: u32): void {
  for (let j = from; j < count; j++) {
    const a = actions + j * ACTION_STRIDE;
    if (load<u32>(a + ACTION_KIND) == KIND_UNMAPPED || load<u32>(a + ACTION_LATE) != 0) continue;
    giveBack(vm, load<u64>(a + ACTION_WAKE + UFFDIO_RANGE_START), load<u64>(a + ACTION_WAKE + UFFDIO_RANGE_LEN));
  }
}

/**
 * After EAGAIN: moves the page faults among messages [from, count) to the
 * front of `msgs` and returns how many. Removes of the batch were applied
 * already and must not be kept: kept, they would be applied and counted again
 * on every retry and fill the buffer until no new event can be read, and the
 * unread REMOVE that causes the EAGAIN would then never be read (a livelock).
 */
export function keepFaults(msgs: usize, from: u32, count: u32): u32 {
  let kept: u32 = 0;
  for (let i = from; i < count; i++) {
    const m = msgs + i * MSG_SIZE;
    if (load<u8>(m + MSG_EVENT) != EVENT_PAGEFAULT) continue;
    if (i != kept) memory.copy(msgs + kept * MSG_SIZE, m, MSG_SIZE);
    kept++;
  }
  return kept;
}

@inline function alreadyPlanned(actions: usize, n: u32, dst: u64): bool {
  for (let j: u32 = 0; j < n; j++) {
    if (load<u64>(actions + j * ACTION_STRIDE + ACTION_WAKE + UFFDIO_RANGE_START) == dst) return true;
  }
  return false;
}

@inline function isZeroPage(vm: usize, fileOff: u64): bool {
  const bitmap = load<u32>(vm + VM_ZERO_BITMAP);
  return bitmap != 0 && testBit(bitmap, fileOff >> 12);
}
