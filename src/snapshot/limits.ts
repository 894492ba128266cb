// The most memory snapfault serves. Snapshot pages (4 KiB) are numbered in 32
// bits wherever they travel: fault actions (ACTION_FILE_PAGE in
// assembly/layout.ts), the fault feed, the prefetch policy interface and
// trace records. Memory of 2^32 pages (16 TiB) or more would have its page
// numbers cut short without a word, so it is refused where it comes in: the
// memory file when it is opened, each handshake region when it is checked.
//
// No Firecracker VM is known to come near this: its full snapshot would be a
// 16 TiB file, and on x86 a guest's memory must also fit the host's physical
// address width, which many CPUs keep far below (39 bits: 512 GiB). We found
// no Firecracker check that forbids it, though, so the limit is checked here
// rather than assumed.

/** Memory from this many bytes on cannot be served: 2^32 pages of 4 KiB. */
export const MEMORY_LIMIT_BYTES = 1n << 44n;

/** What to say when memory reaches the limit; one line, with what to do. */
export const MEMORY_LIMIT_TEXT =
  'snapfault numbers 4 KiB pages in 32 bits (fault actions, prefetch, traces), so it serves memory below 16 TiB (2^32 pages); ' +
  'give the VM less memory, or serve it with another handler';

/** True when memory ending at byte `end` has page numbers past 32 bits (or is exactly 2^32 pages: their count would not fit). */
export function reachesMemoryLimit(end: bigint): boolean {
  return end >= MEMORY_LIMIT_BYTES;
}
