// The decoded-chunk cache of a compressed snapshot, shared by every worker
// and every VM restored from the file: `ways`-way sets of slots, each slot
// guarded by a lock word (waited on with atomic.wait: only worker threads
// call in here). A chunk is read with the host's pread, decoded and checked
// against its checksum before anyone may copy from it.
import {
  SNAP_FD, SNAP_NAMES, SNAP_NAMED_READS, SNAP_NAMED_ABSENT, CHUNK_NAME_BYTES, CHUNK_ERR_NAME, SNAP_PAGES_PER_CHUNK, SNAP_CHUNKS, SNAP_STORED, SNAP_CHUNK_TABLE, SNAP_CACHE,
  CHUNK_ENTRY, CHUNK_OFFSET, CHUNK_LENGTH, CHUNK_CHECKSUM, CHUNK_RAW_FLAG,
  CACHE_SETS, CACHE_WAYS, CACHE_SLOT_BYTES, CACHE_DATA, CACHE_CLOCK, CACHE_SLOTS, SLOT_STRIDE, SLOT_LOCK, SLOT_TAG, SLOT_USED, SLOT_SET_LOCK, TAG_LOADING,
  CHUNK_ERR_IO, CHUNK_ERR_CHECKSUM, CHUNK_ERR_DECODE, CHUNK_ERR_RANGE, CHUNK_ERR_ABSENT, ERRNO_NOENT,
  VM_STAT_CHUNK_HITS, VM_STAT_CHUNK_MISSES, ZERO_SCAN_PAGE,
} from './layout';
import { lz4DecodeBlock } from './lz4';
import { xxh32 } from './xxh32';

/** pread(2) by the host into shared memory: bytes read, or a negative errno. */
@external("env", "pread")
declare function hostPread(fd: i32, dst: usize, len: u32, offset: u64): i32;

/** Reads the store chunk named by the 32 bytes at `name` (its file under the folder `dirfd`): bytes read, or a negative errno. */
@external("env", "readNamed")
declare function hostReadNamed(dirfd: i32, name: usize, dst: usize, len: u32): i32;

/** 1 when the SHA-256 of `len` bytes at `at` is the 32-byte name at `name`. */
@external("env", "checkNamed")
declare function hostCheckNamed(name: usize, at: usize, len: u32): i32;

/** Reads chunk c's stored bytes: from the compressed file, or from its own file in a store. */
@inline function readStored(snap: usize, c: u32, dst: usize, len: u32, offset: u64): i32 {
  const names = <usize>load<u32>(snap + SNAP_NAMES);
  const fd = load<i32>(snap + SNAP_FD);
  if (names == 0) return hostPread(fd, dst, len, offset);
  const n = hostReadNamed(fd, names + <usize>c * CHUNK_NAME_BYTES, dst, len);
  // The disk cache's hits and misses, for the metrics: counted where every thread's reads pass.
  if (n == ERRNO_NOENT) atomic.add<u32>(snap + SNAP_NAMED_ABSENT, 1);
  else if (n >= 0) atomic.add<u32>(snap + SNAP_NAMED_READS, 1);
  return n;
}

/** A store chunk with no file is absent (a disk cache fetches it; the host decides); any other short read is an I/O error. */
@inline function readFailure(n: i32): i32 {
  return n == ERRNO_NOENT ? CHUNK_ERR_ABSENT : CHUNK_ERR_IO;
}

export function cacheInit(cache: usize, sets: u32, ways: u32, slotBytes: u32, data: usize): void {
  store<u32>(cache + CACHE_SETS, sets);
  store<u32>(cache + CACHE_WAYS, ways);
  store<u32>(cache + CACHE_SLOT_BYTES, slotBytes);
  store<u32>(cache + CACHE_DATA, <u32>data);
  store<u32>(cache + CACHE_CLOCK, 0);
  memory.fill(cache + CACHE_SLOTS, 0, <usize>(sets * ways * SLOT_STRIDE));
}

