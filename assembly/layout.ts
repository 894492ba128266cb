// The explicit memory layout shared by the host and the core. The host reads
// these constants from the module's exports, so there is one source of truth.
// Nothing here allocates: the host carves every block out of shared memory and
// passes its offset in, because several threads run this code at once.

// uffd_msg (linux/userfaultfd.h), 32 bytes.
export const MSG_SIZE: u32 = 32;
export const MSG_EVENT: u32 = 0;
export const MSG_PF_FLAGS: u32 = 8;
export const MSG_PF_ADDRESS: u32 = 16;
export const MSG_RM_START: u32 = 8;
export const MSG_RM_END: u32 = 16;
export const EVENT_PAGEFAULT: u8 = 0x12;
export const EVENT_REMOVE: u8 = 0x15;

// VM table: a header, then one entry per guest memory region.
export const VM_NREGIONS: u32 = 0; // u32
export const VM_FLAGS: u32 = 4; // u32
export const FLAG_FILL_AROUND: u32 = 1; // compressed: install a decoded chunk's other missing pages too
export const FLAG_PREFETCH: u32 = 2; // a prefetch worker copies into this VM too: reads of the uffd go through the fence
export const VM_SRC_BASE: u32 = 8; // u64: address of the snapshot's bytes in the handler
export const VM_SRC_SIZE: u32 = 16; // u64: bytes available there
export const VM_ZERO_SRC: u32 = 24; // u64: address of a zeroed huge page (hugetlbfs has no ZEROPAGE)
export const VM_ZERO_BITMAP: u32 = 32; // u32: per-4KiB-page bitmap of all-zero snapshot pages, 0 if none
export const VM_STAT_COPY: u32 = 40; // u64 counters, written by the one worker that serves the VM
export const VM_STAT_ZERO: u32 = 48;
export const VM_STAT_REMOVED_ZERO: u32 = 56;
export const VM_STAT_REMOVE_EVENTS: u32 = 64;
export const VM_STAT_OTHER_EVENTS: u32 = 72;
export const VM_STAT_BYTES: u32 = 80;
// The fence between the fault worker's read of the uffd (which may carry a
// REMOVE) and the prefetch worker's copies: never both at once, so a page
// planned for prefetch before a REMOVE is applied is copied before the
// madvise that removes it can proceed (docs/prefetch.md).
export const VM_FENCE_READ: u32 = 112; // i32: 1 while the fault worker reads and applies removes
export const VM_FENCE_COPY: u32 = 116; // i32: 1 while the prefetch worker plans and copies
export const VM_FENCE_READ_WAITERS: u32 = 120; // i32
export const VM_FENCE_COPY_WAITERS: u32 = 124; // i32
// Prefetch counters, written by the prefetch worker alone.
export const VM_STAT_PREFETCHED: u32 = 128; // u64 pages (4 KiB units) copied ahead of the guest
export const VM_STAT_PREFETCH_ZERO: u32 = 136; // u64 zero pages mapped ahead of the guest
export const VM_STAT_PREFETCH_BYTES: u32 = 144; // u64
// Written by the fault worker: faults on a page already installed (by prefetch or fill-around), only woken.
export const VM_STAT_LATE: u32 = 152; // u64
// Demand first: 1 while the fault worker serves a batch of faults, from its
// wake-up to its last ioctl. Not part of the REMOVE fence (that is READ and
// COPY): a priority. The prefetch worker starts no batch, and issues no
// further copy of the one in hand, while it is set (src/vm/fence.ts).
export const VM_FENCE_DEMAND: u32 = 160; // i32
export const VM_FENCE_DEMAND_WAITERS: u32 = 164; // i32
export const VM_REGIONS: u32 = 192;
export const VM_MAX_REGIONS: u32 = 64;

export const REGION_STRIDE: u32 = 48;
export const REGION_BASE: u32 = 0; // u64 host virtual address
export const REGION_SIZE: u32 = 8; // u64
export const REGION_END: u32 = 16; // u64 base + size
export const REGION_FILE_OFFSET: u32 = 24; // u64
export const REGION_PAGE_SHIFT: u32 = 32; // u32
export const REGION_REMOVED: u32 = 36; // u32 offset of the removed-pages bitmap (1 bit a page)
export const REGION_PRESENT: u32 = 40; // u32 offset of the present-pages bitmap: installed, or being installed by a demand fault

export const VM_TABLE_SIZE: u32 = VM_REGIONS + VM_MAX_REGIONS * REGION_STRIDE;

