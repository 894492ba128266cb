// Open snapshots, shared by every VM restored from the same file. A file that
// was replaced or rewritten since it was opened is opened anew, so a
// long-running handler never serves a stale snapshot's bytes.
import { statSync, closeSync } from 'node:fs';
import { openSnapshotFile, firstBytes, snapshotFileError } from './open-file.js';
import { RawSnapshot, fileIdentity } from './raw-file.js';
import { CompressedSnapshot } from '../compressed/compressed-snapshot.js';
import { isCompressed } from '../compressed/format.js';
import { startZeroScan, type ZeroScan } from './zero-scan.js';
import type { Core } from '../core/wasm-core.js';
import type { Arena } from '../core/arena.js';
import type { Logger } from '../log.js';
import { openStoreSnapshot } from '../store/store-snapshot.js';
import { manifestIdentity } from '../store/manifest.js';
import type { FolderStore } from '../store/folder-store.js';
import { StoreError } from '../errors.js';

/** A memory file as served: raw (mapped) or compressed (decoded through the core's cache). */
export type ServedSnapshot = RawSnapshot | CompressedSnapshot;

/** The snapshots one name has held, kept open by their owner, each for as long as its VMs need it. */
export interface PinnedSnapshots {
  readonly name: string;
  /** What the name holds now, counted as used once more. */
  acquire(): CompressedSnapshot;
  /** A VM on `snap` ended; false if `snap` is not one of these. */
  release(snap: CompressedSnapshot): boolean;
  all(): CompressedSnapshot[];
  close(): Promise<void>;
}

interface Entry {
  snap: ServedSnapshot;
  users: number;
  scan: ZeroScan | null;
  /** A store's snapshot is leased while open: gc keeps its manifests and chunks even if it is removed meanwhile. */
  lease: (() => void) | null;
}

export class SnapshotCache {
  private readonly current = new Map<string, Entry>();
  private readonly retired = new Set<Entry>();
  /** Told the zero bitmap of each raw file whose scan finished: its VMs' zero ranges can grow (src/worker/zero-ranges.ts). */
  onScanned: (zeroBitmap: number) => void = () => {};

  constructor(
    private readonly core: Core,
    private readonly module: WebAssembly.Module,
    private readonly arena: Arena,
    private readonly zeroScan: boolean,
    private readonly activity: number,
    private readonly cacheBytes: number,
    private readonly log: Logger,
    /** With a store, snapshots are named in it rather than given by path. */
    private readonly store: FolderStore | null = null,
    /** Snapshots of one name opened and kept by the caller (a store in a bucket: src/store/remote-serving.ts). */
    private readonly pinned: PinnedSnapshots | null = null,
  ) {}

  /** The snapshot at path (or of that name in the store) as it is now; release it when the VM ends. */
  acquire(path: string): ServedSnapshot {
    if (this.pinned?.name === path) return this.pinned.acquire();
    if (this.store) return this.acquireFromStore(this.store, path);
    let identity: string;
    try {
      identity = fileIdentity(statSync(path));
    } catch (e) {
      throw snapshotFileError(path, e);
    }
    return this.use(path, identity, () => {
      if (startsCompressed(path)) return { snap: CompressedSnapshot.open(path, identity, this.core, this.arena, this.cacheBytes), users: 0, scan: null, lease: null };
      const snap = RawSnapshot.open(path, this.core, this.arena);
      return { snap, users: 0, scan: this.zeroScan ? this.scan(snap) : null, lease: null };
    });
  }

  /** The open entry for `key` if it is still `identity` (one that is not is retired), else `open()`'s; counted as used once more. */
  private use(key: string, identity: string, open: () => Entry): ServedSnapshot {
    let entry = this.current.get(key);
    if (entry && entry.snap.identity !== identity) {
      this.current.delete(key);
      this.retire(entry);
      entry = undefined;
    }
    if (!entry) {
      entry = open();
      this.current.set(key, entry);
    }
    entry.users++;
    return entry.snap;
  }

  /** A snapshot of the store: reopened when its name now holds another snapshot (removed and put again). */
  private acquireFromStore(store: FolderStore, name: string): ServedSnapshot {
    const identity = manifestIdentity(store.readManifest(name));
    return this.use(name, identity, () => {
      const { snap, identities } = openStoreSnapshot(store, name, this.core, this.arena, this.cacheBytes);
      const lease = store.register('leases', { identities });
      // Removed (and collected) between the read and the lease? Then its chunks may be gone: refuse now, not at a fault.
      let still = false;
      try {
        still = manifestIdentity(store.readManifest(name)) === identity;
      } catch { /* removed */ }
      if (!still) {
        lease.release();
        snap.close();
        throw new StoreError(store.root, `snapshot "${name}" was removed or replaced while it was being opened: try again`);
      }
      return { snap, users: 0, scan: null, lease: lease.release };
    });
  }

  /**
   * Opens the decoded-chunk cache locks `owner` holds in every compressed
   * snapshot: a thread that died holding them (chunk_cache.ts). The locks opened.
   */
  releaseLocks(owner: number): number {
    const L = this.core.layout;
    const dv = new DataView(this.core.memory.buffer);
    let opened = 0;
    const snaps = [...this.current.values(), ...this.retired].map((e) => e.snap).concat(this.pinned?.all() ?? []);
    for (const snap of snaps) {
      if (snap instanceof CompressedSnapshot) opened += this.core.fn.cacheReleaseOwner(dv.getUint32(snap.descriptor + L.SNAP_CACHE, true), owner);
    }
    return opened;
  }

  release(snap: ServedSnapshot): void {
    if (snap instanceof CompressedSnapshot && this.pinned?.release(snap)) return;
    for (const e of [...this.current.values(), ...this.retired]) {
      if (e.snap !== snap) continue;
      e.users--;
      if (this.retired.has(e)) this.retire(e);
      return;
    }
  }

  async close(): Promise<void> {
    for (const e of [...this.current.values(), ...this.retired]) {
      await e.scan?.stop();
      e.snap.close();
      e.lease?.();
    }
    this.current.clear();
    this.retired.clear();
    await this.pinned?.close();
  }

  private scan(snap: RawSnapshot): ZeroScan {
    const scan = startZeroScan(snap, this.module, this.core.memory, this.arena, this.activity);
    void scan.done.then((r) => {
      if (r.error && r.error !== 'stopped') this.log.warn(`zero-page scan of ${snap.path} stopped: ${r.error}`, { event: 'zero_scan_stopped', file: snap.path });
      else if (!r.error) {
        this.log.debug(`zero-page scan of ${snap.path}: ${r.zeroPages} of ${snap.pages} pages are zero`, { event: 'zero_scan', file: snap.path, zeroPages: r.zeroPages, pages: snap.pages });
        this.onScanned(snap.zeroBitmap);
      }
    });
    return scan;
  }

  private retire(e: Entry): void {
    this.retired.add(e);
    if (e.users > 0) return;
    this.retired.delete(e);
    const close = async (): Promise<void> => {
      await e.scan?.stop();
      e.snap.close();
      e.lease?.();
    };
    void close();
  }
}

/** Compressed snapshots are told apart by their first bytes, whatever their name. */
function startsCompressed(path: string): boolean {
  const fd = openSnapshotFile(path);
  try {
    return isCompressed(firstBytes(fd));
  } finally {
    closeSync(fd);
  }
}
