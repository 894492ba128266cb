// A store kept in an S3 bucket (AWS, or any S3-compatible object store:
// tested against OpenStack Swift's s3api). Same layout as the folder store
// (docs/store.md), under s3://bucket/prefix. A bucket has no rename and no
// hard link, so what those gave the folder store is rebuilt from what S3
// does give (docs/store-s3.md):
//   - every PUT is atomic: an object is whole or absent, no temporary names;
//   - a touch is a copy of the object onto itself (new LastModified), and
//     gc's "unchanged since listed" check reads LastModified back just
//     before the delete;
//   - a manifest's name is taken by a claim object and a listing (no
//     conditional PUT on Swift): see commitManifest.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import {
  S3Client, GetObjectCommand, PutObjectCommand, HeadObjectCommand, DeleteObjectCommand, CopyObjectCommand, ListObjectsV2Command,
  type S3ClientConfig, type _Object,
} from '@aws-sdk/client-s3';
import { StoreError } from '../errors.js';
import { chunkFileName } from '../core/named-chunks.js';
import {
  parseStoreInfo, checkSnapshotName, isSnapshotName, HEARTBEAT_MS, REGISTRATION_LIVE_MS, STORE_FORMAT, STORE_VERSION,
  type Store, type StoreInfo, type ChunkFile, type Registration, type RegistrationKind, type Held, type StoreUsage, type ChunkAt, type ChunkPlace,
} from './store.js';
import { PackWriter, DEFAULT_PACK_BYTES } from './s3-packs.js';
import { Limiter } from './limiter.js';
import { describeS3Failure, isMissing, isNotFound } from './s3-errors.js';
import { parseS3Location, type S3Location } from './s3-location.js';
import { ChunkGetter } from './s3-chunk-get.js';

/** Requests in flight at once, per store: enough to hide a round trip (~5 ms) behind others without swamping a small server. */
const MAX_REQUESTS = 16;
/** A copy answered 404 while its source is there is tried this often in all (see copy). */
const COPY_ATTEMPTS = 3;

export interface S3Options {
  /** --s3-endpoint; else AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS's own. */
  endpoint?: string;
  /** Tries of each request (default 3); serving retries on its own, up to --fetch-timeout (chunk-fetcher.ts). */
  attempts?: number;
  /** Requests in flight at most (default MAX_REQUESTS): serving raises it so a fault's GET never queues behind prefetch GETs. */
  maxRequests?: number;
  /** Chunks read through the lean signed GET (s3-chunk-get.ts) when an endpoint is given: what serving does. */
  leanChunkGets?: boolean;
  /** New chunks written in packs of this many bytes (default DEFAULT_PACK_BYTES); 0: each an object of its own. */
  packBytes?: number;
}

export class S3Store implements Store {
  private readonly limit: Limiter;
  private packs: PackWriter | null = null;
  /** Packs touched by this process (a put touches each once: gc spares what was touched since the oldest live put began). */
  private readonly touchedPacks = new Map<string, Promise<boolean>>();
  /** Pack lookups under way: the chunks of one pack share one HEAD. */
  private readonly packLookups = new Map<string, Promise<boolean>>();

  private constructor(
    readonly root: string,
    readonly info: StoreInfo,
    private readonly client: S3Client,
    private readonly at: S3Location,
    private readonly endpoint: string,
    maxRequests: number,
    private readonly chunkGetter: ChunkGetter | null,
    private readonly packBytes: number,
  ) {
    this.limit = new Limiter(maxRequests);
  }

