// Snapshot memory images for tests: deterministic mixes of page kinds.
import { writeFileSync, mkdtempSync, rmSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, createCipheriv } from 'node:crypto';

export type PageKind = 'zero' | 'random' | 'text' | 'dup';

/** Deterministic pseudo-random bytes: AES-128-CTR keyed by the seed. */
export function prng(seed: string, len: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(len)), cipher.final()]);
}

/**
 * An image of `bytes / pageSize` pages: `zeroFraction` of them zero, the
 * rest duplicates of earlier pages, text-like or random, in a seeded order.
 */
export function makeImage(bytes: number, opts: { seed?: string; zeroFraction?: number; pageSize?: number } = {}): Buffer {
  const pageSize = opts.pageSize ?? 4096;
  const seed = opts.seed ?? 'snapfault';
  const zeroFraction = opts.zeroFraction ?? 0.5;
  const pages = bytes / pageSize;
  const img = prng(seed, bytes); // start random; overwrite some pages
  const pick = prng(`${seed}:kinds`, pages * 2);
  const words = Buffer.from('the quick brown fox jumps over the lazy dog; firecracker snapshot page ');
  for (let p = 0; p < pages; p++) {
    const r = pick.readUInt16LE(p * 2) / 65536;
    const page = img.subarray(p * pageSize, (p + 1) * pageSize);
    if (r < zeroFraction) {
      page.fill(0);
    } else if (r < zeroFraction + (1 - zeroFraction) / 4 && p > 0) {
      // An exact copy of an earlier page (which may itself be zero or a copy).
      img.copy(page, 0, (p >> 1) * pageSize, ((p >> 1) + 1) * pageSize);
    } else {
      if (r < zeroFraction + (1 - zeroFraction) / 2) for (let o = 0; o < pageSize; o += words.length) words.copy(page, o, 0, Math.min(words.length, pageSize - o));
      // Mark the page with its number so a page served at the wrong place is caught.
      page.writeUInt32LE(p, 8);
    }
  }
  return img;
}

// Every TempDir not removed yet. An `after` hook does not run when no test of
// its suite does (mocha --grep) or when the run stops early (--bail, a crash):
// whatever is left is removed as the process exits, however it exits.
const live = new Set<TempDir>();
process.on('exit', () => {
  for (const d of live) {
    try {
      d.remove();
    } catch {
      /* nothing more can be done while exiting */
    }
  }
});

/** A sparse memory file of `bytes` at `path`: holes (zero pages known without reading them), but for `pieces` of data (`makeImage` with no zero page). */
export function sparseImage(path: string, bytes: number, pieces: Array<{ at: number; bytes: number; seed: string }>): string {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, bytes);
    for (const p of pieces) writeSync(fd, makeImage(p.bytes, { seed: p.seed, zeroFraction: 0 }), 0, p.bytes, p.at);
  } finally {
    closeSync(fd);
  }
  return path;
}

export class TempDir {
  readonly path = mkdtempSync(join(tmpdir(), 'snapfault-test-'));

  constructor() {
    live.add(this);
  }

  file(name: string, data?: Buffer | string): string {
    const p = join(this.path, name);
    if (data !== undefined) writeFileSync(p, data);
    return p;
  }

  remove(): void {
    live.delete(this);
    rmSync(this.path, { recursive: true, force: true });
  }
}
