// Finds all-zero 4 KiB pages in a buffer of snapshot bytes and marks them in
// the snapshot's zero bitmap, so their faults become UFFDIO_ZEROPAGE.
import { ZERO_SCAN_PAGE } from './layout';

function pageIsZero(p: usize): bool {
  let acc = i64x2.splat(0);
  for (let off: usize = 0; off < ZERO_SCAN_PAGE; off += 64) {
    acc = v128.or(acc, v128.or(
      v128.or(v128.load(p + off), v128.load(p + off + 16)),
      v128.or(v128.load(p + off + 32), v128.load(p + off + 48))));
  }
  return !v128.any_true(acc);
}

/**
 * Scans `len` bytes at `buf` (whole pages) that hold snapshot pages from
 * `firstPage` on; sets their bits in `bitmap` when zero. Returns the zero count.
 */
export function scanZeroPages(buf: usize, len: u32, bitmap: usize, firstPage: u64): u32 {
  let zeros: u32 = 0;
  const pages = len / ZERO_SCAN_PAGE;
  for (let i: u32 = 0; i < pages; i++) {
    if (pageIsZero(buf + <usize>i * ZERO_SCAN_PAGE)) {
      const bit = firstPage + <u64>i;
      atomic.or<u32>(bitmap + <usize>((bit >> 5) << 2), <u32>1 << <u32>(bit & 31));
      zeros++;
    }
  }
  return zeros;
}

/** Marks pages [first, last) zero: holes found with SEEK_HOLE. */
export function markZeroPages(bitmap: usize, first: u64, last: u64): void {
  for (let b = first; b < last; b++) {
    atomic.or<u32>(bitmap + <usize>((b >> 5) << 2), <u32>1 << <u32>(b & 31));
  }
}