@inline function slotHeader(cache: usize, slot: u32): usize {
  return cache + CACHE_SLOTS + <usize>slot * SLOT_STRIDE;
}

/** Data address of a slot. */
export function slotData(cache: usize, slot: u32): usize {
  return <usize>load<u32>(cache + CACHE_DATA) + <usize>slot * <usize>load<u32>(cache + CACHE_SLOT_BYTES);
}

// Locks hold their owner's id (a thread's, never 0), so the locks of a thread
// that died holding them can be found and opened (cacheReleaseOwner).
function lock(word: usize, owner: u32): void {
  while (atomic.cmpxchg<u32>(word, 0, owner) != 0) {
    atomic.wait<u32>(word, atomic.load<u32>(word), 1000000); // 1 ms at most, then try again
  }
}

function unlock(word: usize): void {
  atomic.store<u32>(word, 0);
  atomic.notify(word, 1);
}

/** Decoded length of chunk c. */
export function chunkBytes(snap: usize, c: u32): u32 {
  const ppc = load<u32>(snap + SNAP_PAGES_PER_CHUNK);
  const stored = load<u32>(snap + SNAP_STORED);
  const first = c * ppc;
  const pages = stored - first < ppc ? stored - first : ppc;
  return pages * ZERO_SCAN_PAGE;
}

/** Reads, decodes and checks chunk c into `dst`; 0 or a CHUNK_ERR. */
export function loadChunk(snap: usize, c: u32, dst: usize, scratch: usize, scratchLen: u32): i32 {
  if (c >= load<u32>(snap + SNAP_CHUNKS)) return CHUNK_ERR_RANGE;
  const e = <usize>load<u32>(snap + SNAP_CHUNK_TABLE) + <usize>c * CHUNK_ENTRY;
  const offset = load<u64>(e + CHUNK_OFFSET);
  const stored = load<u32>(e + CHUNK_LENGTH);
  const len = stored & ~CHUNK_RAW_FLAG;
  const want = chunkBytes(snap, c);
  if ((stored & CHUNK_RAW_FLAG) != 0) {
    if (len != want) return CHUNK_ERR_RANGE;
    const n = readStored(snap, c, dst, len, offset);
    if (n != <i32>len) return readFailure(n);
  } else {
    if (len > scratchLen || len == 0) return CHUNK_ERR_RANGE;
    const n = readStored(snap, c, scratch, len, offset);
    if (n != <i32>len) return readFailure(n);
    if (lz4DecodeBlock(scratch, len, dst, want) != <i32>want) return CHUNK_ERR_DECODE;
  }
  if (xxh32(dst, want, 0) != load<u32>(e + CHUNK_CHECKSUM)) return CHUNK_ERR_CHECKSUM;
  // A store's chunk must also be what its name says: the checksum catches damage, the name a wrong object.
  const names = <usize>load<u32>(snap + SNAP_NAMES);
  if (names != 0 && hostCheckNamed(names + <usize>c * CHUNK_NAME_BYTES, dst, want) != 1) return CHUNK_ERR_NAME;
  return 0;
}

/**
 * Chunks this thread read and decoded (cache misses it loaded). A global is
 * the instance's own, and each thread has its instance: a trace asks it
 * before and after an acquire which tier a page came from.
 */
let loadsHere: u32 = 0;

export function chunkLoadsHere(): u32 {
  return loadsHere;
}

@inline function bump(vm: usize, counter: u32): void {
  store<u64>(vm + counter, load<u64>(vm + counter) + 1);
}

/**
 * A slot holding chunk c, decoded and checked, locked for the caller (give it
 * back with chunkRelease); or a negative CHUNK_ERR (nothing is locked then).
 * Concurrent misses of one chunk decode it once: the first claims a way
 * (tagged loading) under the set's lock, the others wait for that way's lock.
 */
