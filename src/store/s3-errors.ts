// What went wrong talking to an S3 store, as one line that says what to do:
// the SDK's errors carry a stack, an HTTP status and a code, none of which
// tells a user to start the store or fix the credentials.
import type { S3Location } from './s3-location.js';

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  errors?: Array<{ code?: string }>;
  cause?: { code?: string };
  $metadata?: { httpStatusCode?: number };
}

const NETWORK = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'TimeoutError', 'RequestTimeout']);
const CREDENTIALS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken', 'ExpiredToken', 'TokenRefreshRequired', 'InvalidClientTokenId']);

/** A 404 for the object itself (not for the bucket). */
export function isMissing(e: unknown): boolean {
  const x = e as SdkError;
  if (x.name === 'NoSuchBucket' || x.code === 'NoSuchBucket') return false;
  return x.name === 'NoSuchKey' || x.name === 'NotFound' || (x.$metadata?.httpStatusCode === 404 && x.name !== 'NoSuchBucket');
}

/** Any 404, the bucket's included: what a copy whose source vanished mid-request gets from Swift (S3Store.copy). */
export function isNotFound(e: unknown): boolean {
  return (e as SdkError).$metadata?.httpStatusCode === 404;
}

function networkCode(x: SdkError): string | null {
  for (const c of [x.code, x.name, x.cause?.code, ...(x.errors ?? []).map((i) => i.code)]) if (c && NETWORK.has(c)) return c;
  return null;
}

export function describeS3Failure(e: unknown, what: string, at: S3Location, endpoint: string): string {
  const x = (e ?? {}) as SdkError;
  const net = networkCode(x);
  if (net) return `cannot be reached at ${endpoint} (${net}): check --s3-endpoint (or AWS_ENDPOINT_URL) and that the object store is running`;
  if (x.name === 'CredentialsProviderError') return 'no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a shared credentials file';
  if (x.name === 'NoSuchBucket') return `bucket "${at.bucket}" does not exist at ${endpoint}: create it first, or check the name`;
  const status = x.$metadata?.httpStatusCode;
  if ((x.name && CREDENTIALS.has(x.name)) || status === 403) {
    return `${endpoint} refused the credentials (${x.name ?? status}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and that they may use bucket "${at.bucket}"`;
  }
  if (x.message?.includes('Region is missing')) return 'no region set: set AWS_REGION (or give --s3-endpoint for an S3-compatible store)';
  const first = (x.message ?? String(e)).split('\n')[0];
  return `${what} (${x.name ?? 'error'}${status ? `, HTTP ${status}` : ''}: ${first})`;
}
