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
export const VM_REGIONS: u32 = 128;
export const VM_MAX_REGIONS: u32 = 64;

export const REGION_STRIDE: u32 = 48;
export const REGION_BASE: u32 = 0; // u64 host virtual address
export const REGION_SIZE: u32 = 8; // u64
export const REGION_END: u32 = 16; // u64 base + size
export const REGION_FILE_OFFSET: u32 = 24; // u64
export const REGION_PAGE_SHIFT: u32 = 32; // u32
export const REGION_REMOVED: u32 = 36; // u32 offset of the removed-pages bitmap (1 bit a page)

export const VM_TABLE_SIZE: u32 = VM_REGIONS + VM_MAX_REGIONS * REGION_STRIDE;

// Action: what the host must do for one fault; the ioctl struct is ready to pass.
export const ACTION_STRIDE: u32 = 64;
export const ACTION_KIND: u32 = 0; // u32
export const ACTION_MSG_INDEX: u32 = 4; // u32: the uffd_msg this action answers
export const ACTION_IOCTL: u32 = 8; // uffdio_copy (40 bytes) or uffdio_zeropage (32 bytes)
export const ACTION_WAKE: u32 = 48; // uffdio_range for UFFDIO_WAKE after EEXIST
export const KIND_COPY: u32 = 1;
export const KIND_ZEROPAGE: u32 = 2;
export const KIND_UNMAPPED: u32 = 3; // a fault outside every region: fatal for the VM

export const ZERO_SCAN_PAGE: u32 = 4096;
