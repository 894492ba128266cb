// A store kept in a folder (a local disk, or a file system mounted on many
// hosts). Every write is made beside its final name and renamed (or linked,
// where a name must not be taken twice) into place, so a reader or a put
// killed at any moment never sees half an object. Layout in docs/store.md.
import {
  mkdirSync, readFileSync, writeFileSync, renameSync, linkSync, unlinkSync, statSync, utimesSync, readdirSync, openSync, closeSync, fsyncSync, existsSync,
} from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { StoreError } from '../errors.js';
import { syncFileSystem } from '../../native/fd.js';
import { chunkFileName } from '../core/named-chunks.js';
import {
  parseStoreInfo, checkSnapshotName, isSnapshotName, HEARTBEAT_MS, STORE_FORMAT, STORE_VERSION, type StoreInfo, type ChunkFile, type Registration,
} from './store.js';

// The names and rules every store shares, here as before for the serving side.
export { STORE_FORMAT, STORE_VERSION, REGISTRATION_LIVE_MS, registrationLive, checkSnapshotName, type StoreInfo, type ChunkFile, type Registration } from './store.js';

const code = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? '';

export class FolderStore {
  private constructor(readonly root: string, readonly info: StoreInfo) {}

  /** Opens the store at `root`; with `create`, makes it first if there is none (with `chunkBytes`). */
  static open(root: string, create?: { chunkBytes: number }): FolderStore {
    const infoPath = join(root, 'store.json');
    let text: string;
    try {
      text = readFileSync(infoPath, 'utf8');
    } catch (e) {
      if (code(e) !== 'ENOENT') throw new StoreError(root, `cannot be read (${code(e)}): check the path and its permissions`);
      if (!create) {
        if (!existsSync(root)) throw new StoreError(root, 'no such folder: give the folder of a store (`snapfault store put` makes one)');
        throw new StoreError(root, 'is not a snapfault store (no store.json): give the folder of a store (`snapfault store put` makes one)');
      }
      return FolderStore.create(root, create.chunkBytes);
    }
    const info = parseStoreInfo(root, text);
    return new FolderStore(root, info);
  }

  private static create(root: string, chunkBytes: number): FolderStore {
    try {
      mkdirSync(root, { recursive: true });
      for (const d of ['snapshots', 'digests', 'pending', 'leases', 'removed', 'trash']) mkdirSync(join(root, d), { recursive: true });
      for (let i = 0; i < 256; i++) mkdirSync(join(root, 'chunks', i.toString(16).padStart(2, '0')), { recursive: true });
      const info: StoreInfo = { format: STORE_FORMAT, version: STORE_VERSION, chunkBytes, pageBytes: 4096 };
      // Linked into place: of two puts making one store at once, one makes it and both use it.
      const tmp = join(root, `.store.json.${randomBytes(6).toString('hex')}`);
      writeFileSync(tmp, `${JSON.stringify(info)}\n`);
      try {
        linkSync(tmp, join(root, 'store.json'));
      } catch (e) {
        if (code(e) !== 'EEXIST') throw e;
      } finally {
        unlinkSync(tmp);
      }
    } catch (e) {
      if (e instanceof StoreError) throw e;
      throw new StoreError(root, `cannot be made (${code(e) || (e as Error).message}): check the path and its permissions`);
    }
    return FolderStore.open(root);
  }

  get chunksDir(): string {
    return join(this.root, 'chunks');
  }

  chunkPath(hex: string): string {
    return join(this.chunksDir, chunkFileName(hex));
  }

  /** Marks a chunk as in use now (gc spares chunks touched within its grace period); false when it does not exist. */
  touchChunk(hex: string): boolean {
    const now = new Date();
    try {
      utimesSync(this.chunkPath(hex), now, now);
      return true;
    } catch (e) {
      if (code(e) === 'ENOENT') return false;
      throw this.failure(`chunk ${hex} cannot be touched`, e);
    }
  }

  /** Writes a chunk unless it is there already (then touches it): true when written. */
  writeChunk(hex: string, bytes: Uint8Array): boolean {
    if (this.touchChunk(hex)) return false;
    this.writeBeside(this.chunkPath(hex), bytes, `chunk ${hex} cannot be written`);
    return true;
  }

  readChunk(hex: string): Buffer {
    try {
      return readFileSync(this.chunkPath(hex));
    } catch (e) {
      throw this.failure(`chunk ${hex} ${code(e) === 'ENOENT' ? 'is missing' : 'cannot be read'}`, e);
    }
  }

