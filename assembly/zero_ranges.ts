// Zero ranges: the runs of a VM's guest memory whose snapshot pages are all
// zero, long enough to be worth taking out of the userfaultfd altogether
// (src/worker/zero-ranges.ts). A page counts only once it is known to be
// zero (the raw file's zero bitmap, filled by the background scan, or the
// compressed page index), so a run found early may be found longer later.
import {
  VM_NREGIONS, VM_REGIONS, REGION_STRIDE, REGION_BASE, REGION_SIZE, REGION_FILE_OFFSET, VM_ZERO_BITMAP, VM_SRC_SIZE, VM_SNAP,
  SNAP_INDEX, SNAP_PAGES, PAGE_ZERO, UFFDIO_RANGE_START, UFFDIO_RANGE_LEN, UFFDIO_RANGE_SIZE,
} from './layout';
import { testBit } from './bitmap';
import { pageShift } from './page_state';

/** True when snapshot page `page` (4 KiB units) is known to be all zero. */
function knownZero(vm: usize, page: u64): bool {
  const snap = <usize>load<u32>(vm + VM_SNAP);
  if (snap != 0) {
    // Pages past the end of a compressed snapshot also read PAGE_ZERO in a lookup: not here.
    if (page >= <u64>load<u32>(snap + SNAP_PAGES)) return false;
    return load<u32>(<usize>load<u32>(snap + SNAP_INDEX) + <usize>page * 4) == PAGE_ZERO;
  }
  const bitmap = load<u32>(vm + VM_ZERO_BITMAP);
  return bitmap != 0 && testBit(bitmap, page);
}

/** True when region page `p` of region r (4 KiB or 2 MiB) is all zero in the snapshot, every byte of it inside the snapshot. */
function zeroRegionPage(vm: usize, r: usize, p: u64): bool {
  const shift = pageShift(r);
  const fileOff = load<u64>(r + REGION_FILE_OFFSET) + (p << shift);
  if (fileOff + (<u64>1 << shift) > load<u64>(vm + VM_SRC_SIZE)) return false;
  const first = fileOff >> 12;
  const last = first + (<u64>1 << (shift - 12));
  for (let k = first; k < last; k++) if (!knownZero(vm, k)) return false;
  return true;
}

/**
 * A raw snapshot's 4 KiB region page p whose file page starts a bitmap word:
 * that word (32 pages at once, so that a 64 GiB guest is looked through in
 * milliseconds), or -1 when the word cannot be used.
 */
function zeroWord(vm: usize, r: usize, p: u64, pages: u64): i64 {
  if (pageShift(r) != 12 || load<u32>(vm + VM_SNAP) != 0 || p + 32 > pages) return -1;
  const page = (load<u64>(r + REGION_FILE_OFFSET) >> 12) + p;
  const bitmap = <usize>load<u32>(vm + VM_ZERO_BITMAP);
  if ((page & 31) != 0 || bitmap == 0 || (page + 32) << 12 > load<u64>(vm + VM_SRC_SIZE)) return -1;
  return <i64>atomic.load<u32>(bitmap + <usize>((page >> 5) << 2));
}

/**
 * Writes to `out` (uffdio_range structs) the runs of whole region pages that
 * are all zero in the snapshot and at least `minBytes` long, in address
 * order, at most `max` of them; returns how many. Runs are aligned to their
 * region's page size (hugetlbfs unregisters only whole huge pages).
 */
export function zeroRuns(vm: usize, minBytes: u64, out: usize, max: u32): u32 {
  const nr = load<u32>(vm + VM_NREGIONS);
  let n: u32 = 0;
  let r = vm + VM_REGIONS;
  for (let i: u32 = 0; i < nr && n < max; i++, r += REGION_STRIDE) {
    const shift = pageShift(r);
    const pages = load<u64>(r + REGION_SIZE) >> shift;
    const base = load<u64>(r + REGION_BASE);
    let p: u64 = 0;
    while (p < pages && n < max) {
      if (zeroWord(vm, r, p, pages) == 0) {
        p += 32;
        continue;
      }
      if (!zeroRegionPage(vm, r, p)) {
        p++;
        continue;
      }
      const start = p;
      for (;;) {
        if (zeroWord(vm, r, p, pages) == 0xffffffff) p += 32;
        else if (p < pages && zeroRegionPage(vm, r, p)) p++;
        else break;
      }
      const len = (p - start) << shift;
      if (len < minBytes) continue;
      const o = out + <usize>n * UFFDIO_RANGE_SIZE;
      store<u64>(o + UFFDIO_RANGE_START, base + (start << shift));
      store<u64>(o + UFFDIO_RANGE_LEN, len);
      n++;
    }
  }
  return n;
}
