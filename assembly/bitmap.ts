// Page bitmaps (removed, present, zero): one bit a page, u32 words, updated
// with atomics because the fault and prefetch workers share them.

@inline export function testBit(bitmap: usize, bit: u64): bool {
  return (atomic.load<u32>(bitmap + <usize>((bit >> 5) << 2)) & (<u32>1 << <u32>(bit & 31))) != 0;
}

/** Sets (on) or clears bits [first, last); whole words at once in the middle. */
export function setBits(bitmap: usize, first: u64, last: u64, on: bool): void {
  let b = first;
  while (b < last && (b & 31) != 0) {
    flip(bitmap, b, on);
    b++;
  }
  while (b + 32 <= last) {
    atomic.store<u32>(bitmap + <usize>((b >> 5) << 2), on ? 0xffffffff : 0);
    b += 32;
  }
  while (b < last) {
    flip(bitmap, b, on);
    b++;
  }
}

@inline function flip(bitmap: usize, b: u64, on: bool): void {
  const w = bitmap + <usize>((b >> 5) << 2);
  const m = <u32>1 << <u32>(b & 31);
  if (on) atomic.or<u32>(w, m);
  else atomic.and<u32>(w, ~m);
}