// The kernel's ioctl structs (linux/userfaultfd.h; test/unit/native-abi checks them against the header).
export const UFFDIO_COPY_DST: u32 = 0; // u64
export const UFFDIO_COPY_SRC: u32 = 8; // u64
export const UFFDIO_COPY_LEN: u32 = 16; // u64
export const UFFDIO_COPY_MODE: u32 = 24; // u64
export const UFFDIO_COPY_COPY: u32 = 32; // s64: bytes copied, or a negative errno
export const UFFDIO_COPY_SIZE: u32 = 40;
export const UFFDIO_ZEROPAGE_START: u32 = 0; // u64 (range.start)
export const UFFDIO_ZEROPAGE_LEN: u32 = 8; // u64 (range.len)
export const UFFDIO_ZEROPAGE_MODE: u32 = 16; // u64
export const UFFDIO_ZEROPAGE_ZEROPAGE: u32 = 24; // s64: bytes mapped, or a negative errno
export const UFFDIO_ZEROPAGE_SIZE: u32 = 32;
export const UFFDIO_RANGE_START: u32 = 0; // u64
export const UFFDIO_RANGE_LEN: u32 = 8; // u64
export const UFFDIO_RANGE_SIZE: u32 = 16;

// Action: what the host must do for one fault; the ioctl struct is ready to pass.
export const ACTION_STRIDE: u32 = 80;
export const ACTION_KIND: u32 = 0; // u32
export const ACTION_MSG_INDEX: u32 = 4; // u32: the uffd_msg this action answers
export const ACTION_IOCTL: u32 = 8; // uffdio_copy (40 bytes) or uffdio_zeropage (32 bytes)
export const ACTION_WAKE: u32 = 48; // uffdio_range for UFFDIO_WAKE after EEXIST
export const ACTION_FILE_PAGE: u32 = 64; // u32: the snapshot page (4 KiB units) at dst, for traces and policies
export const ACTION_PAGES: u32 = 68; // u32: 4 KiB pages the action installs
export const ACTION_STAT: u32 = 72; // u32: the VM table counter the action counts in once done (settle)
export const ACTION_LATE: u32 = 76; // u32: 1 if the page was installed or claimed already when the fault was planned
export const KIND_COPY: u32 = 1;
export const KIND_ZEROPAGE: u32 = 2;
export const KIND_UNMAPPED: u32 = 3; // a fault outside every region: fatal for the VM

export const ZERO_SCAN_PAGE: u32 = 4096;

// --- Compressed snapshots (docs/format.md) ---

// A VM table field: the snapshot descriptor of a compressed snapshot (0 for a raw file).
export const VM_SNAP: u32 = 36; // u32
export const VM_STAT_CHUNK_HITS: u32 = 88; // u64
export const VM_STAT_CHUNK_MISSES: u32 = 96; // u64
export const VM_STAT_FILLED_AROUND: u32 = 104; // u64 pages installed ahead of a fault from a decoded chunk

// Page index entries.
export const PAGE_ZERO: u32 = 0xffffffff;

// Snapshot descriptor of a compressed snapshot, written by the host once per file.
export const SNAP_FD: u32 = 0; // i32 file descriptor (the host's pread import reads it)
export const SNAP_PAGES: u32 = 4; // u32 pages in the original memory file
export const SNAP_PAGES_PER_CHUNK: u32 = 8; // u32
export const SNAP_CHUNKS: u32 = 12; // u32 chunk count
export const SNAP_STORED: u32 = 16; // u32 stored (unique, non-zero) pages
export const SNAP_INDEX: u32 = 20; // u32 offset of the page index: pages x u32
export const SNAP_CHUNK_TABLE: u32 = 24; // u32 offset of the chunk table: chunks x CHUNK_ENTRY
export const SNAP_STORED_TO_PAGE: u32 = 28; // u32 offset: stored page -> first page holding it
export const SNAP_CACHE: u32 = 32; // u32 offset of the decoded-chunk cache
export const SNAP_CODEC: u32 = 36; // u32
export const SNAP_MEM_BASE: u32 = 40; // u64 where shared memory starts in the handler's address space: UFFDIO_COPY takes real addresses
export const SNAP_NAMES: u32 = 48; // u32 offset of the chunks' names (CHUNK_NAME_BYTES each) of a snapshot in a store, 0 for a compressed file
export const SNAP_NAMED_READS: u32 = 52; // u32, atomic: a store's chunks read from their files (from a bucket: disk cache hits), by any thread
export const SNAP_NAMED_ABSENT: u32 = 56; // u32, atomic: reads that found no file (from a bucket: disk cache misses, each then fetched)
export const SNAP_SIZE: u32 = 64;
// A store's chunk is named by the SHA-256 of its decoded bytes (src/store/): its file is found and checked by name.
export const CHUNK_NAME_BYTES: u32 = 32;

