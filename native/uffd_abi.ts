// The userfaultfd ABI from /usr/include/linux/userfaultfd.h. test/native-abi
// compiles a C program against the header and checks every value here.

/** ioctl request numbers: _IOC(dir, 0xAA, nr, sizeof(struct)). */
export const UFFDIO = {
  API: 0xc018aa3f,
  REGISTER: 0xc020aa00,
  UNREGISTER: 0x8010aa01,
  WAKE: 0x8010aa02,
  COPY: 0xc028aa03,
  ZEROPAGE: 0xc020aa04,
} as const;

export const USERFAULTFD_IOC_NEW = 0xaa00;
export const UFFD_API = 0xaa;

export const UFFD_EVENT = {
  PAGEFAULT: 0x12,
  FORK: 0x13,
  REMAP: 0x14,
  REMOVE: 0x15,
  UNMAP: 0x16,
} as const;

export const UFFD_PAGEFAULT_FLAG = { WRITE: 1, WP: 2, MINOR: 4 } as const;

export const UFFD_FEATURE = {
  EVENT_REMOVE: 1 << 3,
  MISSING_HUGETLBFS: 1 << 4,
  EVENT_UNMAP: 1 << 6,
  THREAD_ID: 1 << 8,
} as const;

export const UFFDIO_REGISTER_MODE_MISSING = 1;
export const UFFDIO_COPY_MODE_DONTWAKE = 1;
export const UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1;
export const UFFD_USER_MODE_ONLY = 1;

/** Byte sizes and field offsets of the structs the handler reads or writes. */
export const LAYOUT = {
  uffd_msg: { size: 32, event: 0, pagefault_flags: 8, pagefault_address: 16, pagefault_ptid: 24, remove_start: 8, remove_end: 16 },
  uffdio_api: { size: 24, api: 0, features: 8, ioctls: 16 },
  uffdio_range: { size: 16, start: 0, len: 8 },
  uffdio_register: { size: 32, range: 0, mode: 16, ioctls: 24 },
  uffdio_copy: { size: 40, dst: 0, src: 8, len: 16, mode: 24, copy: 32 },
  uffdio_zeropage: { size: 32, range: 0, mode: 16, zeropage: 24 },
} as const;
