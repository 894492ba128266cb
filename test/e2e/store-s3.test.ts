// The snapshot store in object storage, against a real S3-compatible store
// (OpenStack Swift with s3api, scripts/object-store.sh): put, ls, inspect and
// verify byte for byte (a folder store of the same files is the reference),
// dedup counted in PUTs seen on the wire, layers, rm and gc, a name never
// clobbered by racing puts, damage, and the one-line errors of an
// unreachable store, wrong credentials and a missing bucket. New chunks go
// into pack objects by default; --pack-mib 0 keeps each as an object.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { SNAPFAULT } from '../helpers/paths.js';
import { TempDir, makeImage, prng } from '../helpers/images.js';
import { ensureObjectStore, type ObjectStore } from '../helpers/object-store.js';
import { CountingProxy } from '../helpers/counting-proxy.js';
import { decodeManifest } from '../../src/store/manifest.js';

const MiB = 1 << 20;
const PAGE = 4096;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface PutJson {
  pages: number;
  bytesAdded: number;
  manifestBytes: number;
  newPages: number;
  reusedPages: number;
  zeroPages: number;
  parentPages: number;
  chunksAdded: number;
  chunksReused: number;
  packsAdded: number;
  identity: string;
}

describe('snapshot store in object storage (S3 API, on Swift)', function () {
  this.timeout(300_000);
  const tmp = new TempDir();
  let os: ObjectStore;
  let proxy: CountingProxy;

  before(async function () {
    this.timeout(900_000); // a clean machine installs Swift first
    os = await ensureObjectStore();
    proxy = await CountingProxy.start(os.endpoint);
  });
  after(async () => {
    await proxy?.stop();
    os?.release();
    tmp.remove();
  });

  /** The CLI, not blocking this process: the counting proxy answers from its event loop. */
  function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(SNAPFAULT, args, { env: { ...process.env, ...os.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  /** A store command against `store` through the counting proxy. */
  const s3 = (args: string[], store: string, env: NodeJS.ProcessEnv = {}): Promise<CliResult> => cli(['store', ...args, '--store', store, '--s3-endpoint', proxy.endpoint], env);

  async function putJson(store: string, file: string, name: string, extra: string[] = []): Promise<PutJson> {
    const r = store.startsWith('s3://') ? await s3(['put', file, name, '--json', ...extra], store) : await cli(['store', 'put', file, name, '--store', store, '--json', ...extra]);
    expect(r.code, r.stderr).to.equal(0);
    return JSON.parse(r.stdout) as PutJson;
  }

  async function list(bucket: string, prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const r = await os.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of r.Contents ?? []) keys.push(o.Key ?? '');
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return keys;
  }

  async function get(bucket: string, key: string): Promise<Buffer> {
    const r = await os.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await r.Body!.transformToByteArray());
  }

  const base = (k: string): string => k.slice(k.lastIndexOf('/') + 1);
  const chunkNames = async (bucket: string, prefix: string): Promise<Set<string>> => new Set((await list(bucket, `${prefix}chunks/`)).map(base));
  const packNames = async (bucket: string, prefix: string): Promise<Set<string>> => new Set((await list(bucket, `${prefix}packs/`)).map(base));

  /** The packs the store's snapshots' chunks lie in, read from their manifests (every layer of a chain is a snapshot here). */
  async function referenced(bucket: string, prefix: string): Promise<Set<string>> {
    const out = new Set<string>();
    for (const key of await list(bucket, `${prefix}snapshots/`)) for (const c of decodeManifest(await get(bucket, key)).chunks) out.add(c.pack ?? `chunk ${c.name.toString('hex')}`);
    return out;
  }

  /** Every chunk the snapshots use, as stored: cut out of its pack, or its own object. */
  async function storedChunks(bucket: string, prefix: string): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    const packs = new Map<string, Buffer>();
    for (const key of await list(bucket, `${prefix}snapshots/`)) {
      for (const c of decodeManifest(await get(bucket, key)).chunks) {
        const hex = c.name.toString('hex');
        if (c.pack === null) {
          out.set(hex, await get(bucket, `${prefix}chunks/${hex.slice(0, 2)}/${hex}`));
          continue;
        }
        if (!packs.has(c.pack)) packs.set(c.pack, await get(bucket, `${prefix}packs/${c.pack}`));
        out.set(hex, packs.get(c.pack)!.subarray(c.offset, c.offset + (c.stored & 0x7fffffff)));
      }
    }
    return out;
  }

  /** `image` with `fraction` of its pages (every k-th) overwritten with fresh random bytes. */
  function changed(image: Buffer, fraction: number, seed: string): { img: Buffer; pages: number } {
    const img = Buffer.from(image);
    const step = Math.round(1 / fraction);
    let pages = 0;
    for (let p = 1; p < img.length / PAGE; p += step, pages++) prng(`${seed}:${p}`, PAGE).copy(img, p * PAGE);
    return { img, pages };
  }

  it('put, ls, inspect and verify round-trip every byte; the bucket holds exactly what a folder store of its chunk size holds', async () => {
    const bucket = await os.newBucket('rt');
    const store = `s3://${bucket}/stores/one`;
    const folder = tmp.file('rt-folder');
    const img = tmp.file('rt.img', makeImage(16 * MiB, { seed: 's3-rt', zeroFraction: 0.3 }));
    const inS3 = await putJson(store, img, 'one');
    // A new store in a bucket has 512 KiB chunks, a folder 32 KiB (docs/store-s3.md, Chunk size in a bucket).
    const chunkSize = async (at: string): Promise<number> =>
      (JSON.parse((at.startsWith('s3://') ? await s3(['ls', '--json'], at) : await cli(['store', 'ls', '--store', at, '--json'])).stdout) as { usage: { chunkSizeBytes: number } }).usage.chunkSizeBytes;
    expect(await chunkSize(store)).to.equal(512 * 1024);
    await putJson(tmp.file('rt-default-folder'), img, 'one');
    expect(await chunkSize(tmp.file('rt-default-folder'))).to.equal(32 * 1024);
    const inFolder = await putJson(folder, img, 'one', ['--chunk-kib', '512']);
    for (const k of ['pages', 'zeroPages', 'newPages', 'reusedPages', 'chunksAdded', 'bytesAdded'] as const) expect(inS3[k], k).to.equal(inFolder[k]);
    // 4 MiB packs: 16 MiB of which 70% is data, compressing to about half, fills one or two.
    expect(inS3.packsAdded).to.be.within(1, 3);
    expect(inS3.manifestBytes - inFolder.manifestBytes).to.equal(inS3.chunksAdded * 8 + inS3.packsAdded * 16); // each chunk's place

    const v = await s3(['verify', 'one', '--against', img], store);
    expect(v.code, v.stderr).to.equal(0);
    expect(v.stdout).to.match(/^one: ok: 1 layer\(s\), \d+ chunks .* match their checksums and names; all 4096 pages match/);

    // Every object under the prefix, each chunk byte for byte the folder's, packed side by side with no gap.
    const keys = await list(bucket, '');
    expect(keys.every((k) => k.startsWith('stores/one/')), keys.join(' ')).to.equal(true);
    expect(await chunkNames(bucket, 'stores/one/')).to.deep.equal(new Set());
    const chunks = await storedChunks(bucket, 'stores/one/');
    expect(chunks.size).to.equal(inFolder.chunksAdded);
    for (const [hex, bytes] of chunks) expect(bytes.equals(readFileSync(join(folder, 'chunks', hex.slice(0, 2), hex))), hex).to.equal(true);
    const packBytes = await Promise.all([...await packNames(bucket, 'stores/one/')].map(async (id) => (await get(bucket, `stores/one/packs/${id}`)).length));
    expect(packBytes.length).to.equal(inS3.packsAdded);
    expect(packBytes.reduce((a, b) => a + b, 0)).to.equal(inS3.bytesAdded);
    expect(keys.filter((k) => /\/(pending|leases|claims)\//.test(k))).to.deep.equal([]); // registrations and claims released

    const ls = JSON.parse((await s3(['ls', '--json'], store)).stdout) as { snapshots: Array<{ name: string; bytes: number }>; usage: { chunks: number; packs: number } };
    expect(ls.snapshots.map((s) => [s.name, s.bytes])).to.deep.equal([['one', 16 * MiB]]);
    expect([ls.usage.chunks, ls.usage.packs]).to.deep.equal([0, inS3.packsAdded]);
    const i3 = JSON.parse((await s3(['inspect', 'one', '--json'], store)).stdout) as Record<string, unknown>;
    const iF = JSON.parse((await cli(['store', 'inspect', 'one', '--store', folder, '--json'])).stdout) as Record<string, unknown>;
    for (const k of ['pages', 'zeroPages', 'ownPages', 'parentPages', 'chunksUsed', 'chunkStoredBytes', 'layers']) expect(i3[k], k).to.deep.equal(iF[k]);
    const text = await s3(['ls'], store);
    expect(text.stdout).to.match(/^NAME +SIZE +CREATED +PARENT\none +16\.0 MiB/);

    // --pack-mib 0: each chunk an object of its own, the folder's bytes again.
    const loose = await putJson(`s3://${bucket}/stores/loose`, img, 'one', ['--pack-mib', '0']);
    expect(loose.packsAdded).to.equal(0);
    expect(loose.manifestBytes).to.equal(inFolder.manifestBytes);
    const names = await chunkNames(bucket, 'stores/loose/');
    expect(names.size).to.equal(inFolder.chunksAdded);
    for (const hex of names) expect((await get(bucket, `stores/loose/chunks/${hex.slice(0, 2)}/${hex}`)).equals(readFileSync(join(folder, 'chunks', hex.slice(0, 2), hex))), hex).to.equal(true);
    expect((await s3(['verify', 'one', '--against', img], `s3://${bucket}/stores/loose`)).code).to.equal(0);
    const refused = await cli(['store', 'put', img, 'x', '--store', folder, '--pack-mib', '4']);
    expect([refused.code, refused.stderr]).to.deep.equal([2, 'snapfault: --pack-mib is for a store in object storage (--store s3://BUCKET/PREFIX); a folder store keeps each chunk in a file of its own\n']);
  });

  it('dedup: a second snapshot uploads only its new chunks (PUTs counted on the wire); the same file again uploads none', async () => {
    const bucket = await os.newBucket('dedup');
    const store = `s3://${bucket}/d`;
    const base = makeImage(16 * MiB, { seed: 's3-dedup', zeroFraction: 0.2 });
    proxy.reset();
    const first = await putJson(store, tmp.file('d0.img', base), 'd0', ['--chunk-kib', '32']);
    // 200-odd new chunks, in a few 4 MiB packs: one PUT a pack, none a chunk.
    expect(first.chunksAdded).to.be.above(200);
    expect(first.packsAdded).to.be.within(1, 4);
    expect(proxy.uploads('/packs/')).to.equal(first.packsAdded);
    expect(proxy.uploads('/chunks/')).to.equal(0);

    const { img, pages } = changed(base, 0.02, 's3-d1');
    proxy.reset();
    const second = await putJson(store, tmp.file('d1.img', img), 'd1');
    expect(second.newPages).to.equal(pages);
    expect(second.chunksAdded).to.equal(Math.ceil(pages / 8)); // 32 KiB chunks: new pages gathered 8 to a chunk
    expect(second.packsAdded).to.equal(1);
    expect(proxy.uploads('/packs/')).to.equal(1);
    expect(proxy.uploads('/snapshots/')).to.equal(1);

    proxy.reset();
    const again = await putJson(store, tmp.file('d1.img'), 'd1-again');
    expect(again.chunksAdded).to.equal(0);
    expect(proxy.uploads('/packs/') + proxy.uploads('/chunks/')).to.equal(0);
    // A reused chunk's pack is touched once, however many of its chunks the put uses.
    const touched = proxy.seen.filter((s) => s.copy && s.path.includes('/packs/')).map((s) => s.path);
    expect(new Set(touched).size, 'each pack touched once').to.equal(touched.length);
    expect(touched.length).to.equal(first.packsAdded + second.packsAdded);
    for (const [n, f] of [['d0', 'd0.img'], ['d1', 'd1.img'], ['d1-again', 'd1.img']]) {
      const v = await s3(['verify', n, '--against', tmp.file(f)], store);
      expect(v.code, v.stderr).to.equal(0);
    }
  });

  it('layers: a Diff put with --parent, verified against the merged memory; flatten; rm refuses a parent in use', async () => {
    const bucket = await os.newBucket('layers');
    const store = `s3://${bucket}`;
    const base = makeImage(8 * MiB, { seed: 's3-layer', zeroFraction: 0.3 });
    writeFileSync(tmp.file('lbase.img'), base);
    const merged = Buffer.from(base);
    const dirty = Array.from({ length: 150 }, (_, i) => (i * 13 + 3) % 2048);
    for (const p of dirty) prng(`s3l:${p}`, PAGE).copy(merged, p * PAGE);
    const diff = tmp.file('ldiff.img');
    const fd = openSync(diff, 'w');
    ftruncateSync(fd, merged.length);
    for (const p of dirty) writeSync(fd, merged, p * PAGE, PAGE, p * PAGE);
    closeSync(fd);
    writeFileSync(tmp.file('lmerged.img'), merged);

    await putJson(store, tmp.file('lbase.img'), 'base');
    const d = await putJson(store, diff, 'diff', ['--parent', 'base']);
    expect(d.parentPages).to.equal(2048 - 150);
    expect(d.newPages).to.equal(150);
    const i = JSON.parse((await s3(['inspect', 'diff', '--json'], store)).stdout) as { layers: string[]; parentPages: number };
    expect(i.layers).to.deep.equal(['diff', 'base']);
    expect((await s3(['verify', 'diff', '--against', tmp.file('lmerged.img')], store)).code).to.equal(0);

    const f = await s3(['flatten', 'diff', 'flat'], store);
    expect(f.code, f.stderr).to.equal(0);
    expect(f.stdout).to.match(/^flat: diff's 2 layer\(s\) as one/);
    expect((await s3(['verify', 'flat', '--against', tmp.file('lmerged.img')], store)).code).to.equal(0);

    const rm = await s3(['rm', 'base'], store);
    expect(rm.code).to.equal(2);
    expect(rm.stderr).to.equal(`snapfault: store ${store}: snapshot "base" is the parent of diff: remove or flatten it first (snapfault store flatten)\n`);
  });

  it('rm and gc: nothing referenced lost, nothing unreferenced kept', async () => {
    const bucket = await os.newBucket('gc');
    const store = `s3://${bucket}/g`;
    const a = makeImage(8 * MiB, { seed: 's3-gc-a', zeroFraction: 0.2 });
    const b = changed(a, 0.1, 's3-gc-b').img;
    const c = makeImage(8 * MiB, { seed: 's3-gc-c', zeroFraction: 0.2 });
    await putJson(store, tmp.file('ga.img', a), 'a');
    await putJson(store, tmp.file('gb.img', b), 'b');
    await putJson(store, tmp.file('gc.img', c), 'c');
    const all = await packNames(bucket, 'g/');
    expect(await chunkNames(bucket, 'g/')).to.deep.equal(new Set());

    for (const n of ['b', 'c']) expect((await s3(['rm', n], store)).code).to.equal(0);
    expect((await s3(['ls', '--json'], store)).stdout).to.include('"name":"a"').and.not.include('"name":"b"');
    // Within the grace period nothing is deleted.
    const spared = JSON.parse((await s3(['gc', '--json'], store)).stdout) as { packsDeleted: number; packsSpared: number; removedManifestsDeleted: number };
    expect(spared.packsDeleted).to.equal(0);
    // c's packs hold only c's chunks; b's new pages went into packs of their own.
    expect(spared.packsSpared).to.equal(all.size - (await referenced(bucket, 'g/')).size);
    expect(spared.packsSpared).to.be.above(0);
    expect(spared.removedManifestsDeleted).to.equal(2); // no restore leases them
    expect(await packNames(bucket, 'g/')).to.deep.equal(all);

    const r = await s3(['gc', '--grace', '0', '--json'], store);
    expect(r.code, r.stderr).to.equal(0);
    const s = JSON.parse(r.stdout) as { packsDeleted: number; packsKept: number };
    const left = await packNames(bucket, 'g/');
    const want = await referenced(bucket, 'g/');
    expect(left).to.deep.equal(want);
    expect(s.packsKept).to.equal(want.size);
    expect(s.packsDeleted).to.equal(all.size - want.size);
    expect(await list(bucket, 'g/removed/')).to.deep.equal([]);
    const v = await s3(['verify', 'a', '--against', tmp.file('ga.img')], store);
    expect(v.code, v.stderr).to.equal(0);

    expect((await s3(['rm', 'a'], store)).code).to.equal(0);
    expect((await s3(['gc', '--grace', '0'], store)).code).to.equal(0);
    expect(await list(bucket, 'g/packs/')).to.deep.equal([]);
    expect(await list(bucket, 'g/digests/')).to.deep.equal([]); // the dedup index forgets deleted chunks

    // A pack kept for some of its chunks: gc says how much of it no snapshot uses.
    const x = prng('s3-gc-x', 4 * MiB); // no page twice: each chunk's pages are its own
    const y = Buffer.from(x);
    prng('s3-gc-y', MiB).copy(y, 0); // its first MiB (two 512 KiB chunks) new, the rest x's
    await putJson(store, tmp.file('gx.img', x), 'x');
    const xChunks = decodeManifest(await get(bucket, 'g/snapshots/x')).chunks;
    await putJson(store, tmp.file('gy.img', y), 'y');
    const yNames = new Set(decodeManifest(await get(bucket, 'g/snapshots/y')).chunks.map((c) => c.name.toString('hex')));
    expect((await s3(['rm', 'x'], store)).code).to.equal(0);
    const onlyX = xChunks.filter((c) => !yNames.has(c.name.toString('hex')));
    expect(onlyX.length).to.equal(2);
    const partly = JSON.parse((await s3(['gc', '--grace', '0', '--json'], store)).stdout) as { packsDeleted: number; packBytesUnused: number };
    expect(partly.packsDeleted).to.equal(0);
    expect(partly.packBytesUnused).to.equal(onlyX.reduce((n, c) => n + (c.stored & 0x7fffffff), 0));
    expect((await s3(['gc', '--grace', '0'], store)).stdout).to.match(/; [\d.]+ MiB inside the packs kept is no snapshot's \(kept with their other chunks\)/);
  });

  it('gc racing puts that reuse its unreferenced chunks: every snapshot a put reports stored verifies', async () => {
    const bucket = await os.newBucket('gcrace');
    const store = `s3://${bucket}/r`;
    const base = makeImage(8 * MiB, { seed: 's3-gcrace', zeroFraction: 0.1 });
    const stored: Array<[string, string]> = [];
    for (let round = 0; round < 3; round++) {
      // The previous round's snapshot is removed: its chunks are unreferenced, and the next put reuses most of them.
      await putJson(store, tmp.file(`gr${round}.img`, changed(base, 0.05, `gr${round}`).img), `old${round}`);
      expect((await s3(['rm', `old${round}`], store)).code).to.equal(0);
      const file = tmp.file(`grn${round}.img`, changed(base, 0.05, `grn${round}`).img);
      const [p, ...gcs] = await Promise.all([s3(['put', file, `new${round}`, '--json'], store), ...[0, 1, 2].map(() => s3(['gc', '--grace', '0', '--json'], store))]);
      for (const g of gcs) expect(g.code, g.stderr).to.equal(0);
      if (p.code === 0) stored.push([`new${round}`, file]);
      // The only way a put may fail here: a chunk deleted in the milliseconds between gc's check and its delete (docs/store-s3.md), said so.
      else expect(p.stderr).to.match(/^snapfault: store .*: snapshot "new\d" was committed, but chunk [0-9a-f]{64} it reuses was deleted by a concurrent gc: remove it \(snapfault store rm\) and put it again\n$/);
    }
    expect(stored.length, 'puts that lost a race with gc').to.be.at.least(2);
    for (const [n, f] of stored) {
      const v = await s3(['verify', n, '--against', f], store);
      expect(v.code, v.stderr).to.equal(0);
    }
  });

  it('a name is never clobbered: of puts racing for one name exactly one wins', async () => {
    const bucket = await os.newBucket('race');
    const store = `s3://${bucket}`;
    const files = [0, 1, 2].map((i) => tmp.file(`race${i}.img`, makeImage(4 * MiB, { seed: `s3-race-${i}`, zeroFraction: 0.5 })));
    const results = await Promise.all(files.map((f) => s3(['put', f, 'same', '--json'], store)));
    const won = results.filter((r) => r.code === 0);
    expect(won.length, results.map((r) => r.stderr).join('')).to.equal(1);
    for (const r of results.filter((x) => x.code !== 0)) {
      expect(r.code).to.equal(2);
      expect(r.stderr).to.match(new RegExp(`^snapfault: store ${store}: (already has a snapshot "same"|another put is committing a snapshot "same" now)[^\\n]*\\n$`));
    }
    const winner = files[results.indexOf(won[0])];
    expect((await s3(['verify', 'same', '--against', winner], store)).code).to.equal(0);
    const again = await s3(['put', files[0], 'same'], store);
    expect(again.code).to.equal(2);
    expect(again.stderr).to.match(/already has a snapshot "same"/);
  });

  it('a damaged or missing chunk object is caught by verify, named, exit 1', async () => {
    const bucket = await os.newBucket('damage');
    const store = `s3://${bucket}/x`;
    const img = tmp.file('dmg.img', makeImage(4 * MiB, { seed: 's3-damage', zeroFraction: 0.1 }));
    await putJson(store, img, 'snap', ['--pack-mib', '0']);
    const keys = await list(bucket, 'x/chunks/');
    const victim = keys[3];
    const hex = victim.slice(victim.lastIndexOf('/') + 1);
    const bytes = await get(bucket, victim);
    bytes[bytes.length >> 1] ^= 0x40;
    await os.client.send(new PutObjectCommand({ Bucket: bucket, Key: victim, Body: bytes }));
    const v = await s3(['verify', 'snap'], store);
    expect(v.code).to.equal(1);
    expect(v.stderr).to.match(new RegExp(`^snapfault: store ${store}: snapshot "snap": chunk ${hex} (fails its checksum|does not decode|is not what its name says)\\n$`));

    await os.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: victim }));
    const gone = await s3(['verify', 'snap'], store);
    expect(gone.code).to.equal(1);
    expect(gone.stderr).to.equal(`snapfault: store ${store}: snapshot "snap": chunk ${hex} is missing\n`);
  });

  it('a damaged, cut or missing pack is caught by verify, naming the chunk and its pack, exit 1', async () => {
    const bucket = await os.newBucket('packdamage');
    const store = `s3://${bucket}/x`;
    const img = tmp.file('pdmg.img', makeImage(4 * MiB, { seed: 's3-pack-damage', zeroFraction: 0.1 }));
    await putJson(store, img, 'snap', ['--chunk-kib', '64', '--pack-mib', '1']);
    const chunks = decodeManifest(await get(bucket, 'x/snapshots/snap')).chunks;
    const victim = chunks[3];
    const key = `x/packs/${victim.pack}`;
    const hex = victim.name.toString('hex');
    const pack = await get(bucket, key);
    const bad = Buffer.from(pack);
    bad[victim.offset + 10] ^= 0x40;
    await os.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bad }));
    const v = await s3(['verify', 'snap'], store);
    expect(v.code).to.equal(1);
    expect(v.stderr).to.match(new RegExp(`^snapfault: store ${store}: snapshot "snap": chunk ${hex} (fails its checksum|does not decode|is not what its name says)\\n$`));

    // Cut short just inside the last chunk of the pack.
    const inPack = chunks.filter((c) => c.pack === victim.pack);
    const last = inPack.reduce((a, b) => (b.offset > a.offset ? b : a));
    await os.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: pack.subarray(0, pack.length - 1) }));
    const cut = await s3(['verify', 'snap'], store);
    expect(cut.code).to.equal(1);
    expect(cut.stderr).to.equal(`snapfault: store ${store}: snapshot "snap": chunk ${last.name.toString('hex')} (pack ${victim.pack}) is damaged: its pack is shorter than the manifest says\n`);

    await os.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    const gone = await s3(['verify', 'snap'], store);
    expect(gone.code).to.equal(1);
    const firstInPack = chunks.find((c) => c.pack === victim.pack)!;
    expect(gone.stderr).to.equal(`snapfault: store ${store}: snapshot "snap": chunk ${firstInPack.name.toString('hex')} (pack ${victim.pack}) is missing\n`);
  });

  it('an unreachable endpoint, wrong credentials, a missing bucket, a bad location: one line each naming the store and what to do, exit 2', async () => {
    const bucket = await os.newBucket('errors');
    const store = `s3://${bucket}/e`;
    const img = tmp.file('err.img', makeImage(1 * MiB, { seed: 's3-err' }));
    expect((await s3(['put', img, 'ok'], store)).code).to.equal(0);

    const started = Date.now();
    const down = await cli(['store', 'ls', '--store', store, '--s3-endpoint', 'http://127.0.0.1:1']);
    expect(down.code).to.equal(2);
    expect(down.stderr).to.equal(`snapfault: store ${store}: cannot be reached at http://127.0.0.1:1 (ECONNREFUSED): check --s3-endpoint (or AWS_ENDPOINT_URL) and that the object store is running\n`);
    expect(Date.now() - started).to.be.below(30_000);
    // AWS_ENDPOINT_URL is the default endpoint.
    const viaEnv = await cli(['store', 'ls', '--store', store], { AWS_ENDPOINT_URL: 'http://127.0.0.1:1' });
    expect(viaEnv.stderr).to.match(/cannot be reached at http:\/\/127\.0\.0\.1:1/);
    const ok = await cli(['store', 'ls', '--store', store], { AWS_ENDPOINT_URL: proxy.endpoint });
    expect(ok.code, ok.stderr).to.equal(0);

    for (const cmd of [['ls'], ['verify', 'ok'], ['put', img, 'other']]) {
      const bad = await s3(cmd, store, { AWS_SECRET_ACCESS_KEY: 'not-the-secret' });
      expect(bad.code, cmd[0]).to.equal(2);
      expect(bad.stderr, cmd[0]).to.match(new RegExp(`^snapfault: store ${store}: ${proxy.endpoint.replace(/\./g, '\\.')} refused the credentials \\((SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId)\\): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY[^\\n]*\\n$`));
    }
    const none = await s3(['ls'], store, { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' });
    expect(none.code).to.equal(2);
    expect(none.stderr).to.match(/^snapfault: store .*: (no credentials found: set AWS_ACCESS_KEY_ID|.*refused the credentials)[^\n]*\n$/);

    const nob = await s3(['ls'], 's3://sf-no-such-bucket-here/p');
    expect(nob.code).to.equal(2);
    expect(nob.stderr).to.equal(`snapfault: store s3://sf-no-such-bucket-here/p: bucket "sf-no-such-bucket-here" does not exist at ${proxy.endpoint}: create it first, or check the name\n`);
    const empty = await s3(['ls'], `s3://${bucket}/nothing-here`);
    expect(empty.stderr).to.match(/^snapfault: store s3:\/\/.*\/nothing-here: is not a snapfault store \(no store\.json\)/);
    const badName = await s3(['ls'], 's3://No_Such/p');
    expect(badName.stderr).to.match(/^snapfault: s3:\/\/No_Such\/p: "No_Such" is not a bucket name/);
    const folderEndpoint = await cli(['store', 'ls', '--store', tmp.file('f'), '--s3-endpoint', proxy.endpoint]);
    expect(folderEndpoint.stderr).to.match(/^snapfault: --s3-endpoint is for a store in object storage/);

    for (const r of [down, viaEnv, ...[none, nob, empty]]) expect(r.stderr).not.to.match(/\n\s+at /);
  });
});
