// The store a --store value names: s3://bucket/prefix is a bucket, anything
// else a folder. The S3 client is imported only for an s3:// store: it costs
// ~100 ms to load (docs/store-s3.md), which a folder store need not pay.
import { FolderBackend } from './folder-backend.js';
import { isS3Location } from './s3-location.js';
import type { Store } from './store.js';

export interface OpenOptions {
  /** --s3-endpoint */
  s3Endpoint?: string;
  /** Make the store if there is none, with chunks of this size. */
  create?: { chunkBytes: number };
  /** A bucket: new chunks in packs of this many bytes (0: each an object of its own); its default otherwise. */
  packBytes?: number;
}

export async function openStore(location: string, opts: OpenOptions = {}): Promise<Store> {
  if (!isS3Location(location)) return FolderBackend.open(location, opts.create);
  const { S3Store } = await import('./s3-store.js');
  return S3Store.open(location, { endpoint: opts.s3Endpoint, packBytes: opts.packBytes }, opts.create);
}
