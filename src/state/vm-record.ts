// A served VM's record in the state directory (--state-dir): what a successor
// needs to take the VM over, since the kernel cannot tell it (TAKEOVER.md):
// who Firecracker is, which userfaultfd, the regions and snapshot of the
// handshake, and every page a REMOVE took away.
//
// One file a VM, `vm-<pid>.state`, of a fixed size: an 8 KiB header (identity,
// snapshot, regions; checksummed, written once) and then one removed-pages
// bitmap per region, 1 bit a page as in the core. The fault worker sets bits
// there through a MAP_SHARED mapping as it applies REMOVEs: plain memory
// writes, no system call, and the page cache keeps them when the process is
// SIGKILLed. Bits are only ever set (a removed page stays removed), so the
// bitmaps are never inconsistent, however a writer dies.
import { openSync, closeSync, writeSync, readSync, ftruncateSync, renameSync, unlinkSync, fstatSync, constants as fsc } from 'node:fs';
import { mmapSharedFile, munmap, viewOf, type Mapping } from '../../native/mmap.js';
import { StateError, StateVersionError } from '../errors.js';
import type { GuestRegion } from '../handshake/regions.js';

export const RECORD_VERSION = 1;
const MAGIC = Buffer.from('SNAPFSTA');
/** The header, then the bitmaps at this offset (page-aligned: it is mapped on its own). */
const HEADER_BYTES = 8192;
const REGIONS_AT = 4096;
const REGION_BYTES = 32;
export const MAX_RECORD_REGIONS = 64;
const PATH_AT = 320;
const MAX_PATH_BYTES = REGIONS_AT - PATH_AT;

const H = {
  MAGIC: 0, VERSION: 8, CHECKSUM: 12, PID: 16, NREGIONS: 20, START_TIME: 24, UFFD_DEV: 32, UFFD_INO: 40,
  HANDSHAKE_MS: 48, PATH_BYTES: 56, IDENTITY_BYTES: 60, IDENTITY: 64,
} as const;
const MAX_IDENTITY_BYTES = PATH_AT - H.IDENTITY;

/** What a successor needs to know of a VM, besides its removed pages. */
export interface VmIdentity {
  /** Firecracker's pid and its start time (clock ticks after boot, /proc/PID/stat field 22): a pid reused by another process never matches both. */
  pid: number;
  startTime: bigint;
  /** The userfaultfd Firecracker sent (fstat of it): found again among Firecracker's descriptors by these. */
  uffdDev: number;
  uffdIno: bigint;
  /** Unix time of the handshake, ms (trace times count from it). */
  handshakeMs: number;
  /** The snapshot served (absolute path) and its identity then (src/snapshot/raw-file.ts fileIdentity). */
  snapshotPath: string;
  snapshotIdentity: string;
  regions: readonly GuestRegion[];
}

/** Bytes of region i's removed bitmap: u32 words, as the core sizes them (vm-table.ts). */
function bitmapBytes(r: GuestRegion): number {
  return Math.ceil(Number(r.size / BigInt(r.pageSize)) / 32) * 4;
}

/** FNV-1a over the header past the checksum: a damaged or half-written header is refused, never trusted. */
function checksum(header: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = H.PID; i < HEADER_BYTES; i++) h = Math.imul(h ^ header[i], 0x01000193) >>> 0;
  return h;
}

export function recordFileName(pid: number): string {
  return `vm-${pid}.state`;
}

/** A VM's record, open and mapped: the fault worker mirrors removes into `bitmaps`. */
export class VmRecord {
  private constructor(
    readonly path: string,
    readonly identity: VmIdentity,
    /** The removed bitmaps, region after region. */
    readonly bitmaps: Mapping,
    /** Byte offset of each region's bitmap in `bitmaps`. */
    readonly bitmapAt: readonly number[],
  ) {}

  /**
   * Writes a new record whole, then renames it into place: a reader finds a
   * complete record or none. The bitmaps start empty (no page removed yet).
   */
  static create(dir: string, id: VmIdentity): VmRecord {
    const header = encodeHeader(id);
    const bitmapAt = offsets(id.regions);
    const total = bitmapAt[bitmapAt.length - 1] + bitmapBytes(id.regions[id.regions.length - 1]);
    const path = `${dir}/${recordFileName(id.pid)}`;
    const tmp = `${dir}/.${recordFileName(id.pid)}.tmp`;
    const fd = openSync(tmp, fsc.O_RDWR | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, header, 0, HEADER_BYTES, 0);
      ftruncateSync(fd, HEADER_BYTES + total);
      const bitmaps = mmapSharedFile(fd, total, HEADER_BYTES, tmp);
      renameSync(tmp, path);
      return new VmRecord(path, id, bitmaps, bitmapAt);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch {
        /* not there */
      }
      throw e;
    } finally {
      closeSync(fd); // the mapping keeps the file
    }
  }

  /** Opens a record left by an earlier handler; StateError if it is damaged, StateVersionError if newer. */
  static open(path: string): VmRecord {
    const fd = openSync(path, fsc.O_RDWR | fsc.O_NOFOLLOW);
    try {
      const header = Buffer.alloc(HEADER_BYTES);
      const got = readSync(fd, header, 0, HEADER_BYTES, 0);
      const id = decodeHeader(path, header, got);
      const bitmapAt = offsets(id.regions);
      const total = bitmapAt[bitmapAt.length - 1] + bitmapBytes(id.regions[id.regions.length - 1]);
      const size = fstatSync(fd).size;
      if (size !== HEADER_BYTES + total) throw damaged(path, `it is ${size} bytes, its regions need ${HEADER_BYTES + total}`);
      return new VmRecord(path, id, mmapSharedFile(fd, total, HEADER_BYTES, path), bitmapAt);
    } finally {
      closeSync(fd);
    }
  }

  /** Region i's removed bitmap as u32 words (a view of the mapping; valid until close). */
  words(i: number): Uint32Array {
    return new Uint32Array(viewOf(this.bitmaps), this.bitmapAt[i], bitmapBytes(this.identity.regions[i]) / 4);
  }

  /** Unmaps the record; `remove`: the VM has ended for good, its record goes too. */
  close(remove: boolean): void {
    munmap(this.bitmaps);
    if (!remove) return;
    try {
      unlinkSync(this.path);
    } catch {
      /* gone already */
    }
  }
}

