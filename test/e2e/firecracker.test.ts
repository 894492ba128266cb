// snapfault under the real Firecracker (v1.14.1, from the kit in
// ../shared/firecracker): a guest booted on this machine's KVM is snapshotted
// once per build, then restored through snapfault while it checks every byte
// of its memory against a checksum taken before the snapshot.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, openSync, closeSync, fstatSync, readFileSync, writeFileSync, readSync } from 'node:fs';
import { dataExtents } from '../../native/fd.js';
import { SNAPFAULT } from '../helpers/paths.js';
import { TempDir } from '../helpers/images.js';
import { Proc, startSnapfault } from '../helpers/processes.js';
import { q, sh, KIT, requireKit, KitSnapshot, KitDiffSnapshots, restoreAndAlloc, type Restore } from '../helpers/firecracker.js';
import { ensureObjectStore, type ObjectStore } from '../helpers/object-store.js';
import { pack } from '../../src/compressed/pack.js';
import { readTrace } from '../../src/trace/trace-file.js';
import { summarize } from '../../src/trace/summary.js';

/** Small enough to restore in a second or two. */
const snapshot = new KitSnapshot(16, 128);
const SNAPSHOT_MEM = snapshot.mem;
const restore = (handler: string[], env: NodeJS.ProcessEnv = {}): Promise<Restore> => snapshot.restore(handler, env);

function expectPass(r: Restore): void {
  expect(r.pass, r.output).to.equal(true);
  expect(r.loadMs).to.be.above(0);
  expect(r.verifiedMs).to.be.above(0);
}

