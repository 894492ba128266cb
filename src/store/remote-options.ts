// The serving options of a store in a bucket (--store s3://BUCKET/PREFIX):
// the disk cache tier (--cache-dir, --cache-size), the fetch timeout, the
// endpoint, the prefetch GETs at once, hedging, following a name put again. What this version does not combine with it is refused in one line.
import { UsageError } from '../errors.js';
import { intOption } from '../tool-args.js';
import { parseS3Location } from './s3-location.js';
import type { RemoteOptions } from './remote-serving.js';
import type { HedgePolicy } from './chunk-fetcher.js';

export interface RemoteValues {
  'cache-dir'?: string;
  'cache-size'?: string;
  'fetch-timeout'?: string;
  'fetch-concurrency'?: string;
  'fetch-hedge'?: string;
  'fetch-readahead'?: string;
  's3-endpoint'?: string;
  follow?: string;
}

/** Prefetch GETs at once by default (docs/store-s3.md has the measurements). */
const DEFAULT_FETCH_CONCURRENCY = 16;
/** KiB of memory after a fault's chunk fetched ahead, on demand (docs/store-s3.md has the measurements). */
const DEFAULT_READAHEAD_KIB = 1024;
const DEFAULT_CACHE_BYTES = 10 * 2 ** 30;
/** Seconds between looks at the served name in the bucket (a GET of its manifest each). */
const DEFAULT_FOLLOW_S = 10;
const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** A size such as 512M or 20G (powers of 1024). */
export function sizeOption(v: string | undefined, option: string, def: number): number {
  if (v === undefined) return def;
  const m = /^([0-9]+)([KMGT]?)(?:i?B)?$/i.exec(v);
  const n = m ? Number(m[1]) * UNITS[m[2].toUpperCase()] : NaN;
  if (!m || n < 2 ** 20) throw new UsageError(`${option} must be a size of at least 1M, such as 512M or 20G, got ${v}`);
  return n;
}

export function remoteOptions(values: RemoteValues, location: string): RemoteOptions {
  parseS3Location(location);
  const cacheDir = values['cache-dir'];
  if (cacheDir === undefined) throw new UsageError(`${location}: serving from a store in a bucket needs --cache-dir DIR, the local disk cache of its chunks`);
  const endpoint = values['s3-endpoint'];
  if (endpoint !== undefined && !/^https?:\/\/[^/]/.test(endpoint)) throw new UsageError(`--s3-endpoint ${endpoint}: expected a URL such as http://127.0.0.1:8480`);
  return {
    location,
    endpoint,
    cacheDir,
    cacheBytes: sizeOption(values['cache-size'], '--cache-size', DEFAULT_CACHE_BYTES),
    fetchTimeoutMs: intOption(values['fetch-timeout'], '--fetch-timeout', { def: 30, min: 1, max: 3600 }) * 1000,
    fetchConcurrency: intOption(values['fetch-concurrency'], '--fetch-concurrency', { def: DEFAULT_FETCH_CONCURRENCY, min: 1, max: 256 }),
    hedge: hedgeOption(values['fetch-hedge']),
    readaheadBytes: intOption(values['fetch-readahead'], '--fetch-readahead', { def: DEFAULT_READAHEAD_KIB, min: 0, max: 65_536 }) * 1024,
    followMs: intOption(values.follow, '--follow', { def: DEFAULT_FOLLOW_S, min: 0, max: 86_400 }) * 1000,
  };
}

/** --fetch-hedge: auto (after the recent p99), off, or a fixed delay in ms. */
function hedgeOption(v: string | undefined): HedgePolicy {
  if (v === undefined || v === 'auto') return 'auto';
  if (v === 'off') return 'off';
  if (!/^[0-9]+$/.test(v)) throw new UsageError(`--fetch-hedge must be auto, off or a delay in milliseconds, got ${v}`);
  return intOption(v, '--fetch-hedge', { def: 0, min: 1, max: 600_000 });
}

/** The options that mean something only with a store in a bucket, given without one. */
export function refuseRemoteOnly(values: RemoteValues): void {
  for (const o of ['cache-dir', 'cache-size', 'fetch-timeout', 'fetch-concurrency', 'fetch-hedge', 'fetch-readahead', 's3-endpoint', 'follow'] as const) {
    if (values[o] !== undefined) throw new UsageError(`--${o} is for serving a store in a bucket (--store s3://BUCKET/PREFIX)`);
  }
}
