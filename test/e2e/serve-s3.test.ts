// Serving from a store in a bucket, end to end: a real S3-compatible store
// (Swift with s3api, scripts/object-store.sh) behind a proxy that counts the
// GETs and can hold or refuse them, real userfaultfd, the Firecracker
// simulator checking every byte. Cold and warm disk cache, one GET a chunk
// whatever asks for it, a fault held on its chunk while other faults are
// served, a store that stops answering (--fetch-timeout, then --on-fatal),
// damage in the bucket and in the cache, the cache's bound, a name put again
// while a serve runs.
import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { GetObjectCommand, PutObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { SNAPFAULT } from '../helpers/paths.js';
import { TempDir, makeImage } from '../helpers/images.js';
import { BucketSnapshot, cachedChunks } from '../helpers/bucket-serving.js';
import { startSnapfault, runSim, startSim, type Proc } from '../helpers/processes.js';
import { ensureObjectStore, type ObjectStore } from '../helpers/object-store.js';
import { CountingProxy, isChunkGet } from '../helpers/counting-proxy.js';
import { decodeManifest } from '../../src/store/manifest.js';

const MiB = 1 << 20;

describe('serving from a store in a bucket (S3 API, on Swift)', function () {
  this.timeout(240_000);
  const tmp = new TempDir();
  let os: ObjectStore;
  let proxy: CountingProxy;
  let bucket: string;
  let snapshot: BucketSnapshot;
  let store: string;
  let img: string;
  /** The chunks the snapshot uses. */
  let chunks = 0;
  let ownSockets = 0;

  before(async function () {
    this.timeout(900_000); // a clean machine installs Swift first
    os = await ensureObjectStore();
    proxy = await CountingProxy.start(os.endpoint);
    bucket = await os.newBucket('serve');
    snapshot = await BucketSnapshot.put(tmp, os, proxy, bucket, 16, 'serve-s3');
    ({ store, img, chunks } = snapshot);
  });
  afterEach(async () => snapshot?.stopHandlers());
  after(async () => {
    await proxy?.stop();
    os?.release();
    tmp.remove();
  });

  /** A drop-in handler of a store of the test's own, straight to Swift. */
  async function ownHandler(location: string, cache: string, extra: string[] = []): Promise<{ h: Proc; sock: string }> {
    const sock = tmp.file(`own${ownSockets++}.sock`);
    const h = await startSnapfault(['--store', location, '--s3-endpoint', os.endpoint, '--cache-dir', cache, '--log-format', 'text', ...extra, sock, 'snap'], { env: os.env });
    snapshot.handlers.push(h);
    return { h, sock };
  }

  it('restores every byte with a cold cache, each chunk fetched once; a restart over the warm cache fetches none', async () => {
    const cache = tmp.file('cache-cold');
    proxy.reset();
    // No read ahead: each fault fetches its own chunk (read ahead has its own test).
    const log = await snapshot.restore(cache, ['--pattern', 'random', '--threads', '2'], ['--fetch-readahead', '0']);
    const gets = snapshot.chunkGets();
    expect(new Set(gets).size, 'every chunk fetched').to.equal(chunks);
    // Serving reads chunks with its lean signed GET (src/store/s3-chunk-get.ts), not through the SDK (which names itself).
    const agents = new Set(proxy.seen.filter(isChunkGet).map((s) => s.agent));
    expect([...agents].some((a) => a.includes('aws-sdk')), [...agents].join(', ')).to.equal(false);
    expect(proxy.gets('/snapshots/').every((s) => s.agent.includes('aws-sdk')), 'the manifest through the SDK').to.equal(true);
    const files = cachedChunks(cache);
    expect(files.size).to.equal(chunks);
    // The VM's summary says what was fetched for it: one GET a chunk, and hedges (sent beside a slow one) on top. A hedge
    // abandoned when the first answer came may never have reached the store: the wire has at most one GET more per hedge.
    const m = /bucket \(all this handler's fetches while the VM was served\): (\d+) GETs \(([\d.]+) MiB, [\d.]+ ms each on average\), 0 failed, (\d+) hedged \((\d+) answered first\)/.exec(log);
    expect(m, log).not.to.equal(null);
    const [answered, mib, hedged] = [Number(m![1]), Number(m![2]), Number(m![3])];
    expect(gets.length - chunks, 'GETs beyond one a chunk are hedges').to.be.within(0, hedged);
    expect(answered).to.be.within(chunks, gets.length);
    if (hedged === 0) expect(mib).to.equal(Number(([...files.values()].reduce((a, b) => a + b, 0) / MiB).toFixed(1)));
    // Every chunk's first fault waited for its fetch (later ones may have too), each wait within the longest.
    const waits = /(\d+) faults? of this VM waited for a fetch \(longest ([\d.]+) ms, ([\d.]+) ms in all\)/.exec(log);
    expect(waits, log).not.to.equal(null);
    expect(Number(waits![1])).to.be.at.least(chunks);
    expect(Number(waits![3])).to.be.at.least(Number(waits![2])).and.below(Number(waits![1]) * Number(waits![2]) + 0.1);

    proxy.reset();
    const warm = await snapshot.restore(cache, ['--pattern', 'seq']);
    expect(snapshot.chunkGets(), 'GETs with a warm cache').to.deep.equal([]);
    // Opening the bucket is said, with its time (start-up reads it before the socket exists).
    expect(warm).to.match(/opened snap in store s3:\/\/\S+ in \d+ ms \(client, store\.json, manifests, lease\)/);
    expect(warm).to.match(/0 GETs \(0 KiB\), 0 failed, 0 hedged \(0 answered first\), 0 found in the disk cache meanwhile; 0 faults of this VM waited for a fetch/);
    // Leased in the bucket while served (gc keeps its chunks), released after.
    expect(proxy.seen.some((s) => s.method === 'PUT' && s.path.includes('/p/leases/'))).to.equal(true);
    const leases = await os.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'p/leases/' }));
    expect(leases.Contents ?? []).to.deep.equal([]);
  });

  it('on demand, a guest reading on is read ahead: the chunks after its fault come in runs before it asks, each once; with --fetch-readahead 0 each fault fetches its own', async () => {
    const waited = (log: string): number => Number(/(\d+) faults? of this VM waited for a fetch/.exec(log)?.[1] ?? NaN);
    proxy.reset();
    const own = await snapshot.restore(tmp.file('cache-ra-off'), ['--pattern', 'seq'], ['--fetch-hedge', 'off', '--fetch-readahead', '0']);
    expect(snapshot.chunkRequests().length, 'one GET a chunk').to.equal(chunks);
    expect(waited(own), own).to.be.at.least(chunks);
    proxy.reset();
    const ahead = await snapshot.restore(tmp.file('cache-ra'), ['--pattern', 'seq'], ['--fetch-hedge', 'off']);
    const gets = snapshot.chunkGets();
    expect(new Set(gets).size, 'every chunk fetched').to.equal(chunks);
    expect(gets.length, 'none twice').to.equal(chunks);
    // Chunks side by side in a pack come in one GET: far fewer requests, and most faults find their chunk cached.
    const requests = snapshot.chunkRequests().length;
    console.log(`      read ahead: ${requests} GETs for ${chunks} chunks, ${waited(ahead)} faults waited for one (without: ${chunks} GETs, ${waited(own)} waited)`);
    expect(requests, ahead).to.be.below(chunks / 3);
    expect(waited(ahead), ahead).to.be.below(chunks / 3);
  });

  it('several VMs on one serve, and two handlers sharing one cache: each chunk fetched once', async () => {
    const cache = tmp.file('cache-shared');
    proxy.reset();
    // No hedging: every GET on the wire is then one chunk's one fetch. No read ahead: each a fault's.
    const a = await snapshot.handler(cache, ['--workers', '2', '--metrics', '127.0.0.1:0', '--fetch-hedge', 'off', '--fetch-readahead', '0'], true);
    const b = await snapshot.handler(cache, ['--workers', '2', '--metrics', '127.0.0.1:0', '--fetch-hedge', 'off', '--fetch-readahead', '0'], true);
    const sims = [a, a, a, b, b].map((x, i) => startSim(['--socket', x.sock, '--mem', img, '--verify', '--pattern', 'random', '--seed', String(i + 1)]).result);
    for (const r of await Promise.all(sims)) {
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json?.mismatches).to.equal(0);
    }
    const gets = snapshot.chunkGets();
    expect(new Set(gets).size, 'no chunk fetched twice').to.equal(gets.length);
    expect(gets.length).to.equal(cachedChunks(cache).size);
    // Each handler's metrics count its own GETs: together, every GET seen on the wire.
    let total = 0;
    let misses = 0;
    for (const x of [a, b]) {
      const url = (await x.h.waitForStderr(/metrics on (http:\/\/\S+)/))[1];
      const text = await (await fetch(url)).text();
      const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      total += value('snapfault_store_gets_total');
      // The disk cache tier: every chunk some VM of it read was read from the cache file (a hit), some found absent first (a miss).
      expect(value('snapfault_store_disk_cache_hits_total')).to.be.at.least(1);
      misses += value('snapfault_store_disk_cache_misses_total');
      expect(value('snapfault_store_fetches_in_flight')).to.equal(0);
      expect(value('snapfault_store_disk_cache_bytes')).to.be.above(0);
      expect(value('snapfault_store_get_seconds_total')).to.be.above(0);
      // Every answered GET in the latency histogram, its sum the seconds counted above.
      expect(value('snapfault_store_get_latency_seconds_count')).to.equal(value('snapfault_store_gets_total'));
      expect(Number(/^snapfault_store_get_latency_seconds_bucket\{le="\+Inf"\} (\S+)$/m.exec(text)?.[1])).to.equal(value('snapfault_store_gets_total'));
      expect(value('snapfault_store_get_latency_seconds_sum')).to.equal(value('snapfault_store_get_seconds_total'));
    }
    expect(total).to.equal(gets.length);
    // Every chunk fetched was first a miss of one of the handlers (more: several threads may find one chunk absent before it lands).
    expect(misses).to.be.at.least(gets.length);
    // Each chunk is counted for the one VM whose fault asked for it first: over the five VMs, every GET once.
    await a.h.waitForStderr(/(ended[^]*){3}/);
    await b.h.waitForStderr(/(ended[^]*){2}/);
    const own = [a, b].flatMap((x) => [...x.h.stderr.matchAll(/(\d+) chunks? \([\d.]+ [KM]iB\) fetched because its faults asked first/g)].map((m) => Number(m[1])));
    expect(own.length, 'an end line for each VM').to.equal(5);
    expect(own.reduce((x, y) => x + y, 0)).to.equal(gets.length);
  });

  it('a fault waits only for its own chunk: with its chunks held back, another VM on the same worker is served from the cache', async () => {
    const cache = tmp.file('cache-held');
    // The first half of memory (its chunks) in the cache.
    await snapshot.restore(cache, ['--pattern', 'seq', '--touches', '2048']);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    proxy.gate = async (s) => {
      if (isChunkGet(s)) await held;
      return 'pass';
    };
    const { h, sock } = await snapshot.handler(cache, ['--workers', '1'], true);
    const waiting = startSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq']);
    await h.waitForStderr(/VM pid \d+: serving/);
    // The bystander touches only cached pages, while the first VM waits on a chunk held at the proxy.
    const bystander = await runSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq', '--touches', '2048']);
    expect(bystander.code, `${bystander.stderr}\n${h.stderr}`).to.equal(0);
    expect(bystander.json?.mismatches).to.equal(0);
    expect(waiting.proc.child.exitCode, 'the VM whose chunk is held still waits').to.equal(null);
    release();
    const r = await waiting.result;
    expect(r.code, `${r.stderr}\n${h.stderr}`).to.equal(0);
    expect(r.json?.mismatches).to.equal(0);
  });

  it('a GET that never answers is hedged: the second GET of that chunk serves the fault long before --fetch-timeout; with --fetch-hedge off the VM waits it out', async () => {
    // The very first chunk GET is stuck on the way (held at the proxy until the end); any later GET of that chunk passes.
    const stuck = proxy.holdFirstChunkGet({ onlyTheFirstRequest: true });
    try {
      proxy.reset();
      const log = await snapshot.restore(tmp.file('cache-hedged'), ['--pattern', 'random', '--touches', '500'], ['--fetch-timeout', '20']);
      expect(log).to.match(/0 failed, [1-9]\d* hedged \([1-9]\d* answered first\)/);
      expect(snapshot.chunkGets().filter((p) => p === stuck.path()).length, 'the stuck GET and its hedge').to.equal(2);
      // The stuck GET was abandoned once its hedge answered: its connection is closed, not left for the 60 s timeout.
      expect(proxy.closedEarly.some((p) => p === stuck.path()), 'the stuck GET closed by the handler').to.equal(true);

      // The same stuck GET with hedging off: the fault waits --fetch-timeout, then --on-fatal.
      proxy.gate = async () => 'pass';
      const again = proxy.holdFirstChunkGet({ onlyTheFirstRequest: true });
      const { h, sock } = await snapshot.handler(tmp.file('cache-unhedged'), ['--fetch-timeout', '2', '--fetch-hedge', 'off']);
      const sim = await runSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'random', '--touches', '500']);
      await h.waitExit();
      expect(sim.code, 'killed by --on-fatal').not.to.equal(0);
      expect(h.stderr).to.match(/could not be fetched within 2 s: no answer in time/);
      again.release();
    } finally {
      stuck.release();
    }
  });

  it('an answer cut off halfway (the connection dropped) is never served: that chunk is fetched again and every byte is right', async () => {
    let cutPath = '';
    proxy.gate = async (s) => {
      if (!isChunkGet(s) || (cutPath && s.path !== cutPath)) return 'pass';
      if (cutPath) return 'pass';
      cutPath = s.path;
      return 'cut';
    };
    proxy.reset();
    const log = await snapshot.restore(tmp.file('cache-cut'), ['--pattern', 'random', '--touches', '500']);
    expect(cutPath).not.to.equal('');
    expect(snapshot.chunkGets().filter((p) => p === cutPath).length, 'cut, then fetched again').to.be.at.least(2);
    expect(log).to.match(/[1-9]\d* failed, \d+ hedged/);
  });

  it('a store that stops answering: the fault waits --fetch-timeout, then --on-fatal names snapshot, chunk and last error; a bystander with cached chunks goes on', async () => {
    const cache = tmp.file('cache-down');
    await snapshot.restore(cache, ['--pattern', 'seq', '--touches', '2048']);
    proxy.gate = async (s) => (isChunkGet(s) ? 'refuse' : 'pass');
    const { h, sock } = await snapshot.handler(cache, ['--fetch-timeout', '3'], true);
    const started = Date.now();
    const doomed = startSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq']);
    const bystander = await runSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq', '--touches', '2048']);
    expect(bystander.code, `${bystander.stderr}\n${h.stderr}`).to.equal(0);
    expect(bystander.json?.mismatches).to.equal(0);
    const d = await doomed.result;
    const waited = Date.now() - started;
    expect(d.signal, 'the VM whose chunk never came is killed (kill-peer)').to.equal('SIGKILL');
    expect(waited).to.be.within(3000, 30_000);
    const line = (await h.waitForStderr(/VM pid \d+: chunk .*\n/))[0];
    expect(line, line).to.match(new RegExp(`VM pid \\d+: chunk [0-9a-f]{64} could not be fetched within 3 s: [^\\n]*(ServiceUnavailable|503|held down)[^\\n]*; no byte of it was served \\(snapshot snap in store ${store}\\); killed Firecracker pid \\d+ \\(`));
    expect(h.stderr).not.to.match(/\n\s+at /);
  });

  it('a damaged object in the bucket is neither cached nor served; a chunk damaged in the cache is never served: fetched again', async () => {
    // A store of its own: the damage must not reach the other tests.
    const bucket = await os.newBucket('damage');
    const own = `s3://${bucket}`;
    const small = tmp.file('small.img', makeImage(2 * MiB, { seed: 'serve-s3-damage', zeroFraction: 0 }));
    const put = spawnSync(SNAPFAULT, ['store', 'put', small, 'snap', '--store', own, '--s3-endpoint', os.endpoint], { encoding: 'utf8', env: { ...process.env, ...os.env } });
    expect(put.status, put.stderr).to.equal(0);
    // One chunk damaged inside its pack.
    const read = async (key: string): Promise<Buffer> => Buffer.from(await (await os.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());
    const chunk = decodeManifest(await read('snapshots/snap')).chunks[0];
    const hex = chunk.name.toString('hex');
    const victim = `packs/${chunk.pack}`;
    const body = await read(victim);
    const stored = body.subarray(chunk.offset, chunk.offset + (chunk.stored & 0x7fffffff));
    const bad = Buffer.from(body);
    bad[chunk.offset + (stored.length >> 1)] ^= 0x20;
    await os.client.send(new PutObjectCommand({ Bucket: bucket, Key: victim, Body: bad }));

    const cache = tmp.file('cache-damage');
    const { h, sock } = await ownHandler(own, cache, ['--fetch-timeout', '2']);
    const sim = await runSim(['--socket', sock, '--mem', small, '--verify']);
    expect(sim.signal).to.equal('SIGKILL');
    await h.waitExit();
    expect(h.stderr, h.stderr).to.match(new RegExp(`chunk ${hex} could not be fetched within 2 s: the bucket's object for chunk ${hex} (does not decode|is not what its name says); no byte of it was served`));
    expect(cachedChunks(cache).has(hex), 'the damaged object was not cached').to.equal(false);

    // The object mended, every chunk cached; then one damaged in the cache: the core's check on reading it back refuses it.
    await os.client.send(new PutObjectCommand({ Bucket: bucket, Key: victim, Body: body }));
    const ok = await ownHandler(own, cache);
    const good = await runSim(['--socket', ok.sock, '--mem', small, '--verify']);
    expect(good.code, ok.h.stderr).to.equal(0);
    expect(good.json?.mismatches).to.equal(0);
    const file = join(cache, 'chunks', hex.slice(0, 2), hex);
    const bytes = readFileSync(file);
    bytes[bytes.length >> 1] ^= 0x20;
    writeFileSync(file, bytes);
    const again = await ownHandler(own, cache);
    const mended = await runSim(['--socket', again.sock, '--mem', small, '--verify']);
    expect(mended.code, again.h.stderr).to.equal(0);
    expect(mended.json?.mismatches).to.equal(0);
    expect((await again.h.waitExit()).code).to.equal(0);
    expect(readFileSync(file).equals(stored), 'the damaged cached chunk was fetched again').to.equal(true);
    expect(again.h.stderr).to.match(new RegExp(`warn: chunk ${hex} in the disk cache fails its checks: deleted, fetched again\\n`));
  });

  it('the disk cache stays within --cache-size, least recently read chunks evicted, every byte still right', async () => {
    const cache = tmp.file('cache-small');
    await snapshot.restore(cache, ['--pattern', 'random'], ['--cache-size', '4M']);
    const bytes = [...cachedChunks(cache).values()].reduce((a, b) => a + b, 0);
    expect(bytes).to.be.at.most(4 * MiB);
    expect(bytes).to.be.above(2 * MiB);
  });

  it('serve follows a name put again (--follow): a VM running across the re-put keeps its bytes, the next VM gets the new ones, the old lease goes with its last VM', async () => {
    const location = `s3://${await os.newBucket('follow')}/p`;
    const env = { ...process.env, ...os.env };
    const cli = (args: string[]): void => {
      const r = spawnSync(SNAPFAULT, [...args, '--store', location, '--s3-endpoint', os.endpoint], { encoding: 'utf8', env });
      expect(r.status, r.stderr).to.equal(0);
    };
    const first = tmp.file('follow-a.img', makeImage(8 * MiB, { seed: 'follow-a', zeroFraction: 0.3 }));
    const second = tmp.file('follow-b.img', makeImage(8 * MiB, { seed: 'follow-b', zeroFraction: 0.3 }));
    cli(['store', 'put', first, 'snap', '--chunk-kib', '32']);
    const sock = tmp.file('follow.sock');
    const h = await startSnapfault(['serve', '--store', location, '--s3-endpoint', os.endpoint, '--cache-dir', tmp.file('follow-cache'), '--socket', sock,
      '--mem', 'snap', '--follow', '1', '--log-format', 'text'], { env: os.env });
    snapshot.handlers.push(h);
    // Alive across the re-put (a put is slow beside it on this machine): faulting, its pages removed and faulted again, for 20 s, every byte checked against the first image.
    const before = startSim(['--socket', sock, '--mem', first, '--verify', '--churn-ms', '20000', '--threads', '2', '--churn-removers', '1',
      '--churn-window', '256', '--churn-max', '8', '--churn-stuck-ms', '30000']);
    await h.waitForStderr(/serving 1 region/, 20_000);
    cli(['store', 'rm', 'snap']);
    cli(['store', 'put', second, 'snap', '--chunk-kib', '32']);
    await h.waitForStderr(/was put again \(now [0-9a-f]{16}\): the VMs that come next get it; the snapshot before stays open for the 1 VM on it/, 20_000);
    const after = await runSim(['--socket', sock, '--mem', second, '--verify', '--pattern', 'random', '--touches', '3000', '--threads', '2']);
    expect(after.code, `${after.stderr}\n${h.stderr}`).to.equal(0);
    expect(after.json?.mismatches).to.equal(0);
    const r = await before.result;
    expect(r.code, `${r.stderr}\n${h.stderr}`).to.equal(0);
    expect(r.json?.mismatches).to.equal(0);
    // The first snapshot's lease is given back once its VM has ended: one lease left, the current snapshot's.
    const leases = async (): Promise<number> => (await os.client.send(new ListObjectsV2Command({ Bucket: location.slice(5, location.indexOf('/', 5)), Prefix: 'p/leases/' }))).KeyCount ?? 0;
    for (let i = 0; i < 50 && (await leases()) > 1; i++) await new Promise((res) => setTimeout(res, 100));
    expect(await leases(), h.stderr).to.equal(1);
    h.kill('SIGTERM');
    expect((await h.waitExit()).code, h.stderr).to.equal(0);
  });

  it('refuses in one line: no --cache-dir, --cache-dir, --fetch-concurrency, --fetch-hedge or --follow without a bucket, a --fetch-hedge that is no delay', () => {
    const run = (args: string[]): string => spawnSync(SNAPFAULT, args, { encoding: 'utf8', env: { ...process.env, ...os.env } }).stderr;
    expect(run(['--store', store, tmp.file('x.sock'), 'snap'])).to.equal(`snapfault: ${store}: serving from a store in a bucket needs --cache-dir DIR, the local disk cache of its chunks\n`);
    expect(run(['--fetch-concurrency', '4', tmp.file('x.sock'), img])).to.equal('snapfault: --fetch-concurrency is for serving a store in a bucket (--store s3://BUCKET/PREFIX)\n');
    expect(run(['--cache-dir', tmp.file('c'), tmp.file('x.sock'), img])).to.equal('snapfault: --cache-dir is for serving a store in a bucket (--store s3://BUCKET/PREFIX)\n');
    expect(run(['--fetch-hedge', 'off', tmp.file('x.sock'), img])).to.equal('snapfault: --fetch-hedge is for serving a store in a bucket (--store s3://BUCKET/PREFIX)\n');
    expect(run(['--follow', '5', tmp.file('x.sock'), img])).to.equal('snapfault: --follow is for serving a store in a bucket (--store s3://BUCKET/PREFIX)\n');
    expect(run(['--store', store, '--cache-dir', tmp.file('c'), '--fetch-hedge', 'soon', tmp.file('x.sock'), 'snap'])).to.equal('snapfault: --fetch-hedge must be auto, off or a delay in milliseconds, got soon\n');
  });
});
