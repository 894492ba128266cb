// `snapfault store flatten`: a layered snapshot's chain as one new snapshot
// with no parent. No chunk is copied: the new manifest refers to the chain's.
import { StoreError } from '../errors.js';
import { encodeManifest, manifestIdentity } from './manifest.js';
import { readChainOf, flattenChain } from './chain.js';
import { checkSnapshotName, chunkAt, type Store } from './store.js';

export async function flattenSnapshot(store: Store, name: string, into: string): Promise<{ identity: string; layers: number; chunks: number }> {
  checkSnapshotName(into);
  if (await store.hasSnapshot(into)) throw new StoreError(store.root, `already has a snapshot "${into}": choose another name, or remove it first (snapfault store rm)`);
  const chain = await readChainOf(store, name);
  const view = flattenChain(chain);
  // Touched so that a gc racing with this spares them, as for a put.
  const there = await Promise.all(view.chunks.map((c) => store.touchChunk(chunkAt(c))));
  const missing = view.chunks.find((_, i) => !there[i]);
  if (missing) throw new StoreError(store.root, `snapshot "${name}" uses chunk ${missing.name.toString('hex')}, which is missing: run snapfault store verify ${name}`);
  const bytes = encodeManifest({
    originalSize: view.originalSize, chunkBytes: view.chunkBytes, pages: view.pages, createdMs: Date.now(), parent: null, chunks: view.chunks, pageTable: view.index,
  });
  await store.commitManifest(into, bytes);
  return { identity: manifestIdentity(bytes), layers: chain.length, chunks: view.chunks.length };
}
