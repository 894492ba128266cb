// LZ4 block format (raw blocks, no frame): a decoder that is safe on any input
// and fast on good input, and a greedy compressor like LZ4_compress_default.
// Style as the rest of the core: no allocation, every buffer passed in by the
// host, so several threads can run these on the shared memory at once.
//
// Block format: sequences of
//   token (literal length << 4 | match length - 4), [literal length bytes],
//   literals, offset (u16 LE), [match length bytes]
// and a last sequence made of literals only.

/**
 * Bytes after dst + dstLen that lz4DecodeBlock may overwrite with garbage:
 * its wild copies store 16/32 bytes at a time. The caller allocates them.
 */
export const LZ4_DECODE_SLACK: u32 = 32;
/** Scratch bytes lz4EncodeBlock needs for its hash table (4096 u32 or 8192 u16 slots). */
export const LZ4_TABLE_BYTES: u32 = 16384;

const HASH_LOG: u32 = 12; // u32 slots; inputs under 64 KiB use u16 slots and one more bit
const LIMIT_64K: u32 = 65536 + 11; // inputs shorter than this have every position in a u16
const MINMATCH: usize = 4;
const LASTLITERALS: usize = 5; // the last 5 bytes of a block are always literals
const MFLIMIT: usize = 12; // the last match starts at least 12 bytes before the end
const MAX_DISTANCE: usize = 65535;
const MAX_INPUT: u32 = 0x7e000000; // LZ4_MAX_INPUT_SIZE
const SKIP_TRIGGER: usize = 6;

/** Worst-case compressed size of n bytes (LZ4_compressBound); 0 if n is too large. */
export function lz4Bound(n: u32): u32 {
  return n > MAX_INPUT ? 0 : n + n / 255 + 16;
}

// i8x16.swizzle indices for overlapping matches with offset < 16:
// PAT[o][i] = i % o spreads the first o bytes over 16; ROT[o][i] = (i + 16) % o
// turns one 16-byte chunk of the repetition into the next one.
@inline function patIdx(offset: usize): v128 {
  switch (<u32>offset) {
    case 1: return i8x16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    case 2: return i8x16(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
    case 3: return i8x16(0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0);
    case 4: return i8x16(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    case 5: return i8x16(0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0);
    case 6: return i8x16(0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3);
    case 7: return i8x16(0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1);
    case 8: return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
    case 9: return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4, 5, 6);
    case 10: return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5);
    case 11: return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4);
    case 12: return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3);
    case 13: return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 1, 2);
    case 14: return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0, 1);
    case 15: return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0);
  }
  return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
