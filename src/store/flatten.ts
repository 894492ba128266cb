// `snapfault store flatten`: a layered snapshot's chain as one new snapshot
// with no parent. No chunk is copied: the new manifest refers to the chain's.
import { StoreError } from '../errors.js';
import { encodeManifest, manifestIdentity } from './manifest.js';
import { readChain, flattenChain } from './chain.js';
import { checkSnapshotName, type FolderStore } from './folder-store.js';

export function flattenSnapshot(store: FolderStore, name: string, into: string): { identity: string; layers: number; chunks: number } {
  checkSnapshotName(into);
  if (store.hasSnapshot(into)) throw new StoreError(store.root, `already has a snapshot "${into}": choose another name, or remove it first (snapfault store rm)`);
  const chain = readChain(store, name);
  const view = flattenChain(chain);
  // Touched so that a gc racing with this spares them, as for a put.
  for (const c of view.chunks) {
    if (!store.touchChunk(c.name.toString('hex'))) throw new StoreError(store.root, `snapshot "${name}" uses chunk ${c.name.toString('hex')}, which is missing: run snapfault store verify ${name}`);
  }
  const bytes = encodeManifest({
    originalSize: view.originalSize, chunkBytes: view.chunkBytes, pages: view.pages, createdMs: Date.now(), parent: null, chunks: view.chunks, pageTable: view.index,
  });
  store.commitManifest(into, bytes);
  return { identity: manifestIdentity(bytes), layers: chain.length, chunks: view.chunks.length };
}
