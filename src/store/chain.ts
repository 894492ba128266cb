// A snapshot and the parents it is layered on, read and checked, and the one
// flat view of them that serving, verify and flatten use: each page's chunk
// and slot, from the topmost layer that holds it.
import { StoreError } from '../errors.js';
import { decodeManifest, manifestIdentity, PAGE_IS_ZERO, PAGE_IN_PARENT, type ChunkRecord, type Manifest } from './manifest.js';
import type { FolderStore } from './folder-store.js';
import type { Store } from './store.js';

export interface Layer {
  name: string;
  identity: string;
  manifest: Manifest;
  bytes: number;
}

export interface FlatView {
  pages: number;
  chunkBytes: number;
  originalSize: number;
  /** Every chunk some page uses, once. */
  chunks: ChunkRecord[];
  /** pages x u32: PAGE_IS_ZERO, or chunk * pagesPerChunk + slot into `chunks`. */
  index: Uint32Array;
}

const MAX_DEPTH = 256;

function decodeLayer(root: string, name: string, bytes: Buffer): Layer {
  try {
    return { name, identity: manifestIdentity(bytes), manifest: decodeManifest(bytes), bytes: bytes.length };
  } catch (e) {
    throw new StoreError(root, `snapshot "${name}" ${(e as Error).message}`);
  }
}

/**
 * The walk down a chain, apart from how manifests are read: it yields each
 * name it needs and is sent back that manifest's bytes (or the error reading
 * it), so serving reads a folder store synchronously and the store commands
 * read any store asynchronously with the same checks.
 */
function* walkChain(root: string, name: string): Generator<string, Layer[], Buffer> {
  const chain = [decodeLayer(root, name, yield name)];
  for (let top = chain[0]; top.manifest.parent; top = chain[chain.length - 1]) {
    const want = top.manifest.parent;
    if (chain.length >= MAX_DEPTH) throw new StoreError(root, `snapshot "${name}" has more than ${MAX_DEPTH} layers: flatten it (snapfault store flatten)`);
    let parent: Layer;
    try {
      parent = decodeLayer(root, want.name, yield want.name);
    } catch (e) {
      throw new StoreError(root, `snapshot "${top.name}" is layered on "${want.name}", which ${e instanceof StoreError && e.message.includes('has no snapshot') ? 'is missing' : 'cannot be read'}: the chain is broken`);
    }
    if (parent.identity !== want.identity) throw new StoreError(root, `snapshot "${top.name}" is layered on "${want.name}", but that name now holds another snapshot: the chain is broken`);
    if (parent.manifest.originalSize !== top.manifest.originalSize || parent.manifest.chunkBytes !== top.manifest.chunkBytes) {
      throw new StoreError(root, `snapshot "${top.name}" and its parent "${want.name}" differ in size: the chain is broken`);
    }
    chain.push(parent);
  }
  return chain;
}

export function readLayer(store: FolderStore, name: string): Layer {
  return decodeLayer(store.root, name, store.readManifest(name));
}

export async function readLayerOf(store: Store, name: string): Promise<Layer> {
  return decodeLayer(store.root, name, await store.readManifest(name));
}

/** The snapshot `name` first, then its parent, and so on (a folder store, read synchronously: serving). */
export function readChain(store: FolderStore, name: string): Layer[] {
  const walk = walkChain(store.root, name);
  let step = walk.next();
  while (!step.done) {
    let bytes: Buffer;
    try {
      bytes = store.readManifest(step.value);
    } catch (e) {
      step = walk.throw(e);
      continue;
    }
    step = walk.next(bytes);
  }
  return step.value;
}

/** The same, of any store. */
export async function readChainOf(store: Store, name: string, topBytes: Buffer | null = null): Promise<Layer[]> {
  const walk = walkChain(store.root, name);
  let step = walk.next();
  // `topBytes`: the top manifest as the caller just read it (one GET fewer).
  let known = topBytes;
  while (!step.done) {
    let bytes: Buffer;
    try {
      bytes = known ?? await store.readManifest(step.value);
      known = null;
    } catch (e) {
      step = walk.throw(e);
      continue;
    }
    step = walk.next(bytes);
  }
  return step.value;
}

/** Lays a chain's layers over each other. */
export function flattenChain(chain: Layer[]): FlatView {
  const top = chain[0].manifest;
  const ppc = top.chunkBytes / 4096;
  const index = new Uint32Array(top.pages);
  const chunks: ChunkRecord[] = [];
  const ordinals = new Map<string, number>();
  // Per layer, its chunk ordinals in the flat list, made on first use.
  const remap = chain.map((l) => new Int32Array(l.manifest.chunks.length).fill(-1));
  for (let p = 0; p < top.pages; p++) {
    let v = PAGE_IN_PARENT;
    let layer = 0;
    for (; layer < chain.length; layer++) {
      v = chain[layer].manifest.pageTable[p];
      if (v !== PAGE_IN_PARENT) break;
    }
    if (v === PAGE_IS_ZERO || v === PAGE_IN_PARENT) {
      index[p] = PAGE_IS_ZERO; // a base (no parent) never says "parent": decodeManifest checked
      continue;
    }
    const c = Math.floor(v / ppc);
    let o = remap[layer][c];
    if (o < 0) {
      const rec = chain[layer].manifest.chunks[c];
      const key = rec.name.toString('hex');
      const known = ordinals.get(key);
      o = known ?? chunks.push(rec) - 1;
      if (known === undefined) ordinals.set(key, o);
      remap[layer][c] = o;
    }
    index[p] = o * ppc + (v % ppc);
  }
  return { pages: top.pages, chunkBytes: top.chunkBytes, originalSize: top.originalSize, chunks, index };
}
