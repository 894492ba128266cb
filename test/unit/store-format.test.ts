// The store's on-disk formats: manifests and digest packs round-trip, and any
// damage is caught (a manifest refuses to decode; a digest pack, only a hint,
// decodes to nothing).
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { encodeManifest, decodeManifest, manifestIdentity, PAGE_IS_ZERO, PAGE_IN_PARENT, type Manifest } from '../../src/store/manifest.js';
import { encodeDigestPack, decodeDigestPack } from '../../src/store/digest-pack.js';
import { flattenChain, type Layer } from '../../src/store/chain.js';

const name = (s: string): Buffer => createHash('sha256').update(s).digest();

function manifest(over: Partial<Manifest> = {}): Manifest {
  const pageTable = new Uint32Array([0, 1, PAGE_IS_ZERO, 9, 8, PAGE_IS_ZERO]);
  return {
    originalSize: 6 * 4096, chunkBytes: 32768, pages: 6, createdMs: 1_700_000_000_000, parent: null, pageTable,
    chunks: [{ name: name('a'), stored: 1000, checksum: 7, pack: null, offset: 0 }, { name: name('b'), stored: (32768 | 0x80000000) >>> 0, checksum: 9, pack: null, offset: 0 }], ...over,
  };
}

function layer(n: string, m: Manifest): Layer {
  const bytes = encodeManifest(m);
  return { name: n, identity: manifestIdentity(bytes), manifest: m, bytes: bytes.length };
}