@inline function rotIdx(offset: usize): v128 {
  switch (<u32>offset) {
    case 1: return i8x16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    case 2: return i8x16(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
    case 3: return i8x16(1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1);
    case 4: return i8x16(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    case 5: return i8x16(1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1);
    case 6: return i8x16(4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1);
    case 7: return i8x16(2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3);
    case 8: return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
    case 9: return i8x16(7, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4);
    case 10: return i8x16(6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1);
    case 11: return i8x16(5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    case 12: return i8x16(4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5, 6, 7);
    case 13: return i8x16(3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 1, 2, 3, 4, 5);
    case 14: return i8x16(2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0, 1, 2, 3);
    case 15: return i8x16(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0, 1);
  }
  return i8x16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

/**
 * Copies a match of `len` (>= 4) bytes from `match` = op - offset to `op`.
 * May write up to 31 bytes past op + len (always at least 32 bytes from op);
 * reads only [match, op + 16), all of it output.
 */
@inline function copyMatch(op: usize, match: usize, offset: usize, len: usize): void {
  if (offset >= 16) {
    // Each 16-byte load reads bytes already written (offset >= 16), also
    // the second one of a pair, which may read what the first just stored.
    v128.store(op, v128.load(match));
    v128.store(op, v128.load(match, 16), 16);
    if (len > 32) {
      const end = op + len;
      let o = op + 32;
      let m = match + 32;
      do {
        v128.store(o, v128.load(m));
        v128.store(o, v128.load(m, 16), 16);
        o += 32;
        m += 32;
      } while (o < end);
    }
  } else {
    // Overlapping: build the repetition in a register. The load reads
    // `offset` valid bytes, then bytes from op on that swizzle ignores.
    let pat = i8x16.swizzle(v128.load(match), patIdx(offset));
    v128.store(op, pat);
    if (len > 16) {
      const end = op + len;
      let o = op + 16;
      if ((offset & (offset - 1)) == 0) {
        // 1, 2, 4, 8 divide 16: every chunk is the same.
        do {
          v128.store(o, pat);
          v128.store(o, pat, 16);
          o += 32;
        } while (o < end);
      } else {
        const rot = rotIdx(offset);
        do {
          pat = i8x16.swizzle(pat, rot);
          v128.store(o, pat);
          o += 16;
        } while (o < end);
      }
    }
  }
}

/**
 * Decodes one LZ4 block of `srcLen` bytes at `src` that must produce exactly
 * `dstLen` bytes at `dst`. Returns dstLen, or:
 *   -1 malformed or truncated input,
 *   -2 the output would exceed dstLen,
 *   -3 a match offset of 0 or pointing before dst,
 *   -4 the input ended before dstLen bytes were produced.
 * Whatever the input, it reads only [src, src + srcLen) and, for matches, the
 * output area, and writes only [dst, dst + dstLen + LZ4_DECODE_SLACK); the
 * slack ends up holding garbage (decoding blocks back to back into one buffer
 * works in increasing address order). It accepts every well-formed sequence
 * stream that ends with literals, also some that liblz4 refuses (a match
 * ending in the last 5 bytes); a block that ends with a match is -1.
 */
export function lz4DecodeBlock(src: usize, srcLen: u32, dst: usize, dstLen: u32): i32 {
  if (dstLen > <u32>i32.MAX_VALUE) return -2;
  const srcEnd = src + <usize>srcLen;
  const dstEnd = dst + <usize>dstLen;
  let ip = src;
  let op = dst;

  // Fast loop: at least 32 input bytes and 32 output bytes left at each
  // token, so a short sequence (literals < 15, match < 15) reads its token,
  // up to 14 literals (copied as 16) and offset without any bounds check and
  // fits in the output. Only long lengths check. Writes never pass
  // dstEnd + 31: each copy starts at op <= dstEnd after its length was checked.
  if (srcLen >= 32 && dstLen >= 32) {
    const srcFast = srcEnd - 32;
    const dstFast = dstEnd - 32;
    while (ip <= srcFast && op <= dstFast) {
      const token = <usize>load<u8>(ip);
      ip++;
      let lit = token >> 4;
      let offset: usize = 0;
      let ml: usize = 0;
      if (lit < 15) {
        v128.store(op, v128.load(ip));
        op += lit;
        ip += lit;
        offset = <usize>load<u16>(ip);
        ip += 2;
        // offset 0 wraps to the largest value: one compare rejects both.
        if (offset - 1 >= op - dst) return -3;
        ml = token & 15;
        if (ml < 15 && offset >= 16) {
          // Short sequence, far match: no other check, it fits.
          const match = op - offset;
          v128.store(op, v128.load(match));
          // The second half only when needed: it would often read bytes
          // just stored (a store-forwarding stall).
          if (ml > 12) v128.store(op, v128.load(match, 16), 16);
          op += ml + MINMATCH;
          continue;
        }
      } else {
        let b: usize;
        do {
          if (ip >= srcEnd) return -1;
          b = <usize>load<u8>(ip);
          ip++;
          lit += b;
        } while (b == 255 && lit <= <usize>dstLen);
        if (lit > srcEnd - ip) return -1;
        if (lit > dstEnd - op) return -2;
        if (lit + 32 <= srcEnd - ip) {
          const end = op + lit;
          let o = op;
          let i = ip;
          do {
            v128.store(o, v128.load(i));
            v128.store(o, v128.load(i, 16), 16);
            o += 32;
            i += 32;
          } while (o < end);
        } else {
          memory.copy(op, ip, lit);
        }
        op += lit;
        ip += lit;
        if (srcEnd - ip < 2) {
          if (ip == srcEnd) return op == dstEnd ? <i32>dstLen : -4;
          return -1;
        }
        offset = <usize>load<u16>(ip);
        ip += 2;
        if (offset - 1 >= op - dst) return -3;
        ml = token & 15;
      }
      if (ml == 15) {
        let b: usize;
        do {
          if (ip >= srcEnd) return -1;
          b = <usize>load<u8>(ip);
          ip++;
          ml += b;
        } while (b == 255 && ml <= <usize>dstLen);
      }
      ml += MINMATCH;
      if (ml > dstEnd - op) return -2;
      copyMatch(op, op - offset, offset, ml);
      op += ml;
    }
  }

  // Exact loop for the end of the input (and small blocks): every input read
  // is checked. Output copies still go wild: op <= dstEnd holds throughout.
  while (true) {
    if (ip >= srcEnd) return op == dstEnd ? -1 : -4; // a block ends with literals
    const token = <usize>load<u8>(ip);
    ip++;
    let lit = token >> 4;
    if (lit == 15) {
      let b: usize;
      do {
        if (ip >= srcEnd) return -1;
        b = <usize>load<u8>(ip);
        ip++;
        lit += b;
      } while (b == 255 && lit <= <usize>dstLen);
    }
    if (lit > srcEnd - ip) return -1;
    if (lit > dstEnd - op) return -2;
    if (lit <= 16 && srcEnd - ip >= 16) {
      v128.store(op, v128.load(ip));
    } else {
      memory.copy(op, ip, lit);
    }
    op += lit;
    ip += lit;
    if (srcEnd - ip < 2) {
      if (ip == srcEnd) return op == dstEnd ? <i32>dstLen : -4;
      return -1;
    }
    const offset = <usize>load<u16>(ip);
    ip += 2;
    if (offset - 1 >= op - dst) return -3;
    let ml = token & 15;
    if (ml == 15) {
      let b: usize;
      do {
        if (ip >= srcEnd) return -1;
        b = <usize>load<u8>(ip);
        ip++;
        ml += b;
      } while (b == 255 && ml <= <usize>dstLen);
    }
    ml += MINMATCH;
    if (ml > dstEnd - op) return -2;
    copyMatch(op, op - offset, offset, ml);
    op += ml;
  }
  return -1; // unreachable
}

// ---------------------------------------------------------------- encoder

/** Byte offset in the table of the slot for the 4 bytes at p. */
@inline function hash4<T>(p: usize): usize {
  if (sizeof<T>() == 2) return <usize>((load<u32>(p) * 2654435761) >> (32 - HASH_LOG - 1)) << 1;
  return <usize>((load<u32>(p) * 2654435761) >> (32 - HASH_LOG)) << 2;
}

/** Length of the common run of p and m, not reading p at or past `limit`. */
@inline function countMatch(p: usize, m: usize, limit: usize): usize {
  const start = p;
  while (p + 16 <= limit) {
    const eq = i8x16.bitmask(i8x16.eq(v128.load(p), v128.load(m)));
    if (eq != 0xffff) return p - start + <usize>ctz<u32>(~eq);
    p += 16;
    m += 16;
  }
  if (p + 8 <= limit) {
    const diff = load<u64>(p) ^ load<u64>(m);
    if (diff != 0) return p - start + <usize>(ctz<u64>(diff) >> 3);
    p += 8;
    m += 8;
  }
  if (p + 4 <= limit && load<u32>(p) == load<u32>(m)) {
    p += 4;
    m += 4;
  }
  if (p + 2 <= limit && load<u16>(p) == load<u16>(m)) {
    p += 2;
    m += 2;
  }
  if (p < limit && load<u8>(p) == load<u8>(m)) p++;
  return p - start;
}

/** Writes `n` as 255-bytes then the rest; returns the new op. */
@inline function putLength(op: usize, n: usize): usize {
  while (n >= 255) {
    store<u8>(op, 255);
    op++;
    n -= 255;
  }
  store<u8>(op, <u8>n);
  return op + 1;
}

/** Literals: wild 32-byte copies when both buffers have room, else exact. */
@inline function copyLiterals(op: usize, oend: usize, ip: usize, iend: usize, n: usize): void {
  if (n + 32 <= oend - op && n + 32 <= iend - ip) {
    const end = op + n;
    do {
      v128.store(op, v128.load(ip));
      v128.store(op, v128.load(ip, 16), 16);
      op += 32;
      ip += 32;
    } while (op < end);
  } else {
    memory.copy(op, ip, n);
  }
}

/**
 * Compresses `srcLen` bytes at `src` into one LZ4 block at `dst` (greedy, a
 * 4-byte hash, acceleration 1: LZ4_compress_default's algorithm and output
 * rules). `table` is LZ4_TABLE_BYTES of scratch, initialised here. Returns the
 * compressed size, or 0 if it does not fit in dstCap (store the block raw).
 * Never returns 0 when dstCap >= lz4Bound(srcLen). Writes only
 * [dst, dst + dstCap).
 */
export function lz4EncodeBlock(src: usize, srcLen: u32, dst: usize, dstCap: u32, table: usize): u32 {
  if (srcLen > MAX_INPUT) return 0;
  // As liblz4: positions fit u16 slots below 64 KiB, twice as many of them.
  return srcLen < LIMIT_64K
    ? encode<u16>(src, srcLen, dst, dstCap, table)
    : encode<u32>(src, srcLen, dst, dstCap, table);
}

function encode<T>(src: usize, srcLen: u32, dst: usize, dstCap: u32, table: usize): u32 {
  const iend = src + <usize>srcLen;
  const oend = dst + <usize>min<u32>(dstCap, <u32>usize.MAX_VALUE - <u32>dst);
  let op = dst;
  let anchor = src;

  if (<usize>srcLen >= MFLIMIT + 1) {
    memory.fill(table, 0, LZ4_TABLE_BYTES);
    const mflimitPlusOne = iend - MFLIMIT + 1;
    const matchlimit = iend - LASTLITERALS;
    let ip = src;
    store<T>(table + hash4<T>(ip), 0);
    ip++;
    let forwardH = hash4<T>(ip);

    while (true) {
      // Find a match, skipping faster the longer none turns up.
      let match: usize = 0;
      let found = false;
      let forwardIp = ip;
      let step: usize = 1;
      let attempts: usize = 1 << SKIP_TRIGGER;
      while (true) {
        const h = forwardH;
        const current = forwardIp - src;
        const matchIndex = <usize>load<T>(table + h);
        ip = forwardIp;
        forwardIp += step;
        step = attempts >> SKIP_TRIGGER;
        attempts++;
        if (forwardIp > mflimitPlusOne) break;
        forwardH = hash4<T>(forwardIp);
        store<T>(table + h, <T>current);
        if (matchIndex + MAX_DISTANCE < current) continue;
        match = src + matchIndex;
        if (load<u32>(match) == load<u32>(ip)) {
          found = true;
          break;
        }
      }
      if (!found) break; // too close to the end: the rest are literals
      // Extend backwards over equal bytes.
      while (ip > anchor && match > src && load<u8>(ip - 1) == load<u8>(match - 1)) {
        ip--;
        match--;
      }
      const litLen = ip - anchor;
      // Room for the token, lengths, literals, offset and the 5 last literals.
      if (litLen + (1 + 2 + 1 + LASTLITERALS) + litLen / 255 > oend - op) return 0;
      let token = op;
      op++;
      if (litLen >= 15) {
        store<u8>(token, 15 << 4);
        op = putLength(op, litLen - 15);
      } else {
        store<u8>(token, <u8>(litLen << 4));
      }
      copyLiterals(op, oend, anchor, iend, litLen);
      op += litLen;

      let atEnd = false;
      while (true) {
        // Offset, then the match length.
        store<u16>(op, <u16>(ip - match));
        op += 2;
        let mlen = countMatch(ip + MINMATCH, match + MINMATCH, matchlimit);
        ip += mlen + MINMATCH;
        if ((1 + LASTLITERALS) + (mlen + 240) / 255 > oend - op) return 0;
        if (mlen >= 15) {
          store<u8>(token, load<u8>(token) | 15);
          op = putLength(op, mlen - 15);
        } else {
          store<u8>(token, load<u8>(token) | <u8>mlen);
        }
        anchor = ip;
        if (ip >= mflimitPlusOne) {
          atEnd = true;
          break;
        }
        store<T>(table + hash4<T>(ip - 2), <T>(ip - 2 - src));
        // Is there a match right here? Then no literals.
        const h = hash4<T>(ip);
        const mi = <usize>load<T>(table + h);
        const current = ip - src;
        store<T>(table + h, <T>current);
        match = src + mi;
        if (mi + MAX_DISTANCE >= current && load<u32>(match) == load<u32>(ip)) {
          token = op;
          op++;
          store<u8>(token, 0);
          continue;
        }
        break;
      }
      if (atEnd) break;
      ip++;
      forwardH = hash4<T>(ip);
    }
  }

  // Last literals.
  const lastRun = iend - anchor;
  if (op >= oend || lastRun + 1 + (lastRun + 255 - 15) / 255 > oend - op) return 0;
  if (lastRun >= 15) {
    store<u8>(op, 15 << 4);
    op = putLength(op + 1, lastRun - 15);
  } else {
    store<u8>(op, <u8>(lastRun << 4));
    op++;
  }
  memory.copy(op, anchor, lastRun);
  op += lastRun;
  return <u32>(op - dst);
}
