// Page state: the one owner of a VM's per-page bits. Every path (fault
// planning, fill-around, prefetch, REMOVE) goes through these transitions,
// each sized by the region's page shift (4 KiB or 2 MiB: one bit a page).
//
// removed: the guest removed the page (a REMOVE was read); it reads as zeros
//   from then on. Never cleared: after a remove the guest's page is zero
//   until the guest itself writes it, and a written page never faults.
// present: installed, or claimed by a fault being served, or left to the
//   kernel (an all-zero range taken out of the userfaultfd: it never
//   faults, never sends a REMOVE, and must never be copied into). Only a hint for
//   the paths that install ahead (fill-around, prefetch) to skip work. It is
//   never trusted to answer a fault: a copy issued after a REMOVE was read
//   can still be zapped by that REMOVE's madvise (PROTOCOL.md), leaving the
//   bit set on a missing page. A fault always gets the real ioctl, and
//   EEXIST says the page really is there.
import {
  VM_NREGIONS, VM_REGIONS, REGION_STRIDE, REGION_BASE, REGION_END, REGION_SIZE, REGION_FILE_OFFSET, REGION_PAGE_SHIFT, REGION_REMOVED, REGION_PRESENT,
  ZERO_SCAN_PAGE,
} from './layout';
import { testBit, setBits } from './bitmap';

/** The region entry holding addr, or 0. Regions are few (2-3), a scan beats a search. */
export function findRegion(vm: usize, addr: u64): usize {
  const n = load<u32>(vm + VM_NREGIONS);
  let r = vm + VM_REGIONS;
  for (let i: u32 = 0; i < n; i++, r += REGION_STRIDE) {
    if (addr >= load<u64>(r + REGION_BASE) && addr < load<u64>(r + REGION_END)) return r;
  }
  return 0;
}

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

@inline export function pageShift(r: usize): u64 {
  return <u64>load<u32>(r + REGION_PAGE_SHIFT);
}

/** The page of region r holding addr (addr inside r). */
@inline export function pageOf(r: usize, addr: u64): u64 {
  return (addr - load<u64>(r + REGION_BASE)) >> pageShift(r);
}

@inline export function isPresent(r: usize, page: u64): bool {
  return testBit(load<u32>(r + REGION_PRESENT), page);
}

@inline export function isRemovedPage(r: usize, page: u64): bool {
  return testBit(load<u32>(r + REGION_REMOVED), page);
}

/** A demand fault plans page `page` of r: claims it; true if it was claimed or installed already (a late fault). */
export function claimForFault(r: usize, page: u64): bool {
  const present = load<u32>(r + REGION_PRESENT);
  const late = testBit(present, page);
  if (!late) setBits(present, page, page + 1, true);
  return late;
}

/** Pages [first, last) of region r are installed, or about to be by a copy planned now. */
export function markInstalledPages(r: usize, first: u64, last: u64): void {
  setBits(load<u32>(r + REGION_PRESENT), first, last, true);
}

/** The whole pages of [dst, dst + len) are in (a copy's done bytes, or EEXIST on the page at dst). */
export function markInstalled(vm: usize, dst: u64, len: u64): void {
  const r = findRegion(vm, dst);
  if (r == 0) return;
  const first = pageOf(r, dst);
  markInstalledPages(r, first, first + (len >> pageShift(r)));
}

/**
 * A planned copy of [dst, dst + len) was not issued (EAGAIN): every page it
 * touches is missing again, so neither side skips it.
 */
export function giveBack(vm: usize, dst: u64, len: u64): void {
  const r = findRegion(vm, dst);
  if (r == 0 || len == 0) return;
  const shift = pageShift(r);
  const first = pageOf(r, dst);
  const last = (dst + len - 1 - load<u64>(r + REGION_BASE)) >> shift;
  setBits(load<u32>(r + REGION_PRESENT), first, last + 1, false);
}

/**
 * A REMOVE of [start, end) was read: every page it touches reads as zeros
 * from now on and is missing again (the madvise zaps it).
 */
export function markRemoved(vm: usize, start: u64, end: u64): void {
  const n = load<u32>(vm + VM_NREGIONS);
  let r = vm + VM_REGIONS;
  for (let i: u32 = 0; i < n; i++, r += REGION_STRIDE) {
    const base = load<u64>(r + REGION_BASE);
    const rend = load<u64>(r + REGION_END);
    const s = start > base ? start : base;
    const e = end < rend ? end : rend;
    if (s >= e) continue;
    const shift = pageShift(r);
    const mask = (<u64>1 << shift) - 1;
    // A partial page cannot be removed by madvise; round outwards to be safe.
    const first = (s - base) >> shift;
    const last = (e - base + mask) >> shift;
    setBits(load<u32>(r + REGION_REMOVED), first, last, true);
    setBits(load<u32>(r + REGION_PRESENT), first, last, false);
  }
}

/**
 * [start, start + len) was unregistered from the userfaultfd (an all-zero
 * range, src/worker/zero-ranges.ts): the kernel serves it from now on, so
 * prefetch and fill-around must skip it. No REMOVE will ever clear the bits.
 */
export function markUnregistered(vm: usize, start: u64, len: u64): void {
  markInstalled(vm, start, len);
}

/** True when the page at addr was removed (tests and the prefetcher). */
export function isRemoved(vm: usize, addr: u64): bool {
  const r = findRegion(vm, addr);
  return r != 0 && isRemovedPage(r, pageOf(r, addr));
}

/** The page at addr is in: a copy found it there (EEXIST). */
export function markPresent(vm: usize, addr: u64): void {
  const r = findRegion(vm, addr);
  if (r == 0) return;
  const page = pageOf(r, addr);
  markInstalledPages(r, page, page + 1);
}

/** 1 when the snapshot page (4 KiB units) is installed in the VM, or being installed; policies ask. */
export function isPagePresent(vm: usize, filePage: u32): u32 {
  const r = regionOfFilePage(vm, <u64>filePage);
  if (r == 0) return 0;
  return isPresent(r, ((<u64>filePage << 12) - load<u64>(r + REGION_FILE_OFFSET)) >> pageShift(r)) ? 1 : 0;
}
