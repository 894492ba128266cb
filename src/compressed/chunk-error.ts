// What a failed chunk load (a negative CHUNK_ERR from the core) means, in words.
import type { Core, CoreLayout } from '../core/wasm-core.js';

export function chunkErrorText(L: CoreLayout, err: number): string {
  if (err === L.CHUNK_ERR_CHECKSUM) return 'fails its checksum';
  if (err === L.CHUNK_ERR_DECODE) return 'does not decode';
  if (err === L.CHUNK_ERR_IO) return 'cannot be read (was the file truncated?)';
  if (err === L.CHUNK_ERR_RANGE) return 'lies outside the file';
  if (err === L.CHUNK_ERR_NAME) return 'is not what its name says (a wrong or altered object in the store)';
  if (err === L.CHUNK_ERR_ABSENT) return 'is missing from the store (run snapfault store verify)';
  return `fails (${err})`;
}

/** Chunk c of the snapshot descriptor `snap` as messages name it: a store's chunk by its name (SHA-256), a file's by number. */
export function chunkLabel(core: Core, snap: number, c: number): string {
  const L = core.layout;
  const dv = new DataView(core.memory.buffer);
  const names = dv.getUint32(snap + L.SNAP_NAMES, true);
  if (names === 0) return `chunk ${c} of the compressed snapshot`;
  return `chunk ${Buffer.from(core.memory.buffer, names + c * L.CHUNK_NAME_BYTES, L.CHUNK_NAME_BYTES).toString('hex')} of the snapshot in the store`;
}

/** Why chunk c could not be served, in one phrase. */
export function chunkFailureText(core: Core, snap: number, c: number, err: number): string {
  const L = core.layout;
  const io = err === L.CHUNK_ERR_IO && new DataView(core.memory.buffer).getUint32(snap + L.SNAP_NAMES, true) !== 0;
  return `${chunkLabel(core, snap, c)} ${io ? 'cannot be read (missing from the store? run snapfault store verify)' : chunkErrorText(L, err)}`;
}