describe('store formats', () => {
  it('a manifest round-trips, and its identity is its trailing SHA-256', () => {
    const m = manifest({ parent: { name: 'base-v1', identity: name('p').toString('hex') }, pageTable: new Uint32Array([0, PAGE_IN_PARENT, PAGE_IS_ZERO, 9, 8, 1]) });
    const b = encodeManifest(m);
    const back = decodeManifest(b);
    expect(back.parent).to.deep.equal(m.parent);
    expect([...back.pageTable]).to.deep.equal([...m.pageTable]);
    expect(back.chunks.map((c) => c.name.toString('hex'))).to.deep.equal(m.chunks.map((c) => c.name.toString('hex')));
    expect(back.chunks[1].stored).to.equal(m.chunks[1].stored);
    expect(manifestIdentity(b)).to.equal(createHash('sha256').update(b.subarray(0, b.length - 32)).digest('hex'));
  });

  it('any flipped byte, a cut, a newer version or an impossible reference is refused', () => {
    const b = encodeManifest(manifest());
    for (let i = 0; i < b.length; i += 7) {
      const bad = Buffer.from(b);
      bad[i] ^= 0x10;
      expect(() => decodeManifest(bad), `byte ${i}`).to.throw();
    }
    expect(() => decodeManifest(b.subarray(0, b.length - 1))).to.throw(/checksum|length/);
    // Re-signed, so only the content is wrong.
    const resign = (m: Buffer): Buffer => {
      createHash('sha256').update(m.subarray(0, m.length - 32)).digest().copy(m, m.length - 32);
      return m;
    };
    const v3 = Buffer.from(b);
    v3.writeUInt32LE(3, 8);
    expect(() => decodeManifest(resign(v3))).to.throw(/version 3.*upgrade snapfault/);
    expect(() => decodeManifest(encodeManifest(manifest({ pageTable: new Uint32Array([0, 1, 2, 3, 4, 16]) })))).to.throw(/refers to chunk 2 of 2/);
    expect(() => decodeManifest(encodeManifest(manifest({ pageTable: new Uint32Array([0, PAGE_IN_PARENT, 2, 3, 4, 5]) })))).to.throw(/has no parent/);
  });

  it('chunks in packs: version 2 records each one\'s pack and offset; without packs a manifest stays version 1', () => {
    const p1 = 'a'.repeat(32);
    const p2 = '0'.repeat(32); // an all-zero id is as good as any
    const m = manifest({
      chunks: [
        { name: name('a'), stored: 1000, checksum: 7, pack: p1, offset: 4096 },
        { name: name('b'), stored: (32768 | 0x80000000) >>> 0, checksum: 9, pack: null, offset: 0 },
        { name: name('c'), stored: 10, checksum: 1, pack: p2, offset: 0 },
        { name: name('d'), stored: 20, checksum: 2, pack: p1, offset: 5096 },
      ],
    });
    const b = encodeManifest(m);
    expect(b.readUInt32LE(8)).to.equal(2);
    const back = decodeManifest(b);
    expect(back.chunks.map((c) => [c.pack, c.offset])).to.deep.equal([[p1, 4096], [null, 0], [p2, 0], [p1, 5096]]);
    expect(b.length - encodeManifest(manifest({ chunks: m.chunks.map((c) => ({ ...c, pack: null, offset: 0 })) })).length).to.equal(4 * 8 + 2 * 16); // 8 bytes a chunk, 16 a pack
    const v1 = encodeManifest(manifest());
    expect(v1.readUInt32LE(8)).to.equal(1);
    expect(decodeManifest(v1).chunks.every((c) => c.pack === null)).to.equal(true);
    // A pack ordinal past the list is refused, re-signed so only it is wrong.
    const bad = Buffer.from(b);
    bad.writeUInt32LE(2, 128 + 40); // chunk 0's pack ordinal: there are 2 packs
    createHash('sha256').update(bad.subarray(0, bad.length - 32)).digest().copy(bad, bad.length - 32);
    expect(() => decodeManifest(bad)).to.throw(/lies in pack 2 of 2/);
  });

  it('a digest pack round-trips (with packed chunks: version 2); a damaged one decodes to nothing', () => {
    const digests = Buffer.alloc(8 * 16, 3);
    const packed = encodeDigestPack(8, [
      { name: name('a'), stored: 100, checksum: 5, pack: 'b'.repeat(32), offset: 777, digests },
      { name: name('b'), stored: 100, checksum: 5, pack: null, offset: 0, digests },
    ]);
    expect(packed.readUInt32LE(8)).to.equal(2);
    expect(decodeDigestPack(packed, 8)?.map((r) => [r.pack, r.offset, r.digests.equals(digests)])).to.deep.equal([['b'.repeat(32), 777, true], [null, 0, true]]);
    const b = encodeDigestPack(8, [{ name: name('a'), stored: 100, checksum: 5, pack: null, offset: 0, digests }]);
    expect(b.readUInt32LE(8)).to.equal(1);
    const r = decodeDigestPack(b, 8);
    expect(r?.[0].digests.equals(digests)).to.equal(true);
    expect(decodeDigestPack(b, 16)).to.equal(null); // another chunk size
    const bad = Buffer.from(b);
    bad[50] ^= 1;
    expect(decodeDigestPack(bad, 8)).to.equal(null);
  });

  it('layers are laid flat: each page from the topmost layer holding it, chunks listed once', () => {
    const base = layer('base', manifest());
    const top = layer('top', manifest({
      parent: { name: 'base', identity: base.identity },
      chunks: [{ name: name('c'), stored: 10, checksum: 1, pack: null, offset: 0 }, { name: name('a'), stored: 1000, checksum: 7, pack: null, offset: 0 }],
      pageTable: new Uint32Array([PAGE_IN_PARENT, 0, PAGE_IN_PARENT, PAGE_IS_ZERO, 9, PAGE_IN_PARENT]),
    }));
    const v = flattenChain([top, base]);
    const at = (p: number): [string, number] | 'zero' => v.index[p] === PAGE_IS_ZERO ? 'zero' : [v.chunks[Math.floor(v.index[p] / 8)].name.toString('hex'), v.index[p] % 8];
    expect(at(0)).to.deep.equal([name('a').toString('hex'), 0]); // base's
    expect(at(1)).to.deep.equal([name('c').toString('hex'), 0]); // top's own
    expect(at(2)).to.equal('zero'); // zero in base
    expect(at(3)).to.equal('zero'); // became zero in top
    expect(at(4)).to.deep.equal([name('a').toString('hex'), 1]); // top's, in a chunk base uses too
    expect(at(5)).to.equal('zero'); // its parent's zero page
    expect(v.chunks.length).to.equal(2); // a (both layers), c; base's b serves no page any more
  });
});
