// The disk tier of a store in a bucket, on a real folder: its bound, least
// recently read first out, and what killed processes leave behind.
import { expect } from 'chai';
import { writeFileSync, existsSync, utimesSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { DiskCache } from '../../src/store/disk-cache.js';
import { chunkFileName } from '../../src/core/named-chunks.js';
import { TempDir } from '../helpers/images.js';

const MiB = 1 << 20;
const hexOf = (i: number): string => createHash('sha256').update(String(i)).digest('hex');

describe('disk cache', () => {
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('evicts the least recently read chunks once past its bound, down to 90% of it', () => {
    const dir = tmp.file('lru');
    const cache = DiskCache.open(dir, 4 * MiB);
    const chunk = Buffer.alloc(MiB, 1);
    for (let i = 0; i < 4; i++) {
      cache.insert(hexOf(i), chunk);
      const t = new Date(Date.now() - (10 - i) * 60_000); // read in the order written
      utimesSync(join(dir, 'chunks', chunkFileName(hexOf(i))), t, t);
    }
    cache.touch(hexOf(0)); // read now: the most recent
    cache.insert(hexOf(4), chunk);
    expect([0, 1, 2, 3, 4].map((i) => cache.has(hexOf(i)))).to.deep.equal([true, false, false, true, true]);
    expect(cache.size).to.equal(3 * MiB);
  });

  it('deletes writes a killed process left (older than 10 minutes) when it opens, and keeps one under way', () => {
    const dir = tmp.file('stale');
    DiskCache.open(dir, 64 * MiB).insert(hexOf(1), Buffer.alloc(4096, 2));
    const sub = join(dir, 'chunks', hexOf(2).slice(0, 2));
    const stale = join(sub, `${hexOf(2)}.tmp-aaaaaaaaaaaa`);
    const fresh = join(sub, `${hexOf(2)}.tmp-bbbbbbbbbbbb`);
    writeFileSync(stale, Buffer.alloc(MiB));
    writeFileSync(fresh, Buffer.alloc(MiB));
    const old = new Date(Date.now() - 11 * 60_000);
    utimesSync(stale, old, old);
    const cache = DiskCache.open(dir, 64 * MiB);
    expect(existsSync(stale), 'stale write deleted').to.equal(false);
    expect(existsSync(fresh), 'a write under way kept').to.equal(true);
    expect(cache.size, 'only whole chunks counted').to.equal(4096);
    expect(readdirSync(join(dir, 'chunks', hexOf(1).slice(0, 2)))).to.include(hexOf(1));
  });
});
