// s3://bucket/prefix: where a store lives in object storage.
import { UsageError } from '../errors.js';

export interface S3Location {
  bucket: string;
  /** Without leading or trailing '/'; '' for the bucket's root. */
  prefix: string;
  /** The object key of a path inside the store. */
  key: (path: string) => string;
}

export function isS3Location(s: string): boolean {
  return s.startsWith('s3://');
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function parseS3Location(url: string): S3Location {
  const rest = url.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
  if (!BUCKET.test(bucket)) throw new UsageError(`${url}: "${bucket}" is not a bucket name: write s3://BUCKET/PREFIX (3-63 lower-case letters, digits, '.' and '-')`);
  return { bucket, prefix, key: (path) => (prefix === '' ? path : `${prefix}/${path}`) };
}
