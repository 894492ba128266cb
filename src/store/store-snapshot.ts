// A snapshot in a store, opened for serving: its chain laid flat into the
// same descriptor a compressed file gets (page index, chunk table, cache),
// plus the chunks' names. The core then reads each chunk from its own file
// under the store's chunks folder and checks it against its name.
import { openSync, closeSync } from 'node:fs';
import { StoreError } from '../errors.js';
import { layOutDescriptor, CompressedSnapshot } from '../compressed/compressed-snapshot.js';
import { CODEC_LZ4, FORMAT_VERSION, PAGE_BYTES, CHUNK_ENTRY_BYTES, storedLength, storedRaw, type Header } from '../compressed/format.js';
import { NAME_BYTES } from './manifest.js';
import { readChain, flattenChain, type Layer, type FlatView } from './chain.js';
import type { FolderStore } from './folder-store.js';
import type { Core } from '../core/wasm-core.js';
import type { Arena } from '../core/arena.js';

/** How messages name a snapshot in a store. */
export function storeSnapshotLabel(store: FolderStore, name: string): string {
  return `${name} in store ${store.root}`;
}

export function openStoreSnapshot(store: FolderStore, name: string, core: Core, arena: Arena, cacheBytes: number): { snap: CompressedSnapshot; identities: string[] } {
  const chain = readChain(store, name);
  const snap = openChainSnapshot(chain, { root: store.root, chunksDir: store.chunksDir, label: storeSnapshotLabel(store, name) }, core, arena, cacheBytes);
  return { snap, identities: chain.map((l) => l.identity) };
}

/** Where a chain's chunks are read from (a store's chunks folder, or a disk cache of a bucket's), and how messages name it. */
export interface ChunkFolder {
  root: string;
  chunksDir: string;
  label: string;
}

/** A chain read already (and laid flat: `view`), laid out for serving with its chunks read by name under `at.chunksDir`. */
export function openChainSnapshot(chain: Layer[], at: ChunkFolder, core: Core, arena: Arena, cacheBytes: number, view: FlatView = flattenChain(chain)): CompressedSnapshot {
  const name = chain[0].name;
  const { label } = at;
  const store = { root: at.root };
  const blocks: number[] = [];
  const alloc = (n: number, align?: number): number => {
    const b = arena.alloc(n, align);
    blocks.push(b);
    return b;
  };
  let dirfd = -1;
  try {
    dirfd = openSync(at.chunksDir, 'r');
    const ppc = view.chunkBytes / PAGE_BYTES;
    const chunks = view.chunks.length;
    const index = alloc(view.pages * 4);
    new Uint32Array(core.memory.buffer, index, view.pages).set(view.index);
    const table = alloc(Math.max(chunks, 1) * CHUNK_ENTRY_BYTES);
    const names = alloc(Math.max(chunks, 1) * NAME_BYTES);
    const dv = new DataView(core.memory.buffer);
    const bytes = new Uint8Array(core.memory.buffer);
    const scratchMax = core.fn.lz4Bound(view.chunkBytes);
    view.chunks.forEach((c, i) => {
      const len = storedLength(c.stored);
      const raw = storedRaw(c.stored);
      if (len === 0 || (raw ? len !== view.chunkBytes : len > scratchMax)) throw new StoreError(store.root, `snapshot "${name}": chunk ${c.name.toString('hex')} has an impossible stored length: the manifest is damaged`);
      dv.setBigUint64(table + i * CHUNK_ENTRY_BYTES, 0n, true);
      dv.setUint32(table + i * CHUNK_ENTRY_BYTES + 8, c.stored >>> 0, true);
      dv.setUint32(table + i * CHUNK_ENTRY_BYTES + 12, c.checksum >>> 0, true);
      bytes.set(c.name, names + i * NAME_BYTES);
    });
    // Every chunk decodes to a whole chunk: a put pads its last one with zero pages.
    const storedPages = chunks * ppc;
    const descriptor = layOutDescriptor(core, alloc, {
      fd: dirfd, pages: view.pages, chunkBytes: view.chunkBytes, chunks, storedPages, codec: CODEC_LZ4, index, table, names, cacheBytes, everyStoredPageUsed: false,
    }, (why) => {
      throw new StoreError(store.root, `snapshot "${name}": ${why}: the manifest is damaged`);
    });
    const header: Header = {
      version: FORMAT_VERSION, originalSize: view.originalSize, pageBytes: PAGE_BYTES, chunkBytes: view.chunkBytes, codec: CODEC_LZ4, pages: view.pages,
      chunks, storedPages, zeroPages: 0, duplicatePages: 0, indexOffset: 0, chunkTableOffset: 0, dataOffset: 0, fileSize: 0, indexChecksum: 0, chunkTableChecksum: 0,
    };
    return CompressedSnapshot.assembled(label, dirfd, header, chain[0].identity, arena, descriptor, blocks);
  } catch (e) {
    for (const b of blocks) arena.freeBlock(b);
    if (dirfd >= 0) closeSync(dirfd);
    throw e;
  }
}
