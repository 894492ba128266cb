// Writing an action: the ready ioctl struct the host passes to the kernel,
// and the range to wake once it is done (or found done: EEXIST).
import {
  ACTION_KIND, ACTION_IOCTL, ACTION_WAKE, ACTION_FILE_PAGE, ACTION_PAGES, ACTION_STAT, ACTION_LATE, KIND_COPY, KIND_ZEROPAGE,
  UFFDIO_COPY_DST, UFFDIO_COPY_SRC, UFFDIO_COPY_LEN, UFFDIO_COPY_MODE, UFFDIO_COPY_COPY,
  UFFDIO_ZEROPAGE_START, UFFDIO_ZEROPAGE_LEN, UFFDIO_ZEROPAGE_MODE, UFFDIO_ZEROPAGE_ZEROPAGE, UFFDIO_RANGE_START, UFFDIO_RANGE_LEN,
} from './layout';

/** The range UFFDIO_WAKE wakes once the action is done, or found done (EEXIST). */
@inline export function writeWake(a: usize, dst: u64, len: u64): void {
  store<u64>(a + ACTION_WAKE + UFFDIO_RANGE_START, dst);
  store<u64>(a + ACTION_WAKE + UFFDIO_RANGE_LEN, len);
}

/** uffdio_copy { dst, src, len, mode, copy }. */
export function writeCopy(a: usize, dst: u64, src: u64, len: u64, mode: u64): void {
  store<u32>(a + ACTION_KIND, KIND_COPY);
  const io = a + ACTION_IOCTL;
  store<u64>(io + UFFDIO_COPY_DST, dst);
  store<u64>(io + UFFDIO_COPY_SRC, src);
  store<u64>(io + UFFDIO_COPY_LEN, len);
  store<u64>(io + UFFDIO_COPY_MODE, mode);
  store<i64>(io + UFFDIO_COPY_COPY, 0);
  writeWake(a, dst, len);
}

/** uffdio_zeropage { range { start, len }, mode, zeropage }. */
export function writeZeropage(a: usize, dst: u64, len: u64, mode: u64): void {
  store<u32>(a + ACTION_KIND, KIND_ZEROPAGE);
  const io = a + ACTION_IOCTL;
  store<u64>(io + UFFDIO_ZEROPAGE_START, dst);
  store<u64>(io + UFFDIO_ZEROPAGE_LEN, len);
  store<u64>(io + UFFDIO_ZEROPAGE_MODE, mode);
  store<i64>(io + UFFDIO_ZEROPAGE_ZEROPAGE, 0);
  writeWake(a, dst, len);
}

/** What the action means for traces, policies and counters (settle). */
export function describe(a: usize, filePage: u32, pages: u32, stat: u32, late: bool): void {
  store<u32>(a + ACTION_FILE_PAGE, filePage);
  store<u32>(a + ACTION_PAGES, pages);
  store<u32>(a + ACTION_STAT, stat);
  store<u32>(a + ACTION_LATE, late ? 1 : 0);
}