export function chunkAcquire(vm: usize, snap: usize, c: u32, scratch: usize, scratchLen: u32, owner: u32): i32 {
  const cache = <usize>load<u32>(snap + SNAP_CACHE);
  const ways = load<u32>(cache + CACHE_WAYS);
  const first = (c % load<u32>(cache + CACHE_SETS)) * ways;
  const setLock = slotHeader(cache, first) + SLOT_SET_LOCK;
  const tag = c + 1;
  for (;;) {
    // A hit, or a load of c in progress: its lock is free once it is done.
    for (let w: u32 = 0; w < ways; w++) {
      const h = slotHeader(cache, first + w);
      if ((atomic.load<u32>(h + SLOT_TAG) & ~TAG_LOADING) != tag) continue;
      lock(h + SLOT_LOCK, owner);
      if (atomic.load<u32>(h + SLOT_TAG) == tag) {
        store<u32>(h + SLOT_USED, atomic.add<u32>(cache + CACHE_CLOCK, 1));
        if (vm != 0) bump(vm, VM_STAT_CHUNK_HITS);
        return <i32>(first + w);
      }
      unlock(h + SLOT_LOCK); // replaced meanwhile, or its load failed
    }
    // A miss: claim the least recently used way, unless another thread claimed one for c first.
    lock(setLock, owner);
    let claimed = false;
    for (let w: u32 = 0; w < ways; w++) {
      if ((atomic.load<u32>(slotHeader(cache, first + w) + SLOT_TAG) & ~TAG_LOADING) == tag) claimed = true;
    }
    if (claimed) {
      unlock(setLock);
      continue;
    }
    let victim = first;
    let oldest = u32.MAX_VALUE;
    for (let w: u32 = 0; w < ways; w++) {
      const used = load<u32>(slotHeader(cache, first + w) + SLOT_USED);
      if (used < oldest) {
        oldest = used;
        victim = first + w;
      }
    }
    const h = slotHeader(cache, victim);
    lock(h + SLOT_LOCK, owner);
    atomic.store<u32>(h + SLOT_TAG, tag | TAG_LOADING);
    unlock(setLock);
    const err = loadChunk(snap, c, slotData(cache, victim), scratch, scratchLen);
    if (err != 0) {
      atomic.store<u32>(h + SLOT_TAG, 0);
      unlock(h + SLOT_LOCK);
      return err;
    }
    store<u32>(h + SLOT_USED, atomic.add<u32>(cache + CACHE_CLOCK, 1));
    atomic.store<u32>(h + SLOT_TAG, tag);
    loadsHere++;
    if (vm != 0) bump(vm, VM_STAT_CHUNK_MISSES);
    return <i32>victim;
  }
}

/**
 * Opens every lock of the cache that `owner` holds: a thread that died
 * holding them (a terminated prefetch worker). A slot it was loading holds
 * part of a chunk and is emptied. Returns the locks opened.
 */
export function cacheReleaseOwner(cache: usize, owner: u32): u32 {
  const slots = load<u32>(cache + CACHE_SETS) * load<u32>(cache + CACHE_WAYS);
  let opened: u32 = 0;
  for (let i: u32 = 0; i < slots; i++) {
    const h = slotHeader(cache, i);
    if (atomic.load<u32>(h + SLOT_SET_LOCK) == owner) {
      unlock(h + SLOT_SET_LOCK);
      opened++;
    }
    if (atomic.load<u32>(h + SLOT_LOCK) != owner) continue;
    if ((atomic.load<u32>(h + SLOT_TAG) & TAG_LOADING) != 0) atomic.store<u32>(h + SLOT_TAG, 0);
    unlock(h + SLOT_LOCK);
    opened++;
  }
  return opened;
}

export function chunkRelease(snap: usize, slot: u32): void {
  unlock(slotHeader(<usize>load<u32>(snap + SNAP_CACHE), slot) + SLOT_LOCK);
}