function offsets(regions: readonly GuestRegion[]): number[] {
  const at: number[] = [];
  let next = 0;
  for (const r of regions) {
    at.push(next);
    next += bitmapBytes(r);
  }
  return at;
}

function damaged(path: string, why: string): StateError {
  return new StateError(`state record ${path} is damaged (${why}): its VM cannot be taken over; move the file away to start without it`);
}

function encodeHeader(id: VmIdentity): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  const path = Buffer.from(id.snapshotPath);
  const ident = Buffer.from(id.snapshotIdentity);
  if (path.length > MAX_PATH_BYTES) throw new StateError(`snapshot path ${id.snapshotPath} is too long to record (${MAX_PATH_BYTES} bytes at most): use a shorter path`);
  if (ident.length > MAX_IDENTITY_BYTES || id.regions.length > MAX_RECORD_REGIONS) throw new StateError('internal: a VM too large to record');
  MAGIC.copy(b, H.MAGIC);
  b.writeUInt32LE(RECORD_VERSION, H.VERSION);
  b.writeUInt32LE(id.pid, H.PID);
  b.writeUInt32LE(id.regions.length, H.NREGIONS);
  b.writeBigUInt64LE(id.startTime, H.START_TIME);
  b.writeBigUInt64LE(BigInt(id.uffdDev), H.UFFD_DEV);
  b.writeBigUInt64LE(id.uffdIno, H.UFFD_INO);
  b.writeDoubleLE(id.handshakeMs, H.HANDSHAKE_MS);
  b.writeUInt32LE(path.length, H.PATH_BYTES);
  b.writeUInt32LE(ident.length, H.IDENTITY_BYTES);
  ident.copy(b, H.IDENTITY);
  path.copy(b, PATH_AT);
  id.regions.forEach((r, i) => {
    const at = REGIONS_AT + i * REGION_BYTES;
    b.writeBigUInt64LE(r.base, at);
    b.writeBigUInt64LE(r.size, at + 8);
    b.writeBigUInt64LE(r.offset, at + 16);
    b.writeBigUInt64LE(BigInt(r.pageSize), at + 24);
  });
  b.writeUInt32LE(checksum(b), H.CHECKSUM);
  return b;
}

function decodeHeader(path: string, b: Buffer, got: number): VmIdentity {
  if (got < HEADER_BYTES) throw damaged(path, `its header is cut short at ${got} bytes`);
  if (!b.subarray(0, 8).equals(MAGIC)) throw damaged(path, 'it is not a snapfault state record');
  const version = b.readUInt32LE(H.VERSION);
  if (version > RECORD_VERSION) {
    throw new StateVersionError(`state record ${path} was written by a newer snapfault (record version ${version}, this one reads ${RECORD_VERSION}): run that version on this state directory`);
  }
  if (version !== RECORD_VERSION || b.readUInt32LE(H.CHECKSUM) !== checksum(b)) throw damaged(path, 'checksum mismatch');
  const n = b.readUInt32LE(H.NREGIONS);
  const pathBytes = b.readUInt32LE(H.PATH_BYTES);
  const identBytes = b.readUInt32LE(H.IDENTITY_BYTES);
  if (n === 0 || n > MAX_RECORD_REGIONS || pathBytes > MAX_PATH_BYTES || identBytes > MAX_IDENTITY_BYTES) throw damaged(path, 'impossible sizes');
  const regions: GuestRegion[] = [];
  for (let i = 0; i < n; i++) {
    const at = REGIONS_AT + i * REGION_BYTES;
    const pageSize = Number(b.readBigUInt64LE(at + 24));
    const r = { base: b.readBigUInt64LE(at), size: b.readBigUInt64LE(at + 8), offset: b.readBigUInt64LE(at + 16), pageSize };
    if (pageSize !== 4096 && pageSize !== 2 * 1024 * 1024) throw damaged(path, `region ${i} has page size ${pageSize}`);
    if (r.size === 0n || r.size % BigInt(pageSize) !== 0n) throw damaged(path, `region ${i} has size ${r.size}`);
    regions.push(r);
  }
  return {
    pid: b.readUInt32LE(H.PID),
    startTime: b.readBigUInt64LE(H.START_TIME),
    uffdDev: Number(b.readBigUInt64LE(H.UFFD_DEV)),
    uffdIno: b.readBigUInt64LE(H.UFFD_INO),
    handshakeMs: b.readDoubleLE(H.HANDSHAKE_MS),
    snapshotPath: b.toString('utf8', PATH_AT, PATH_AT + pathBytes),
    snapshotIdentity: b.toString('utf8', H.IDENTITY, H.IDENTITY + identBytes),
    regions,
  };
}
