// Packs, the put side and the serving side apart from a bucket: a pack
// writer places chunks side by side and uploads a pack when it is full (a
// failed upload fails the put); the fetcher fetches chunks side by side in
// one ranged read, checks each alone, and fetches again alone a chunk that
// fails its check, or every chunk when the ranged read fails. The source
// here is a map of pack bytes: the bucket end of it is test/e2e/*-s3.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { PackWriter } from '../../src/store/s3-packs.js';
import { ChunkFetcher, type ChunkSource } from '../../src/store/chunk-fetcher.js';
import { DiskCache } from '../../src/store/disk-cache.js';
import type { ChunkAt } from '../../src/store/store.js';
import { TempDir } from '../helpers/images.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Packs kept in memory; counts reads, and can damage what one read returns or fail ranged reads. */
class MemoryPacks implements ChunkSource {
  readonly packs = new Map<string, Buffer>();
  reads: Array<{ offset: number; length: number }> = [];
  damageOnce: ChunkAt | null = null;
  failRanges = false;

  async readChunk(at: ChunkAt): Promise<Buffer> {
    return this.readPacked(at.pack as string, at.offset, at.length, undefined, at.hex, false);
  }

  async readPacked(id: string, offset: number, length: number, _signal?: AbortSignal, _what?: string, ranged = true): Promise<Buffer> {
    this.reads.push({ offset, length });
    if (ranged && this.failRanges) throw new Error('ranged read refused');
    const body = Buffer.from(this.packs.get(id)!.subarray(offset, offset + length));
    const d = this.damageOnce;
    if (d && ranged && d.offset >= offset && d.offset < offset + length) {
      body[d.offset - offset] ^= 1;
      this.damageOnce = null;
    }
    return body;
  }
}

describe('packs', () => {
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('a pack writer places chunks side by side, uploads a pack once full and the rest at flush', async () => {
    const uploads: Array<[string, Buffer]> = [];
    const w = new PackWriter(100, async (id, body) => {
      uploads.push([id, body]);
    });
    const places = [];
    for (let i = 0; i < 7; i++) places.push(await w.add(Buffer.alloc(30, i)));
    expect(uploads.length).to.equal(1); // 4 x 30 passed 100
    await w.flush();
    expect(uploads.map(([, b]) => b.length)).to.deep.equal([120, 90]);
    expect(places.map((p) => p.offset)).to.deep.equal([0, 30, 60, 90, 0, 30, 60]);
    expect(places.slice(0, 4).every((p) => p.pack === uploads[0][0])).to.equal(true);
    expect(places[6].pack).to.equal(uploads[1][0]);
    expect(uploads[1][1][61]).to.equal(6);
    expect([w.packs, w.bytes]).to.deep.equal([2, 210]);
  });

  it('a failed upload fails the flush, and every add after it', async () => {
    const w = new PackWriter(10, async () => {
      throw new Error('bucket full');
    });
    await w.add(Buffer.alloc(20));
    const failed = async (p: Promise<unknown>): Promise<string> => p.then(() => 'resolved', (e: Error) => e.message);
    expect(await failed(w.flush())).to.equal('bucket full');
    expect(await failed(w.add(Buffer.alloc(1)))).to.equal('bucket full');
  });

  function packed(source: MemoryPacks, count: number): ChunkAt[] {
    const chunks = Array.from({ length: count }, (_, i) => Buffer.alloc(1000 + i, i + 1));
    source.packs.set('p'.repeat(32), Buffer.concat(chunks));
    let offset = 0;
    return chunks.map((c) => {
      const at = { hex: sha(c), pack: 'p'.repeat(32), offset, length: c.length };
      offset += c.length;
      return at;
    });
  }

  const check = (at: ChunkAt, stored: Buffer): string | null => (sha(stored) === at.hex ? null : 'is not what its name says');

  it('a run comes in one ranged read; each chunk is checked and cached on its own', async () => {
    const source = new MemoryPacks();
    const run = packed(source, 5);
    const cache = DiskCache.open(tmp.file('run-cache'), 1 << 30);
    const f = new ChunkFetcher(source, cache, 5000, 'off');
    const sizes = await Promise.all(f.fetchRun(run, check));
    expect(sizes).to.deep.equal(run.map((at) => at.length));
    expect(source.reads).to.deep.equal([{ offset: 0, length: run.reduce((n, at) => n + at.length, 0) }]);
    expect(run.every((at) => cache.has(at.hex))).to.equal(true);
    expect([f.stats.gets, f.stats.runs, f.stats.runChunks, f.stats.inFlight]).to.deep.equal([1, 1, 5, 0]);
  });

  it('a damaged chunk inside a run: the run is cut and that chunk read again alone', async () => {
    const source = new MemoryPacks();
    const run = packed(source, 4);
    source.damageOnce = run[1];
    const cache = DiskCache.open(tmp.file('cut-cache'), 1 << 30);
    const f = new ChunkFetcher(source, cache, 5000, 'off');
    await Promise.all(f.fetchRun(run, check));
    expect(source.reads).to.deep.equal([{ offset: 0, length: run.reduce((n, at) => n + at.length, 0) }, { offset: run[1].offset, length: run[1].length }]);
    expect(run.every((at) => cache.has(at.hex))).to.equal(true);
    expect(f.stats.failures).to.equal(1);
  });

  it('a ranged read that fails: every chunk of the run is fetched alone', async () => {
    const source = new MemoryPacks();
    const run = packed(source, 3);
    source.failRanges = true;
    const cache = DiskCache.open(tmp.file('fail-cache'), 1 << 30);
    const f = new ChunkFetcher(source, cache, 5000, 'off');
    await Promise.all(f.fetchRun(run, check));
    expect(source.reads.length).to.equal(4);
    expect(run.every((at) => cache.has(at.hex))).to.equal(true);
  });
});