describe('real Firecracker', function () {
  this.timeout(300_000);
  const tmp = new TempDir();
  let packed = '';

  before(async function () {
    requireKit(this);
    console.log(`    real Firecracker: kit ${KIT}, snapshot of a ${snapshot.vmMib} MiB VM with a ${snapshot.guestMib} MiB guest buffer (made once per build, ~65 s)`);
    await snapshot.ensure();
    packed = tmp.file('mem.sfz');
    await pack(SNAPSHOT_MEM, packed);
  });
  after(() => tmp.remove());

  it('real Firecracker: restores on demand from the raw memory file, every byte checked', async () => {
    const r = await restore([SNAPFAULT]);
    expectPass(r);
    expect(r.output).to.match(/ended: Firecracker closed the connection; \d+ faults?\b/);
  });

  it('real Firecracker: restores from a compressed snapshot', async () => {
    const r = await restore(sh(`exec ${q(SNAPFAULT)} "$1" ${q(packed)}`));
    expectPass(r);
    expect(r.output).to.match(/chunks: [1-9]\d* decoded/);
  });

  for (const compressed of [false, true]) {
    it(`real Firecracker: balloon inflate and deflate (UFFD_EVENT_REMOVE), the guest re-touches removed memory${compressed ? ', compressed' : ''}`, async () => {
      // Zero ranges off: every page the balloon takes is the handler's, so the REMOVEs come.
      const handler = compressed ? sh(`exec ${q(SNAPFAULT)} --zero-ranges off "$1" ${q(packed)}`) : [SNAPFAULT, '--zero-ranges', 'off'];
      const r = await restore(handler, { BALLOON_MIB: '16', ROUNDS: '2' });
      expectPass(r);
      expect(r.output).to.match(/balloon: reached 16 MiB/);
      expect(r.output).to.match(/nonzero_words=0/);
      expect(r.output).to.match(/[1-9]\d* removes?\b/);
    });
  }

  it('real Firecracker: with the all-zero ranges unregistered, the balloon takes pages the handler never hears of, and the guest reads zeros there after the deflate', async () => {
    const r = await restore([SNAPFAULT], { BALLOON_MIB: '16', ROUNDS: '2' });
    expectPass(r);
    expect(r.output).to.match(/balloon: reached 16 MiB/);
    // The guest re-allocates 32 MiB after the deflate and checks it is zero; then re-checks its buffer.
    expect(r.output).to.match(/nonzero_words=0/);
    expect(r.output).to.match(/[1-9]\d* all-zero ranges? \([\d.]+ MiB\) left to the kernel/);
  });

  it('real Firecracker: the guest allocates fresh memory after the restore without the handler (zero ranges unregistered)', async () => {
    const on = await restoreAndAlloc(snapshot, [SNAPFAULT, '--log-format', 'text'], 4);
    expect(on.pass, on.output).to.equal(true);
    const off = await restoreAndAlloc(snapshot, [SNAPFAULT, '--log-format', 'text', '--zero-ranges', 'off'], 4);
    expect(off.pass, off.output).to.equal(true);
    const faults = (out: string): number => Number(/(\d+) faults? \(/.exec(out)?.[1] ?? NaN);
    expect(on.output).to.match(/all-zero ranges? \([\d.]+ MiB\) left to the kernel/);
    // 4 MiB is 1024 pages: served on demand without zero ranges, by the kernel with them.
    expect(faults(off.output) - faults(on.output), `${on.output}\n${off.output}`).to.be.above(900);
  });

  it('real Firecracker: records a restore, then replays it ahead of the guest', async () => {
    const trace = tmp.file('fc.trace');
    const first = await restore([SNAPFAULT, '--record', trace]);
    expectPass(first);
    expect(existsSync(trace)).to.equal(true);
    const replayed = await restore([SNAPFAULT, '--prefetch', `replay:${trace}`]);
    expectPass(replayed);
    expect(replayed.output).to.match(/prefetch: [1-9]\d* pages copied/);
    const compressed = await restore(sh(`exec ${q(SNAPFAULT)} --prefetch replay:${q(trace)} "$1" ${q(packed)}`));
    expectPass(compressed);
    expect(compressed.output).to.match(/prefetch: [1-9]\d* pages copied/);
  });

  it('real Firecracker: --prefetch all, raw and compressed', async () => {
    expectPass(await restore([SNAPFAULT, '--prefetch', 'all']));
    expectPass(await restore(sh(`exec ${q(SNAPFAULT)} --prefetch all "$1" ${q(packed)}`)));
  });

  describe('one snapfault serve', () => {
    let h: Proc;
    let sock: string;
    before(async () => {
      sock = tmp.file('serve.sock');
      h = await startSnapfault(['serve', '--socket', sock, '--mem', SNAPSHOT_MEM, '--log-format', 'text']);
    });
    after(async () => {
      h.kill('SIGKILL');
      await h.waitExit();
    });
    // The kit starts "the handler" per restore: here a stand-in that points its socket at the running serve.
    const viaServe = (): string[] => sh(`ln -s ${q(sock)} "$1" && exec sleep 600`);

    it('real Firecracker: serve restores three Firecrackers at once', async () => {
      const rs = await Promise.all([0, 1, 2].map(() => restore(viaServe(), { HANDLER_EXIT_TIMEOUT: '0' })));
      for (const r of rs) expectPass(r);
      await h.waitForStderr(/(ended: Firecracker closed the connection[^]*){3}/, 20_000);
    });

    it('real Firecracker: a Firecracker killed mid-restore is cleaned up, and the next one is served', async () => {
      const before = (h.stderr.match(/VM pid \d+: serving/g) ?? []).length;
      const dying = restore(viaServe(), { HANDLER_EXIT_TIMEOUT: '0', ROUNDS: '3' });
      let pid = 0;
      for (let i = 0; i < 400 && !pid; i++) {
        const all = [...h.stderr.matchAll(/VM pid (\d+): serving/g)];
        if (all.length > before) pid = Number(all[all.length - 1][1]);
        else await new Promise((r) => setTimeout(r, 25));
      }
      expect(pid, h.stderr).to.be.above(0);
      await new Promise((r) => setTimeout(r, 150)); // in the middle of its restore
      process.kill(pid, 'SIGKILL');
      const r = await dying;
      expect(r.pass).to.equal(false);
      await h.waitForStderr(new RegExp(`VM pid ${pid} ended`), 20_000);
      expectPass(await restore(viaServe(), { HANDLER_EXIT_TIMEOUT: '0' }));
      expect(h.child.exitCode).to.equal(null);
    });
  });
  describe('a snapshot in a bucket (Swift), served through a disk cache', () => {
    let os: ObjectStore;
    let store = '';
    before(async function () {
      this.timeout(900_000); // a clean machine installs Swift first
      os = await ensureObjectStore();
      store = `s3://${await os.newBucket('fc')}/fc`;
      const put = spawnSync(SNAPFAULT, ['store', 'put', SNAPSHOT_MEM, 'snap', '--store', store, '--s3-endpoint', os.endpoint], { encoding: 'utf8', env: { ...process.env, ...os.env } });
      expect(put.status, put.stderr).to.equal(0);
    });
    after(() => os?.release());

    it('real Firecracker: restores from the bucket with a cold disk cache, then a warm one; every byte checked', async () => {
      const cache = tmp.file('fc-cache');
      const handler = (trace: string): string[] =>
        sh(`exec ${q(SNAPFAULT)} --store ${q(store)} --s3-endpoint ${q(os.endpoint)} --cache-dir ${q(cache)} --record ${q(trace)} --log-format text "$1" snap`);
      const file = await restore([SNAPFAULT]);
      const coldTrace = tmp.file('fc-cold.trace');
      const cold = await restore(handler(coldTrace), os.env);
      expectPass(cold);
      expect(cold.output).to.match(/ended: Firecracker closed the connection; \d+ faults?\b/);
      const warmTrace = tmp.file('fc-warm.trace');
      const warm = await restore(handler(warmTrace), os.env);
      expectPass(warm);
      console.log(`    real Firecracker: load -> first verified checksum: raw file ${file.verifiedMs} ms, bucket with a cold cache ${cold.verifiedMs} ms, warm ${warm.verifiedMs} ms`);
      // Where the pages came from: cold, some faults waited for GETs; warm, none did, the chunks came off the disk.
      const c = summarize(readTrace(coldTrace));
      const w = summarize(readTrace(warmTrace));
      console.log(`    real Firecracker, pages by source: cold ${JSON.stringify(c.sources.faults)}, faults that waited for a GET ${c.fetchWaits?.faults} ` +
        `(median ${c.fetchWaits?.medianMs} ms, longest ${c.fetchWaits?.maxMs} ms); warm ${JSON.stringify(w.sources.faults)}`);
      expect(c.sources.faults.bucket, JSON.stringify(c.sources)).to.be.above(0);
      expect(c.fetchWaits?.faults).to.equal(c.sources.faults.bucket);
      expect(w.sources.faults.bucket ?? 0).to.equal(0);
      expect(w.sources.faults.disk, JSON.stringify(w.sources)).to.be.above(0);
      expect(w.fetchWaits).to.equal(null);
    });

    it('real Firecracker: cold disk cache with --prefetch replay: and all, the working set fetched ahead; every byte checked; on demand beside them', async () => {
      // The working set, recorded through the bucket (same snapshot, so the trace names it) over a warm cache.
      const trace = tmp.file('fc-bucket.trace');
      const warm = tmp.file('fc-cache-record');
      const via = (cache: string, extra: string): string[] =>
        sh(`exec ${q(SNAPFAULT)} --store ${q(store)} --s3-endpoint ${q(os.endpoint)} --cache-dir ${q(cache)} --log-format text ${extra} "$1" snap`);
      expectPass(await restore(via(warm, ''), os.env));
      expectPass(await restore(via(warm, `--record ${q(trace)}`), os.env));
      // The default chunks of a store in a bucket (512 KiB) and a folder store's 32 KiB: one GET each, their number is what a cold restore waits on.
      const small = `${store}-32k`;
      const put = spawnSync(SNAPFAULT, ['store', 'put', SNAPSHOT_MEM, 'snap', '--chunk-kib', '32', '--store', small, '--s3-endpoint', os.endpoint], { encoding: 'utf8', env: { ...process.env, ...os.env } });
      expect(put.status, put.stderr).to.equal(0);
      const stores = [['', store], [' 32k', small]] as const;
      const rows = new Map<string, number[]>([['file', []]]);
      const push = (k: string, ms: number): void => void rows.set(k, [...(rows.get(k) ?? []), ms]);
      // One round (npm run bench takes medians of several), each restore with a disk cache of its own, cold.
      for (let round = 0; round < 1; round++) {
        push('file', (await restore([SNAPFAULT])).verifiedMs);
        for (const [label, at] of stores) {
          const viaAt = (cache: string, extra: string): string[] =>
            sh(`exec ${q(SNAPFAULT)} --store ${q(at)} --s3-endpoint ${q(os.endpoint)} --cache-dir ${q(cache)} --log-format text ${extra} "$1" snap`);
          for (const [kind, extra] of [['demand', ''], ['replay', `--prefetch replay:${q(trace)}`], ['all', '--prefetch all']] as const) {
            const r = await restore(viaAt(tmp.file(`fc-cache-${kind}${label.trim()}-${round}`), extra), os.env);
            expectPass(r);
            expect(r.output).not.to.match(/prefetch stopped/);
            push(`${kind}${label}`, r.verifiedMs);
          }
        }
      }
      const timeOf = (k: string): number => rows.get(k)?.[0] ?? NaN;
      const f = timeOf('file');
      const cell = (k: string): string => `${k} ${timeOf(k)} ms (${(timeOf(k) / f).toFixed(2)}x)`;
      for (const [label] of stores) {
        console.log(`    real Firecracker, cold disk cache, ${label ? '32' : '512'} KiB chunks, load -> first verified checksum (one round): raw file ${f} ms; ` +
          `from the bucket: ${['demand', 'replay', 'all'].map((k) => cell(k + label)).join(', ')}`);
        expect(timeOf(`replay${label}`), 'replay fetches ahead: sooner than one GET a fault').to.be.below(timeOf(`demand${label}`));
      }
    });
  });

  describe('a Diff snapshot in a store, layered on its Full one', () => {
    // One boot: a Full snapshot, then the guest runs `check` and `alloc 4`, then a Diff snapshot.
    const snaps = new KitDiffSnapshots(16, 128, 4);
    const store = (): string => tmp.file('store');
    const cli = (args: string[]): string => {
      const r = spawnSync(SNAPFAULT, args, { encoding: 'utf8' });
      expect(r.status, `snapfault ${args.join(' ')}: ${r.stderr}`).to.equal(0);
      return r.stdout;
    };
    interface PutJson { pages: number; zeroPages: number; parentPages: number; reusedPages: number; newPages: number; bytesAdded: number }
    let base: PutJson;
    let diff: PutJson;
    let dirtyPages = 0;
    let chunkBytesBefore = 0;
    let chunkBytesAfter = 0;
    const chunkBytes = (): number => (JSON.parse(cli(['store', 'ls', '--store', store(), '--json'])) as { usage: { chunkBytes: number } }).usage.chunkBytes;

    before(async function () {
      console.log('    real Firecracker: a Full and a Diff snapshot of one boot with track_dirty_pages (made once per build, ~45 s)');
      await snaps.ensure();
      const fd = openSync(snaps.diff.mem, 'r');
      try {
        dirtyPages = dataExtents(fd, fstatSync(fd).size).reduce((n, [a, b]) => n + Math.ceil(b / 4096) - Math.floor(a / 4096), 0);
      } finally {
        closeSync(fd);
      }
      base = JSON.parse(cli(['store', 'put', snaps.base.mem, 'full', '--store', store(), '--json'])) as PutJson;
      chunkBytesBefore = chunkBytes();
      diff = JSON.parse(cli(['store', 'put', snaps.diff.mem, 'diff', '--parent', 'full', '--store', store(), '--json'])) as PutJson;
      chunkBytesAfter = chunkBytes();
      console.log(`    real Firecracker: Diff memory file: ${dirtyPages} dirty pages of ${diff.pages}; its layer: ${diff.newPages} new, ` +
        `${diff.reusedPages} already stored, ${diff.zeroPages} zero, ${diff.bytesAdded} bytes added (the Full one: ${base.bytesAdded})`);
    });

    it('real Firecracker: the Diff layer holds the dirty pages only, and stores only those the store lacks', () => {
      // A sparse file, not a copy of memory: the guest's check rewrote its buffer's odd pages, alloc 4 added 1024.
      expect(dirtyPages).to.be.above(2048 + 1024).and.below(diff.pages / 4);
      expect(diff.parentPages).to.equal(diff.pages - dirtyPages);
      expect(diff.newPages + diff.reusedPages + diff.zeroPages).to.equal(dirtyPages);
      // The rewritten buffer pages hold what they held: found in the Full snapshot's chunks.
      expect(diff.reusedPages).to.be.at.least(2048);
      expect(diff.bytesAdded).to.equal(chunkBytesAfter - chunkBytesBefore);
      expect(diff.bytesAdded).to.be.at.most(diff.newPages * 4096);
      expect(diff.bytesAdded).to.be.below(base.bytesAdded / 4);
      expect(cli(['store', 'inspect', 'diff', '--store', store()])).to.match(/layers: +diff <- full/);
    });

    it('real Firecracker: store verify checks the Diff layer and its parent against the merged memory', () => {
      // The Diff snapshot's memory: the Full file with the Diff file's data laid over it.
      const merged = Buffer.from(readFileSync(snaps.base.mem));
      const fd = openSync(snaps.diff.mem, 'r');
      try {
        for (const [a, b] of dataExtents(fd, fstatSync(fd).size)) readSync(fd, merged, a, b - a, a);
      } finally {
        closeSync(fd);
      }
      const mergedPath = tmp.file('merged-mem');
      writeFileSync(mergedPath, merged);
      expect(cli(['store', 'verify', 'diff', '--store', store(), '--against', mergedPath])).to.match(/diff: ok: 2 layer\(s\), \d+ chunks .*all \d+ pages match/);
      // The merged memory really differs from the Full one: else the checks above would prove nothing.
      expect(merged.equals(readFileSync(snaps.base.mem))).to.equal(false);
    });

    for (const prefetch of [[], ['--prefetch', 'all']]) {
      it(`real Firecracker: restores the Diff snapshot's vmstate from the store without merging${prefetch.length ? ', --prefetch all' : ', on demand'}`, async () => {
        const r = await snaps.diff.restore(sh(`exec ${q(SNAPFAULT)} ${prefetch.join(' ')} --store ${q(store())} "$1" diff`));
        expectPass(r);
        // Its first check after the restore is its second: the round counter came from the Diff layer's pages.
        // The guest's console lines end in \r\n: [^\n], not ".".
        expect(r.output, r.output).to.match(/round 1: CHECK round=2 [^\n]*-> CHECK_OK/);
        expect(r.output).to.match(/ended: Firecracker closed the connection; \d+ faults?\b/);
        if (prefetch.length) expect(r.output).to.match(/prefetch: [1-9]\d* pages copied/);
      });
    }
  });
});