  chunkExists(hex: string): boolean {
    return existsSync(this.chunkPath(hex));
  }

  listChunks(): ChunkFile[] {
    const out: ChunkFile[] = [];
    for (const sub of readdirSync(this.chunksDir)) {
      for (const f of readdirSync(join(this.chunksDir, sub))) {
        if (f.length !== 64) continue; // a put's temporary file: see listTemporary
        try {
          const st = statSync(join(this.chunksDir, sub, f));
          out.push({ hex: f, bytes: st.size, mtimeMs: st.mtimeMs });
        } catch { /* deleted meanwhile */ }
      }
    }
    return out;
  }

  /** Temporary files of puts and gcs (chunks, manifests, packs) with their age: a killed one leaves them behind. */
  listTemporary(): Array<{ path: string; mtimeMs: number }> {
    const out: Array<{ path: string; mtimeMs: number }> = [];
    const dirs = [...readdirSync(this.chunksDir).map((s) => join(this.chunksDir, s)), join(this.root, 'snapshots'), join(this.root, 'digests')];
    for (const d of dirs) {
      for (const f of readdirSync(d)) {
        if (!f.includes('.tmp-')) continue;
        try {
          out.push({ path: join(d, f), mtimeMs: statSync(join(d, f)).mtimeMs });
        } catch { /* gone */ }
      }
    }
    return out;
  }

  removeTemporary(path: string): void {
    try {
      unlinkSync(path);
    } catch { /* gone */ }
  }

  /**
   * Deletes a chunk gc found unused, unless a put touched it since gc listed
   * it (mtime then differs): moved aside first, so a put touching it after
   * that finds it missing and stores its pages again. True when deleted.
   */
  deleteChunkIfUntouched(hex: string, listedMtimeMs: number): boolean {
    const aside = join(this.root, 'trash', hex);
    try {
      renameSync(this.chunkPath(hex), aside);
    } catch (e) {
      if (code(e) === 'ENOENT') return false;
      throw this.failure(`chunk ${hex} cannot be moved aside`, e);
    }
    if (statSync(aside).mtimeMs !== listedMtimeMs) {
      renameSync(aside, this.chunkPath(hex));
      return false;
    }
    unlinkSync(aside);
    return true;
  }

  /** Chunks a gc killed mid-delete left aside; put back those `keep` says, delete the rest. */
  recoverTrash(keep: (hex: string, mtimeMs: number) => boolean): void {
    const dir = join(this.root, 'trash');
    for (const f of readdirSync(dir)) {
      const path = join(dir, f);
      const st = statSync(path);
      if (f.length === 64 && keep(f, st.mtimeMs)) renameSync(path, this.chunkPath(f));
      else unlinkSync(path);
    }
  }

  /** Puts back a chunk a gc moved aside while a put was confirming it: true when it was there. */
  restoreFromTrash(hex: string): boolean {
    try {
      renameSync(join(this.root, 'trash', hex), this.chunkPath(hex));
      return true;
    } catch {
      return false;
    }
  }

  private manifestPath(name: string): string {
    return join(this.root, 'snapshots', name);
  }

  hasSnapshot(name: string): boolean {
    return existsSync(this.manifestPath(name));
  }

  readManifest(name: string): Buffer {
    checkSnapshotName(name);
    try {
      return readFileSync(this.manifestPath(name));
    } catch (e) {
      if (code(e) === 'ENOENT') throw new StoreError(this.root, `has no snapshot "${name}": \`snapfault store ls --store ${this.root}\` lists them`);
      throw this.failure(`snapshot "${name}" cannot be read`, e);
    }
  }

  /** Makes `name` refer to the manifest, durably, once everything it refers to is on disk; refused if the name is taken. */
  commitManifest(name: string, bytes: Buffer): void {
    const path = this.manifestPath(name);
    const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      const fd = openSync(tmp, 'w');
      try {
        writeFileSync(fd, bytes);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      this.syncAll();
      linkSync(tmp, path);
    } catch (e) {
      if (code(e) === 'EEXIST') throw new StoreError(this.root, `already has a snapshot "${name}": choose another name, or remove it first (snapfault store rm)`);
      throw this.failure(`snapshot "${name}" cannot be written`, e);
    } finally {
      try {
        unlinkSync(tmp);
      } catch { /* not made */ }
    }
    this.syncDir(join(this.root, 'snapshots'));
  }