export const CHUNK_ENTRY: u32 = 16;
export const CHUNK_OFFSET: u32 = 0; // u64 absolute offset in the file
export const CHUNK_LENGTH: u32 = 8; // u32 stored length; bit 31 set: stored raw
export const CHUNK_CHECKSUM: u32 = 12; // u32 xxh32 of the decoded chunk
export const CHUNK_RAW_FLAG: u32 = 0x80000000;

// Decoded-chunk cache: a header, `ways`-way sets of slot headers, then slot data.
export const CACHE_SETS: u32 = 0; // u32
export const CACHE_WAYS: u32 = 4; // u32
export const CACHE_SLOT_BYTES: u32 = 8; // u32 decoded chunk size plus decoder slack
export const CACHE_DATA: u32 = 12; // u32 offset of slot 0's data
export const CACHE_CLOCK: u32 = 16; // u32 use counter
export const CACHE_SLOTS: u32 = 64;
export const SLOT_STRIDE: u32 = 16;
export const SLOT_LOCK: u32 = 0; // u32 0 free, else the holder's owner id (OWNER_*)
export const SLOT_TAG: u32 = 4; // u32 chunk + 1 (TAG_LOADING set while it is decoded), 0 when empty
export const SLOT_USED: u32 = 8; // u32 clock value of the last use
export const SLOT_SET_LOCK: u32 = 12; // u32, in a set's first slot: held while a miss claims a way of the set
export const TAG_LOADING: u32 = 0x80000000;
// Lock owners: fault workers 1..OWNER_DECODE_AHEAD-1, the main thread decoding ahead (src/snapshot/decode-ahead.ts), and the prefetch worker.
export const OWNER_DECODE_AHEAD: u32 = 0xfffd;
export const OWNER_PREFETCH: u32 = 0xfffe;

// Errors of chunk loading (negative results).
export const CHUNK_ERR_IO: i32 = -1;
export const CHUNK_ERR_CHECKSUM: i32 = -2;
export const CHUNK_ERR_DECODE: i32 = -3;
export const CHUNK_ERR_RANGE: i32 = -4;
export const CHUNK_ERR_NAME: i32 = -5; // decoded, but its SHA-256 is not its name: a wrong or tampered object in the store
export const CHUNK_ERR_ABSENT: i32 = -6; // a store chunk's file is not there (ENOENT): from a bucket, not in the disk cache yet
/** -ENOENT, as the host's readNamed returns it. */
export const ERRNO_NOENT: i32 = -2;

export const KIND_CHUNK: u32 = 4; // a fault on a compressed snapshot's stored page: the host fills it from its chunk
export const KIND_ASSEMBLE: u32 = 5; // a huge page of a compressed snapshot: assembled in a staging buffer, then copied

// --- Prefetch (prefetch_plan.ts) ---

// One step of the prefetch worker: the range consumed and what to do next.
export const STEP_CONSUMED: u32 = 0; // u32 pages of the range dealt with (copied, skipped, or planned)
export const STEP_KIND: u32 = 4; // u32 STEP_ACTIONS, STEP_NONE, STEP_NEED_CHUNK, STEP_NEED_ASSEMBLE
export const STEP_ARG: u32 = 8; // u32 the chunk to acquire, or the snapshot page of the huge page to assemble
export const STEP_COUNT: u32 = 12; // u32 actions planned (STEP_ACTIONS)
export const STEP_STAGING: u32 = 16; // u64 host address of the worker's staging buffer (assembled huge pages), set once
export const STEP_ACTION: u32 = 24; // STEP_MAX_ACTIONS actions (ACTION_STRIDE bytes each)
export const STEP_MAX_ACTIONS: u32 = 16;
export const STEP_SIZE: u32 = STEP_ACTION + STEP_MAX_ACTIONS * ACTION_STRIDE;
export const STEP_ACTIONS: u32 = 9;
export const STEP_NONE: u32 = 0;
export const STEP_NEED_CHUNK: u32 = 7;
export const STEP_NEED_ASSEMBLE: u32 = 8;
/** uffdio_copy.mode / uffdio_zeropage.mode: do not wake waiters; the fault worker wakes its own faults. */
export const MODE_DONTWAKE: u64 = 1;
