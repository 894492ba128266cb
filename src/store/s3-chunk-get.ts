// Chunk GETs for serving, without the SDK's request pipeline. Signed with
// AWS's own SigV4 signer and the S3 client's credentials (its full provider
// chain, refreshed as the SDK refreshes them), sent over a keep-alive agent
// of node:http(s). Measured against the project's Swift (16 at once): the
// SDK spends 1.7-2.0 ms of CPU on a 32 KiB GET and 3.0-3.7 ms on a 512 KiB
// one, this 0.5-0.7 and 1.4-2.2 ms, and a cold restore's GETs are on the
// same two CPUs as the guest and the store (docs/store-s3.md, The client).
// Only for a store given with an endpoint (path-style addressing, which is
// how S3-compatible stores are reached); AWS itself goes through the SDK.
// Failures are shaped like the SDK's (name, $metadata.httpStatusCode), so
// s3-errors.ts describes both alike.
import http from 'node:http';
import https from 'node:https';
import { SignatureV4 } from '@smithy/signature-v4';
import type { S3Client } from '@aws-sdk/client-s3';

/** A GET with no answer this long is abandoned (the fetcher hedges and retries well before: chunk-fetcher.ts). */
const REQUEST_TIMEOUT_MS = 60_000;

/** An HTTP error or a failed request, in the SDK's shape. */
export class ChunkGetError extends Error {
  constructor(message: string, override readonly name: string, readonly $metadata: { httpStatusCode?: number }, readonly code?: string) {
    super(message);
  }
}

/** RFC 3986 escaping of one path segment, as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
function escapeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export class ChunkGetter {
  private readonly signer: SignatureV4;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;

  constructor(client: S3Client, private readonly endpoint: URL, private readonly bucket: string, region: string, maxSockets: number) {
    this.signer = new SignatureV4({
      credentials: client.config.credentials, region, service: 's3', sha256: client.config.sha256, uriEscapePath: false, applyChecksum: false,
    });
    const secure = endpoint.protocol === 'https:';
    this.transport = secure ? https : http;
    this.agent = secure ? new https.Agent({ keepAlive: true, maxSockets }) : new http.Agent({ keepAlive: true, maxSockets });
  }

  /**
   * The object's bytes (`range`: bytes [start, end) of it, a ranged GET), or
   * null when there is no such key (404 NoSuchKey). `signal` abandons it
   * (the socket is closed).
   */
  async get(key: string, signal?: AbortSignal, range?: [number, number]): Promise<Buffer | null> {
    if (signal?.aborted) throw new ChunkGetError('abandoned before it was sent', 'AbortError', {});
    const base = this.endpoint.pathname.replace(/\/+$/, '');
    const path = `${base}/${escapeSegment(this.bucket)}/${key.split('/').map(escapeSegment).join('/')}`;
    const port = this.endpoint.port ? Number(this.endpoint.port) : undefined;
    const signed = await this.signer.sign({
      method: 'GET', protocol: this.endpoint.protocol, hostname: this.endpoint.hostname, port, path,
      headers: { host: this.endpoint.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...(range ? { range: `bytes=${range[0]}-${range[1] - 1}` } : {}) },
    });
    return new Promise<Buffer | null>((resolve, reject) => {
      const req = this.transport.request({
        host: this.endpoint.hostname, port, path, method: 'GET', headers: signed.headers, agent: this.agent, timeout: REQUEST_TIMEOUT_MS,
      }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('error', (e: NodeJS.ErrnoException) => reject(new ChunkGetError(e.message, 'ResponseError', {}, e.code)));
        // A connection lost mid-body may end the response with neither 'end' nor 'error' (a settled promise ignores this).
        res.on('close', () => {
          if (!res.complete) reject(new ChunkGetError('the connection closed before the whole response came', 'ResponseError', { httpStatusCode: res.statusCode }, 'ECONNRESET'));
        });
        res.on('end', () => {
          const body = Buffer.concat(parts);
          const status = res.statusCode ?? 0;
          if (status === (range ? 206 : 200)) {
            const expected = Number(res.headers['content-length']);
            // A response cut short is an error here; one with the wrong bytes is caught by the chunk's name.
            if (Number.isFinite(expected) && expected !== body.length) reject(new ChunkGetError(`response cut short: ${body.length} of ${expected} bytes`, 'TruncatedResponse', { httpStatusCode: status }));
            else resolve(body);
            return;
          }
          const xml = body.toString('utf8');
          const code = /<Code>([^<]*)<\/Code>/.exec(xml)?.[1] ?? (status === 404 ? 'NotFound' : `HTTP${status}`);
          if (status === 404 && code !== 'NoSuchBucket') {
            resolve(null);
            return;
          }
          const message = /<Message>([^<]*)<\/Message>/.exec(xml)?.[1] ?? `HTTP ${status}`;
          reject(new ChunkGetError(message, code, { httpStatusCode: status }));
        });
      });
      signal?.addEventListener('abort', () => req.destroy(new ChunkGetError('abandoned', 'AbortError', {})), { once: true });
      req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`), { code: 'ETIMEDOUT' })));
      req.on('error', (e: NodeJS.ErrnoException) => reject(e instanceof ChunkGetError ? e : new ChunkGetError(e.message, e.code ?? 'RequestError', {}, e.code)));
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
