// The local disk tier of a store in a bucket: chunks fetched for serving,
// kept in a folder laid out as a folder store's chunks (chunks/ab/<sha256>),
// so the core reads them by name exactly as from a folder store and checks
// each against its name (SHA-256) every time it reads one back. Content
// addressed, so every handler process on the host can share one folder and
// a restart finds it as it was. Bounded by size: past the bound, the least
// recently read chunks (access time; the core's reads move it) are deleted,
// and so are writes a killed process left half done.
import { mkdirSync, readdirSync, statSync, writeFileSync, renameSync, unlinkSync, utimesSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chunkFileName } from '../core/named-chunks.js';
import { StoreError } from '../errors.js';

/** Once past its bound, the cache is cut down to this share of it, so evictions come in batches rather than one a fetch. */
const LOW_WATER = 0.9;
/** A chunk written beside its name this long ago was left by a process killed mid-write: deleted when the cache is listed. */
const STALE_WRITE_MS = 10 * 60 * 1000;

export class DiskCache {
  private bytes = 0;

  private constructor(readonly dir: string, readonly maxBytes: number) {}

  static open(dir: string, maxBytes: number): DiskCache {
    try {
      for (let i = 0; i < 256; i++) mkdirSync(join(dir, 'chunks', i.toString(16).padStart(2, '0')), { recursive: true });
      mkdirSync(join(dir, 'fetching'), { recursive: true });
    } catch (e) {
      throw new StoreError(dir, `cannot be used as a cache (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): give a folder this user may write (--cache-dir)`);
    }
    const cache = new DiskCache(dir, maxBytes);
    cache.bytes = cache.list().reduce((n, f) => n + f.bytes, 0);
    return cache;
  }

  get chunksDir(): string {
    return join(this.dir, 'chunks');
  }

  /** Bytes held, as this process last counted them. */
  get size(): number {
    return this.bytes;
  }

  has(hex: string): boolean {
    return existsSync(this.path(hex));
  }

  /** Takes a chunk in (written beside its name and renamed: a reader sees all of it or nothing), then keeps within the bound. */
  insert(hex: string, stored: Uint8Array): void {
    const path = this.path(hex);
    const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      writeFileSync(tmp, stored);
      renameSync(tmp, path);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch { /* never made */ }
      throw new StoreError(this.dir, `chunk ${hex} cannot be cached (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    this.bytes += stored.length;
    if (this.bytes > this.maxBytes) this.evict();
  }

  /** Deletes the least recently read chunks until the cache holds LOW_WATER of its bound; counts what other processes added too. */
  evict(): void {
    const files = this.list().sort((a, b) => a.atimeMs - b.atimeMs);
    let total = files.reduce((n, f) => n + f.bytes, 0);
    for (const f of files) {
      if (total <= this.maxBytes * LOW_WATER) break;
      try {
        unlinkSync(f.path);
      } catch { /* another process evicted it */ }
      total -= f.bytes;
    }
    this.bytes = total;
  }

  /** Deletes a cached chunk found damaged (it is fetched again). */
  discard(hex: string): void {
    try {
      const size = statSync(this.path(hex)).size;
      unlinkSync(this.path(hex));
      this.bytes -= size;
    } catch { /* gone already */ }
  }

  /** Marks a chunk as read now (for one found in the cache, not read by the core yet). */
  touch(hex: string): void {
    try {
      const now = new Date();
      utimesSync(this.path(hex), now, statSync(this.path(hex)).mtime);
    } catch { /* evicted meanwhile: fetched again when a fault needs it */ }
  }

  private path(hex: string): string {
    return join(this.chunksDir, chunkFileName(hex));
  }

  /** The cached chunks; writes left behind by killed processes (older than STALE_WRITE_MS) are deleted on the way. */
  private list(): Array<{ path: string; bytes: number; atimeMs: number }> {
    const out: Array<{ path: string; bytes: number; atimeMs: number }> = [];
    const now = Date.now();
    for (const sub of readdirSync(this.chunksDir)) {
      for (const f of readdirSync(join(this.chunksDir, sub))) {
        const path = join(this.chunksDir, sub, f);
        try {
          const st = statSync(path);
          if (f.length === 64) out.push({ path, bytes: st.size, atimeMs: st.atimeMs });
          else if (f.includes('.tmp-') && now - st.mtimeMs > STALE_WRITE_MS) unlinkSync(path);
        } catch { /* evicted, renamed or deleted meanwhile */ }
      }
    }
    return out;
  }
}