  listSnapshots(): string[] {
    return readdirSync(join(this.root, 'snapshots')).filter((f) => isSnapshotName(f) && !f.includes('.tmp-')).sort();
  }

  /** Takes the name away; the manifest is kept under its identity while restores lease it (gc deletes it after). */
  retireManifest(name: string, identity: string): void {
    renameSync(this.manifestPath(name), join(this.root, 'removed', identity));
  }

  listRemoved(): string[] {
    return readdirSync(join(this.root, 'removed'));
  }

  readRemoved(identity: string): Buffer {
    return readFileSync(join(this.root, 'removed', identity));
  }

  deleteRemoved(identity: string): void {
    unlinkSync(join(this.root, 'removed', identity));
  }

  writeDigestPack(bytes: Buffer): string {
    const id = `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}`;
    this.writeBeside(join(this.root, 'digests', id), bytes, 'the dedup index cannot be written');
    return id;
  }

  listDigestPacks(): string[] {
    return readdirSync(join(this.root, 'digests')).filter((f) => !f.includes('.tmp-'));
  }

  readDigestPack(id: string): Buffer | null {
    try {
      return readFileSync(join(this.root, 'digests', id));
    } catch {
      return null; // removed by a gc meanwhile
    }
  }

  deleteDigestPack(id: string): void {
    try {
      unlinkSync(join(this.root, 'digests', id));
    } catch { /* already gone */ }
  }

  /**
   * Registers a put under way or a restore reading the store: gc spares what
   * it may use. The file is touched every 10 s until released; one left by a
   * killed process stops being live after REGISTRATION_LIVE_MS.
   */
  register(kind: 'pending' | 'leases', fields: Record<string, unknown>): { id: string; release: () => void } {
    const content = JSON.stringify({ ...fields, host: hostname(), pid: process.pid });
    const id = `${hostname()}-${process.pid}-${randomBytes(6).toString('hex')}`;
    const path = join(this.root, kind, id);
    writeFileSync(path, content);
    const timer = setInterval(() => {
      const now = new Date();
      try {
        utimesSync(path, now, now);
      } catch { /* gc took it for dead: it is rewritten below */ }
      if (!existsSync(path)) writeFileSync(path, content);
    }, HEARTBEAT_MS);
    timer.unref();
    let released = false;
    return {
      id,
      release: () => {
        if (released) return;
        released = true;
        clearInterval(timer);
        try {
          unlinkSync(path);
        } catch { /* gone */ }
      },
    };
  }

  listRegistrations(kind: 'pending' | 'leases'): Registration[] {
    const out: Registration[] = [];
    for (const f of readdirSync(join(this.root, kind))) {
      try {
        const path = join(this.root, kind, f);
        const mtimeMs = statSync(path).mtimeMs;
        let content: Registration['content'] = {};
        try {
          content = JSON.parse(readFileSync(path, 'utf8')) as Registration['content'];
        } catch { /* being written, or damaged: judged by its age alone */ }
        out.push({ id: f, mtimeMs, content });
      } catch { /* released meanwhile */ }
    }
    return out;
  }

  deleteRegistration(kind: 'pending' | 'leases', id: string): void {
    try {
      unlinkSync(join(this.root, kind, id));
    } catch { /* gone */ }
  }

  /** Everything written so far reaches the disk: chunks before the manifest that names them. */
  syncAll(): void {
    const fd = openSync(this.root, 'r');
    try {
      syncFileSystem(fd);
    } finally {
      closeSync(fd);
    }
  }

  private syncDir(dir: string): void {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Writes `bytes` beside `path` and renames it into place: a reader sees all of it or nothing; `what` names a failure. */
  private writeBeside(path: string, bytes: Uint8Array, what: string): void {
    const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      writeFileSync(tmp, bytes);
      renameSync(tmp, path);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch { /* never made */ }
      throw this.failure(what, e);
    }
  }

  private failure(what: string, e: unknown): StoreError {
    const c = code(e);
    const hint = c === 'ENOSPC' ? ': the disk is full' : c === 'EACCES' || c === 'EPERM' ? ': permission denied' : c === 'EROFS' ? ': read-only file system' : '';
    return new StoreError(this.root, `${what} (${c || (e as Error).message})${hint}`);
  }
}