  /** Opens the store at s3://bucket/prefix; with `create`, makes it first if there is none (the bucket must exist). */
  static async open(url: string, opts: S3Options, create?: { chunkBytes: number }): Promise<S3Store> {
    const at = parseS3Location(url);
    // An empty variable is as good as unset (as the AWS CLI takes it).
    const endpoint = opts.endpoint || process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined;
    // The SDK warns on stderr that later versions will need Node 22: noise on every command here, where Node 20 is supported.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const config: S3ClientConfig = {
      maxAttempts: opts.attempts ?? 3,
      // Swift (and other S3-compatible stores) answer the SDK's default aws-chunked uploads with 501.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: 5000, requestTimeout: 60_000 },
    };
    if (endpoint !== undefined) {
      config.endpoint = endpoint;
      // A bucket name as a host name needs DNS a local or private endpoint rarely has.
      config.forcePathStyle = true;
      // A region is part of the signature; an S3-compatible store mostly takes any.
      config.region = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    }
    const client = new S3Client(config);
    const where = endpoint ?? 'AWS';
    const infoKey = at.key('store.json');
    const read = async (): Promise<string | null> => {
      try {
        const r = await client.send(new GetObjectCommand({ Bucket: at.bucket, Key: infoKey }));
        return (await r.Body?.transformToString('utf8')) ?? '';
      } catch (e) {
        if (isMissing(e)) return null;
        throw new StoreError(url, describeS3Failure(e, 'store.json cannot be read', at, where));
      }
    };
    try {
      let text = await read();
      if (text === null) {
        if (!create) throw new StoreError(url, 'is not a snapfault store (no store.json): give the s3:// location of a store (`snapfault store put` makes one)');
        const info: StoreInfo = { format: STORE_FORMAT, version: STORE_VERSION, chunkBytes: create.chunkBytes, pageBytes: 4096 };
        try {
          await client.send(new PutObjectCommand({ Bucket: at.bucket, Key: infoKey, Body: `${JSON.stringify(info)}\n`, ContentType: 'application/json' }));
        } catch (e) {
          throw new StoreError(url, describeS3Failure(e, 'cannot be made', at, where));
        }
        // Read back: of two puts making one store at once, both use what is there.
        text = (await read()) ?? '';
      }
      const maxRequests = opts.maxRequests ?? MAX_REQUESTS;
      const getter = opts.leanChunkGets && endpoint !== undefined ? new ChunkGetter(client, new URL(endpoint), at.bucket, config.region as string, maxRequests) : null;
      return new S3Store(url, parseStoreInfo(url, text), client, at, where, maxRequests, getter, opts.packBytes ?? DEFAULT_PACK_BYTES);
    } catch (e) {
      client.destroy();
      throw e;
    }
  }

  private fail(what: string, e: unknown): StoreError {
    return new StoreError(this.root, describeS3Failure(e, what, this.at, this.endpoint));
  }

  private chunkKey(hex: string): string {
    return this.at.key(`chunks/${chunkFileName(hex)}`);
  }

  private packKey(id: string): string {
    return this.at.key(`packs/${id}`);
  }

  /** The object's bytes (`range`: only [start, end), a ranged GET), or null when there is no such object. */
  private async get(key: string, signal?: AbortSignal, range?: [number, number]): Promise<Buffer | null> {
    return this.limit.run(async () => {
      try {
        const Range = range ? `bytes=${range[0]}-${range[1] - 1}` : undefined;
        const r = await this.client.send(new GetObjectCommand({ Bucket: this.at.bucket, Key: key, Range }), { abortSignal: signal });
        return Buffer.from((await r.Body?.transformToByteArray()) ?? new Uint8Array(0));
      } catch (e) {
        if (isMissing(e)) return null;
        throw e;
      }
    });
  }

  private async put(key: string, body: Uint8Array | string): Promise<void> {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    // With its length given, the SDK sends the body as it is (no warning about a stream of unknown length).
    await this.limit.run(() => this.client.send(new PutObjectCommand({ Bucket: this.at.bucket, Key: key, Body: bytes, ContentLength: bytes.length })));
  }

  /** LastModified in ms, or null when there is no such object. */
  private async head(key: string): Promise<number | null> {
    return this.limit.run(() => this.sendHead(key));
  }

  /** head without taking a request slot: for a caller that holds one. */
  private async sendHead(key: string): Promise<number | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.at.bucket, Key: key }));
      return r.LastModified?.getTime() ?? 0;
    } catch (e) {
      if (isMissing(e)) return null;
      throw e;
    }
  }

  private async delete(key: string): Promise<void> {
    await this.limit.run(() => this.sendDelete(key));
  }

  private async sendDelete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.at.bucket, Key: key }));
  }

  /**
   * A server-side copy: false when the source does not exist. Swift's s3api
   * checks the source with a HEAD, then copies: a source deleted between the
   * two (a gc beside a put's touch) is answered 404 NoSuchBucket, though the
   * bucket is there. A 404 of any kind is therefore settled by a HEAD of the
   * source: absent, the copy found nothing; there, the copy is tried again.
   */
  private async copy(from: string, to: string, touch: boolean): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.limit.run(() => this.client.send(new CopyObjectCommand({
          Bucket: this.at.bucket, Key: to, CopySource: `${this.at.bucket}/${from.split('/').map(encodeURIComponent).join('/')}`,
          // Copying an object onto itself is allowed only with new metadata: the touch time is that.
          ...(touch ? { MetadataDirective: 'REPLACE' as const, Metadata: { touched: String(Date.now()) } } : {}),
        })));
        return true;
      } catch (e) {
        if (isMissing(e)) return false;
        if (!isNotFound(e) || attempt === COPY_ATTEMPTS) throw e;
      }
      // Outside the copy's request slot: the HEAD takes one of its own.
      if ((await this.head(from)) === null) return false;
    }
  }

  /** Every object under `dir/` (relative to the store), all pages of the listing. */
  private async list(dir: string): Promise<_Object[]> {
    const out: _Object[] = [];
    let token: string | undefined;
    do {
      const r = await this.limit.run(() => this.client.send(new ListObjectsV2Command({ Bucket: this.at.bucket, Prefix: this.at.key(`${dir}/`), ContinuationToken: token })));
      out.push(...(r.Contents ?? []));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  private base(o: _Object): string {
    const k = o.Key ?? '';
    return k.slice(k.lastIndexOf('/') + 1);
  }

  async touchChunk(at: ChunkAt): Promise<boolean> {
    const { hex, pack } = at;
    try {
      if (pack === null) return await this.copy(this.chunkKey(hex), this.chunkKey(hex), true);
      let touched = this.touchedPacks.get(pack);
      if (!touched) {
        touched = this.copy(this.packKey(pack), this.packKey(pack), true);
        this.touchedPacks.set(pack, touched);
        touched.catch(() => this.touchedPacks.delete(pack)); // a failure is told to this caller, and tried again by the next
      }
      return await touched;
    } catch (e) {
      throw this.fail(`chunk ${hex}${pack === null ? '' : ` (pack ${pack})`} cannot be touched`, e);
    }
  }

  /**
   * Packing (the default): the chunk is placed in a pack and uploaded with
   * it (flushChunks), unchecked: a chunk of that name stored already costs
   * its bytes again, not a request for every new chunk. Otherwise the touch
   * is the existence check: one request for a chunk the bucket has, two for
   * one it lacks.
   */
  async writeChunk(hex: string, bytes: Uint8Array): Promise<ChunkPlace | null> {
    try {
      if (this.packBytes > 0) {
        this.packs ??= new PackWriter(this.packBytes, (id, body) => this.put(this.packKey(id), body));
        return await this.packs.add(bytes);
      }
      if (await this.touchChunk({ hex, pack: null, offset: 0, length: bytes.length })) return null;
      await this.put(this.chunkKey(hex), bytes);
      return { pack: null, offset: 0 };
    } catch (e) {
      if (e instanceof StoreError) throw e;
      throw this.fail(`chunk ${hex} cannot be written`, e);
    }
  }

  async flushChunks(): Promise<void> {
    try {
      await this.packs?.flush();
    } catch (e) {
      throw this.fail('a pack of new chunks cannot be written', e);
    }
  }

  async readChunk(at: ChunkAt, signal?: AbortSignal): Promise<Buffer> {
    if (at.pack === null) {
      let b: Buffer | null;
      try {
        b = await this.read(this.chunkKey(at.hex), signal);
      } catch (e) {
        throw this.fail(`chunk ${at.hex} cannot be read`, e);
      }
      if (b === null) throw new StoreError(this.root, `chunk ${at.hex} is missing`);
      return b;
    }
    return this.readPacked(at.pack, at.offset, at.length, signal, `chunk ${at.hex}`);
  }

  /**
   * Bytes [offset, offset + length) of pack `id` in one ranged GET: chunks
   * that lie side by side there, fetched together (chunk-fetcher.ts).
   * `what` names them in errors.
   */
  async readPacked(id: string, offset: number, length: number, signal: AbortSignal | undefined, what: string): Promise<Buffer> {
    let b: Buffer | null;
    try {
      b = await this.read(this.packKey(id), signal, [offset, offset + length]);
    } catch (e) {
      throw this.fail(`${what} cannot be read (pack ${id})`, e);
    }
    if (b === null) throw new StoreError(this.root, `${what} is missing (pack ${id} is gone)`);
    // A pack shorter than the manifest says answers with fewer bytes (or 416): never taken for the chunk.
    if (b.length !== length) throw new StoreError(this.root, `${what} came back ${b.length} bytes of ${length} (pack ${id} is damaged)`);
    return b;
  }

  /** A GET for serving goes through the lean getter when there is one. */
  private async read(key: string, signal?: AbortSignal, range?: [number, number]): Promise<Buffer | null> {
    const getter = this.chunkGetter;
    return getter ? this.limit.run(() => getter.get(key, signal, range)) : this.get(key, signal, range);
  }

  async chunkExists(at: ChunkAt): Promise<boolean> {
    const { hex, pack } = at;
    try {
      if (pack === null) return (await this.head(this.chunkKey(hex))) !== null;
      let lookup = this.packLookups.get(pack);
      if (!lookup) {
        lookup = this.head(this.packKey(pack)).then((t) => t !== null).finally(() => this.packLookups.delete(pack));
        this.packLookups.set(pack, lookup);
      }
      return await lookup;
    } catch (e) {
      throw this.fail(`chunk ${hex}${pack === null ? '' : ` (pack ${pack})`} cannot be looked up`, e);
    }
  }

  async listPacks(): Promise<ChunkFile[]> {
    try {
      return (await this.list('packs'))
        .filter((o) => /^[0-9a-f]{32}$/.test(this.base(o)))
        .map((o) => ({ hex: this.base(o), bytes: o.Size ?? 0, mtimeMs: o.LastModified?.getTime() ?? 0 }));
    } catch (e) {
      throw this.fail('the packs cannot be listed', e);
    }
  }

  /** As deleteChunkIfUntouched, for a pack. */
  async deletePackIfUntouched(id: string, cutoffMs: number): Promise<boolean> {
    try {
      return await this.deleteIfUntouched(this.packKey(id), cutoffMs);
    } catch (e) {
      throw this.fail(`pack ${id} cannot be deleted`, e);
    }
  }

  async listChunks(): Promise<ChunkFile[]> {
    try {
      return (await this.list('chunks'))
        .filter((o) => this.base(o).length === 64)
        .map((o) => ({ hex: this.base(o), bytes: o.Size ?? 0, mtimeMs: o.LastModified?.getTime() ?? 0 }));
    } catch (e) {
      throw this.fail('the chunks cannot be listed', e);
    }
  }

  /** A bucket has no temporary objects (a PUT is whole or absent); a put killed while committing leaves its claim. */
  async listTemporary(): Promise<Array<{ key: string; mtimeMs: number }>> {
    try {
      return (await this.list('claims')).map((o) => ({ key: o.Key ?? '', mtimeMs: o.LastModified?.getTime() ?? 0 }));
    } catch (e) {
      throw this.fail('the claims cannot be listed', e);
    }
  }

  async removeTemporary(key: string): Promise<void> {
    try {
      await this.delete(key);
    } catch (e) {
      throw this.fail(`${key} cannot be deleted`, e);
    }
  }

  /**
   * No rename to move a chunk aside: its LastModified is read again just
   * before the delete, and a touch since the listing (or within the grace
   * period) spares it. The HEAD and the DELETE hold one request slot, so the
   * DELETE follows at once rather than behind every other chunk's HEAD. A
   * touch landing between the two (one round trip) is caught by the put
   * itself, which checks every chunk it reuses once its manifest is
   * committed, and fails saying so.
   */
  async deleteChunkIfUntouched(hex: string, _listedMtimeMs: number, cutoffMs: number): Promise<boolean> {
    try {
      return await this.deleteIfUntouched(this.chunkKey(hex), cutoffMs);
    } catch (e) {
      throw this.fail(`chunk ${hex} cannot be deleted`, e);
    }
  }

  private async deleteIfUntouched(key: string, cutoffMs: number): Promise<boolean> {
    return this.limit.run(async () => {
      const now = await this.sendHead(key);
      // Times from S3 have whole seconds (HEAD's Last-Modified is an HTTP date): a second's slack keeps a touch just after the cutoff from reading as before it.
      if (now === null || now >= cutoffMs - 1000) return false;
      await this.sendDelete(key);
      return true;
    });
  }

  /** Nothing is ever moved aside in a bucket (see deleteChunkIfUntouched): no trash to recover. */
  async recoverTrash(): Promise<void> { /* nothing moved aside */ }

  async restoreFromTrash(): Promise<boolean> {
    return false;
  }

  async hasSnapshot(name: string): Promise<boolean> {
    try {
      return (await this.head(this.at.key(`snapshots/${name}`))) !== null;
    } catch (e) {
      throw this.fail(`snapshot "${name}" cannot be looked up`, e);
    }
  }

  async readManifest(name: string): Promise<Buffer> {
    checkSnapshotName(name);
    let b: Buffer | null;
    try {
      b = await this.get(this.at.key(`snapshots/${name}`));
    } catch (e) {
      throw this.fail(`snapshot "${name}" cannot be read`, e);
    }
    if (b === null) throw new StoreError(this.root, `has no snapshot "${name}": \`snapfault store ls --store ${this.root}\` lists them`);
    return b;
  }

  /**
   * Takes the name without clobbering it, on stores without conditional PUT
   * (Swift answers If-None-Match 501): a claim object under claims/<name>/,
   * then a listing of the claims: the oldest live claim wins, the others
   * withdraw. The winner checks the name is still free and writes the
   * manifest. Two puts of one name both go on only if one's listing misses
   * the other's claim, which S3's (and Swift's, in normal operation)
   * read-after-write listings do not do: docs/store-s3.md.
   */
  async commitManifest(name: string, bytes: Buffer): Promise<void> {
    const taken = (): StoreError => new StoreError(this.root, `already has a snapshot "${name}": choose another name, or remove it first (snapfault store rm)`);
    const mine = this.at.key(`claims/${name}/${Date.now().toString().padStart(15, '0')}-${hostname()}-${process.pid}-${randomBytes(6).toString('hex')}`);
    const manifestKey = this.at.key(`snapshots/${name}`);
    try {
      if ((await this.head(manifestKey)) !== null) throw taken();
      await this.put(mine, '');
      try {
        const now = Date.now();
        const claims = (await this.list(`claims/${name}`))
          .filter((o) => o.Key === mine || now - (o.LastModified?.getTime() ?? 0) < REGISTRATION_LIVE_MS) // a killed put's claim does not block
          .sort((a, b) => (a.LastModified?.getTime() ?? 0) - (b.LastModified?.getTime() ?? 0) || (a.Key ?? '').localeCompare(b.Key ?? ''));
        if (claims[0]?.Key !== mine) throw new StoreError(this.root, `another put is committing a snapshot "${name}" now: choose another name, or wait and remove it first (snapfault store rm)`);
        if ((await this.head(manifestKey)) !== null) throw taken();
        await this.put(manifestKey, bytes);
      } finally {
        await this.delete(mine).catch(() => undefined); // left behind, gc removes it once old
      }
    } catch (e) {
      if (e instanceof StoreError) throw e;
      throw this.fail(`snapshot "${name}" cannot be written`, e);
    }
  }

  async listSnapshots(): Promise<string[]> {
    try {
      return (await this.list('snapshots')).map((o) => this.base(o)).filter(isSnapshotName).sort();
    } catch (e) {
      throw this.fail('the snapshots cannot be listed', e);
    }
  }

  /** Copied to removed/<identity>, then deleted: killed between the two, the name stays and the copy is gc's to delete. */
  async retireManifest(name: string, identity: string): Promise<void> {
    try {
      if (!(await this.copy(this.at.key(`snapshots/${name}`), this.at.key(`removed/${identity}`), false))) {
        throw new StoreError(this.root, `has no snapshot "${name}" (removed meanwhile)`);
      }
      await this.delete(this.at.key(`snapshots/${name}`));
    } catch (e) {
      if (e instanceof StoreError) throw e;
      throw this.fail(`snapshot "${name}" cannot be removed`, e);
    }
  }

  async listRemoved(): Promise<string[]> {
    try {
      return (await this.list('removed')).map((o) => this.base(o));
    } catch (e) {
      throw this.fail('the removed snapshots cannot be listed', e);
    }
  }

  async readRemoved(identity: string): Promise<Buffer> {
    try {
      const b = await this.get(this.at.key(`removed/${identity}`));
      if (b === null) throw new StoreError(this.root, `removed snapshot ${identity} is gone`);
      return b;
    } catch (e) {
      if (e instanceof StoreError) throw e;
      throw this.fail(`removed snapshot ${identity} cannot be read`, e);
    }
  }

  async deleteRemoved(identity: string): Promise<void> {
    try {
      await this.delete(this.at.key(`removed/${identity}`));
    } catch (e) {
      throw this.fail(`removed snapshot ${identity} cannot be deleted`, e);
    }
  }

  async writeDigestPack(bytes: Buffer): Promise<string> {
    const id = `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}`;
    try {
      await this.put(this.at.key(`digests/${id}`), bytes);
    } catch (e) {
      throw this.fail('the dedup index cannot be written', e);
    }
    return id;
  }

  async listDigestPacks(): Promise<string[]> {
    try {
      return (await this.list('digests')).map((o) => this.base(o));
    } catch (e) {
      throw this.fail('the dedup index cannot be listed', e);
    }
  }

  async readDigestPack(id: string): Promise<Buffer | null> {
    try {
      return await this.get(this.at.key(`digests/${id}`));
    } catch (e) {
      throw this.fail('the dedup index cannot be read', e);
    }
  }

  async deleteDigestPack(id: string): Promise<void> {
    try {
      await this.delete(this.at.key(`digests/${id}`));
    } catch (e) {
      throw this.fail('the dedup index cannot be pruned', e);
    }
  }

  /** A small object, written again every HEARTBEAT_MS: its LastModified is its heartbeat. */
  async register(kind: RegistrationKind, fields: Record<string, unknown>): Promise<Held> {
    const content = JSON.stringify({ ...fields, host: hostname(), pid: process.pid });
    const id = `${hostname()}-${process.pid}-${randomBytes(6).toString('hex')}`;
    const key = this.at.key(`${kind}/${id}`);
    try {
      await this.put(key, content);
    } catch (e) {
      throw this.fail(`the ${kind === 'pending' ? 'put' : 'lease'} cannot be registered`, e);
    }
    let beat: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => {
      // A missed heartbeat only risks gc taking this for dead two minutes on; the next one may reach the store.
      beat = this.put(key, content).catch(() => undefined);
    }, HEARTBEAT_MS);
    timer.unref();
    let released = false;
    return {
      id,
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(timer);
        await beat;
        await this.delete(key).catch(() => undefined); // left behind, it stops being live after REGISTRATION_LIVE_MS
      },
    };
  }

  async listRegistrations(kind: RegistrationKind): Promise<Registration[]> {
    try {
      const objects = await this.list(kind);
      return await Promise.all(objects.map(async (o) => {
        let content: Registration['content'] = {};
        try {
          const b = await this.get(o.Key ?? '');
          if (b) content = JSON.parse(b.toString('utf8')) as Registration['content'];
        } catch { /* released meanwhile, or damaged: judged by its age alone */ }
        return { id: this.base(o), mtimeMs: o.LastModified?.getTime() ?? 0, content };
      }));
    } catch (e) {
      throw this.fail(`the ${kind} registrations cannot be listed`, e);
    }
  }

  async deleteRegistration(kind: RegistrationKind, id: string): Promise<void> {
    try {
      await this.delete(this.at.key(`${kind}/${id}`));
    } catch (e) {
      throw this.fail(`registration ${id} cannot be deleted`, e);
    }
  }

  async usage(): Promise<StoreUsage> {
    const chunks = await this.listChunks();
    const packs = await this.listPacks();
    let metadataBytes = 0;
    try {
      for (const d of ['snapshots', 'digests', 'removed']) for (const o of await this.list(d)) metadataBytes += o.Size ?? 0;
    } catch (e) {
      throw this.fail('the store cannot be listed', e);
    }
    return { chunks: chunks.length, packs: packs.length, chunkBytes: [...chunks, ...packs].reduce((n, c) => n + c.bytes, 0), metadataBytes };
  }

  async close(): Promise<void> {
    this.chunkGetter?.close();
    this.client.destroy();
  }
}
