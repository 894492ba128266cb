// The folder store (folder-store.ts) behind the Store interface the store
// commands use. The folder store stays synchronous because serving reads it
// from the fault path; this only hands its answers back as promises.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FolderStore } from './folder-store.js';
import { StoreError } from '../errors.js';
import type { Store, StoreInfo, ChunkFile, Registration, RegistrationKind, Held, StoreUsage, ChunkAt, ChunkPlace } from './store.js';

export class FolderBackend implements Store {
  constructor(readonly folder: FolderStore) {}

  static async open(root: string, create?: { chunkBytes: number }): Promise<FolderBackend> {
    return new FolderBackend(FolderStore.open(root, create));
  }

  get root(): string {
    return this.folder.root;
  }

  get info(): StoreInfo {
    return this.folder.info;
  }

  /** A folder store keeps every chunk in a file of its own: a manifest saying otherwise was not written for it. */
  private own(at: ChunkAt): string {
    if (at.pack !== null) throw new StoreError(this.root, `chunk ${at.hex} is recorded in pack ${at.pack}, and a folder store has no packs: the manifest is damaged`);
    return at.hex;
  }

  async touchChunk(at: ChunkAt): Promise<boolean> {
    return this.folder.touchChunk(this.own(at));
  }

  async writeChunk(hex: string, bytes: Uint8Array): Promise<ChunkPlace | null> {
    return this.folder.writeChunk(hex, bytes) ? { pack: null, offset: 0 } : null;
  }

  /** Every chunk is on disk by the time writeChunk resolves. */
  async flushChunks(): Promise<void> { /* nothing held back */ }

  async readChunk(at: ChunkAt): Promise<Buffer> {
    return this.folder.readChunk(this.own(at));
  }

  async chunkExists(at: ChunkAt): Promise<boolean> {
    return this.folder.chunkExists(this.own(at));
  }

  async listChunks(): Promise<ChunkFile[]> {
    return this.folder.listChunks();
  }

  async listPacks(): Promise<ChunkFile[]> {
    return [];
  }

  async deletePackIfUntouched(): Promise<boolean> {
    return false;
  }

  async listTemporary(): Promise<Array<{ key: string; mtimeMs: number }>> {
    return this.folder.listTemporary().map((t) => ({ key: t.path, mtimeMs: t.mtimeMs }));
  }

  async removeTemporary(key: string): Promise<void> {
    this.folder.removeTemporary(key);
  }

  /** A rename makes the check exact here: the mtime of the chunk moved aside is compared with the one listed. */
  async deleteChunkIfUntouched(hex: string, listedMtimeMs: number): Promise<boolean> {
    return this.folder.deleteChunkIfUntouched(hex, listedMtimeMs);
  }

  async recoverTrash(keep: (hex: string, mtimeMs: number) => boolean): Promise<void> {
    this.folder.recoverTrash(keep);
  }

  async restoreFromTrash(hex: string): Promise<boolean> {
    return this.folder.restoreFromTrash(hex);
  }

  async hasSnapshot(name: string): Promise<boolean> {
    return this.folder.hasSnapshot(name);
  }

  async readManifest(name: string): Promise<Buffer> {
    return this.folder.readManifest(name);
  }

  async commitManifest(name: string, bytes: Buffer): Promise<void> {
    this.folder.commitManifest(name, bytes);
  }

  async listSnapshots(): Promise<string[]> {
    return this.folder.listSnapshots();
  }

  async retireManifest(name: string, identity: string): Promise<void> {
    this.folder.retireManifest(name, identity);
  }

  async listRemoved(): Promise<string[]> {
    return this.folder.listRemoved();
  }

  async readRemoved(identity: string): Promise<Buffer> {
    return this.folder.readRemoved(identity);
  }

  async deleteRemoved(identity: string): Promise<void> {
    this.folder.deleteRemoved(identity);
  }

  async writeDigestPack(bytes: Buffer): Promise<string> {
    return this.folder.writeDigestPack(bytes);
  }

  async listDigestPacks(): Promise<string[]> {
    return this.folder.listDigestPacks();
  }

  async readDigestPack(id: string): Promise<Buffer | null> {
    return this.folder.readDigestPack(id);
  }

  async deleteDigestPack(id: string): Promise<void> {
    this.folder.deleteDigestPack(id);
  }

  async register(kind: RegistrationKind, fields: Record<string, unknown>): Promise<Held> {
    const r = this.folder.register(kind, fields);
    return { id: r.id, release: async () => r.release() };
  }

  async listRegistrations(kind: RegistrationKind): Promise<Registration[]> {
    return this.folder.listRegistrations(kind);
  }

  async deleteRegistration(kind: RegistrationKind, id: string): Promise<void> {
    this.folder.deleteRegistration(kind, id);
  }

  async usage(): Promise<StoreUsage> {
    const files = this.folder.listChunks();
    let metadataBytes = 0;
    for (const d of ['snapshots', 'digests', 'removed']) {
      for (const f of readdirSync(join(this.root, d))) {
        try {
          metadataBytes += statSync(join(this.root, d, f)).size;
        } catch { /* gone */ }
      }
    }
    return { chunks: files.length, packs: 0, chunkBytes: files.reduce((n, f) => n + f.bytes, 0), metadataBytes };
  }

  async close(): Promise<void> { /* nothing held */ }
}
