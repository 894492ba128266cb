// What a failed chunk load (a negative CHUNK_ERR from the core) means, in words.
import type { CoreLayout } from '../core/wasm-core.js';

export function chunkErrorText(L: CoreLayout, err: number): string {
  if (err === L.CHUNK_ERR_CHECKSUM) return 'fails its checksum';
  if (err === L.CHUNK_ERR_DECODE) return 'does not decode';
  if (err === L.CHUNK_ERR_IO) return 'cannot be read (was the file truncated?)';
  if (err === L.CHUNK_ERR_RANGE) return 'lies outside the file';
  return `fails (${err})`;
}
