// The snapshot store end to end: puts and restores through real userfaultfd
// with every byte checked, dedup across snapshots, layered (Diff) snapshots,
// rm and gc, gc beside concurrent puts and restores, puts killed midway, and
// damaged chunks and manifests.
import { expect } from 'chai';
import { readFileSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync, readdirSync, copyFileSync, statSync, utimesSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { SNAPFAULT } from '../helpers/paths.js';
import { TempDir, makeImage, prng } from '../helpers/images.js';
import { startSnapfault, runSim, startSim, Proc } from '../helpers/processes.js';
import { FolderStore } from '../../src/store/folder-store.js';
import { readChain, flattenChain } from '../../src/store/chain.js';
import { PAGE_IS_ZERO } from '../../src/store/manifest.js';

const MiB = 1 << 20;
const PAGE = 4096;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync(SNAPFAULT, args, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface PutJson {
  newPages: number;
  reusedPages: number;
  zeroPages: number;
  parentPages: number;
  chunksAdded: number;
  chunksReused: number;
  identity: string;
}

function putJson(store: string, file: string, name: string, extra: string[] = []): PutJson {
  const r = cli(['store', 'put', file, name, '--store', store, '--json', ...extra]);
  expect(r.code, r.stderr).to.equal(0);
  return JSON.parse(r.stdout) as PutJson;
}

/** `image` with `fraction` of its pages (every k-th) overwritten with fresh random bytes. */
function changed(image: Buffer, fraction: number, seed: string): { img: Buffer; pages: number } {
  const img = Buffer.from(image);
  const step = Math.round(1 / fraction);
  let pages = 0;
  for (let p = 1; p < img.length / PAGE; p += step, pages++) prng(`${seed}:${p}`, PAGE).copy(img, p * PAGE);
  return { img, pages };
}

/** A sparse Diff memory file: only `pages` written (from `image`), holes elsewhere. */
function writeDiff(path: string, image: Buffer, pages: number[]): void {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, image.length);
  for (const p of pages) writeSync(fd, image, p * PAGE, PAGE, p * PAGE);
  closeSync(fd);
}

function chunkFiles(store: string): string[] {
  const out: string[] = [];
  for (const sub of readdirSync(join(store, 'chunks'))) for (const f of readdirSync(join(store, 'chunks', sub))) out.push(f);
  return out;
}

/** The chunks the store's snapshots use. */
function referenced(store: string): Set<string> {
  const s = FolderStore.open(store);
  const names = new Set<string>();
  for (const n of s.listSnapshots()) for (const c of flattenChain(readChain(s, n)).chunks) names.add(c.name.toString('hex'));
  return names;
}

describe('snapshot store', function () {
  this.timeout(180_000);
  const tmp = new TempDir();
  let n = 0;
  let handler: Proc | null = null;
  after(() => tmp.remove());
  afterEach(async () => {
    if (handler && handler.child.exitCode === null) {
      handler.kill('SIGKILL');
      await handler.exited;
    }
    handler = null;
  });

  /** Restores `name` from `store` through the drop-in form; the simulator checks every page against `img`. */
  async function restore(store: string, name: string, img: string, simArgs: string[] = [], handlerArgs: string[] = []): Promise<string> {
    const sock = tmp.file(`s${n++}.sock`);
    const h = await startSnapfault(['--store', store, ...handlerArgs, sock, name]);
    const sim = await runSim(['--socket', sock, '--mem', img, '--verify', ...simArgs]);
    const exit = await h.waitExit();
    expect(sim.code, `${sim.stderr}\n${h.stderr}`).to.equal(0);
    expect(sim.json?.mismatches).to.equal(0);
    expect(exit.code, h.stderr).to.equal(0);
    return h.stderr;
  }

  describe('one snapshot', () => {
    const store = tmp.file('one-store');
    let img: string;
    before(() => {
      img = tmp.file('one.img', makeImage(32 * MiB, { seed: 'store-one', zeroFraction: 0.3 }));
      putJson(store, img, 'one');
    });

    it('round-trips every byte: 2 vCPUs, 2 regions, balloon removes during the restore', async () => {
      const log = await restore(store, 'one', img, ['--pattern', 'random', '--threads', '2', '--regions', '24M,8M', '--balloon', '1M:1M,20M:64K', '--balloon-mode', 'concurrent']);
      expect(log).to.match(/serving one in store .*one-store/);
      expect(log).to.match(/chunks: [1-9]\d* decoded/);
    });

    it('with --prefetch all, and recorded then replayed', async () => {
      await restore(store, 'one', img, ['--pattern', 'seq'], ['--prefetch', 'all']);
      const trace = tmp.file('one.trace');
      await restore(store, 'one', img, ['--pattern', 'hot', '--touches', '3000'], ['--record', trace]);
      // The guest waits a moment after the handshake, as during Firecracker's load: faults come first (demand first), so
      // a guest that faulted from the first microsecond could leave the replay nothing to do before it ends.
      const log = await restore(store, 'one', img, ['--pattern', 'hot', '--touches', '3000', '--pause-ms', '300'], ['--prefetch', `replay:${trace}`]);
      expect(log).to.match(/prefetch: [1-9]\d* pages copied/);
      // The trace is keyed to the snapshot's identity: the same on any host that restores it.
      const identity = (JSON.parse(cli(['store', 'inspect', 'one', '--store', store, '--json']).stdout) as { identity: string }).identity;
      expect(cli(['trace', 'show', trace]).stdout).to.include(`key ${identity.slice(0, 32)}`);
      expect(log).not.to.match(/recorded from another snapshot/);
    });

    it('serve --store --mem NAME serves several VMs at once; SNAPFAULT_STORE is the default store', async () => {
      const sock = tmp.file(`s${n++}.sock`);
      handler = new Proc(SNAPFAULT, ['serve', '--socket', sock, '--mem', 'one', '--workers', '2'], { SNAPFAULT_STORE: store });
      await handler.waitForStderr(/listening on /);
      const runs = await Promise.all([0, 1, 2].map(() => runSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'random'])));
      for (const r of runs) expect(r.json?.mismatches, r.stderr).to.equal(0);
      await handler.waitForStderr(/(ended[^]*){3}/);
    });

    it('store verify checks every chunk (and with --against every page); inspect and ls describe it', () => {
      const v = cli(['store', 'verify', 'one', '--store', store, '--against', img]);
      expect(v.code, v.stderr).to.equal(0);
      expect(v.stdout).to.match(/^one: ok: 1 layer\(s\), \d+ chunks .* match their checksums and names; all 8192 pages match/);
      const i = JSON.parse(cli(['store', 'inspect', 'one', '--store', store, '--json']).stdout) as { pages: number; zeroPages: number; ownPages: number; layers: string[] };
      expect(i.pages).to.equal(8192);
      expect(i.zeroPages + i.ownPages).to.equal(8192);
      expect(i.layers).to.deep.equal(['one']);
      const ls = JSON.parse(cli(['store', 'ls', '--store', store, '--json']).stdout) as { snapshots: Array<{ name: string }> };
      expect(ls.snapshots.map((s) => s.name)).to.deep.equal(['one']);
    });
  });

  describe('dedup', () => {
    it('a snapshot with 2% of its pages changed adds only those; the same file again adds nothing', () => {
      const store = tmp.file('dedup-store');
      const base = makeImage(16 * MiB, { seed: 'dedup', zeroFraction: 0.2 });
      const first = putJson(store, tmp.file('d0.img', base), 'd0');
      const { img, pages } = changed(base, 0.02, 'd1');
      const second = putJson(store, tmp.file('d1.img', img), 'd1');
      expect(second.newPages).to.equal(pages);
      expect(second.chunksAdded).to.equal(Math.ceil(pages / 8)); // 32 KiB chunks: new pages gathered 8 to a chunk
      expect(second.newPages + second.reusedPages + second.zeroPages).to.equal(4096);
      expect(first.newPages).to.be.above(2000);
      const again = putJson(store, tmp.file('d1.img'), 'd1-again');
      expect(again.newPages).to.equal(0);
      expect(again.chunksAdded).to.equal(0);
      // Pages moved about and pages zeroed: still nothing new.
      const moved = Buffer.alloc(base.length);
      for (let p = 0; p < base.length / PAGE; p++) base.copy(moved, ((p * 7919) % (base.length / PAGE)) * PAGE, p * PAGE, (p + 1) * PAGE);
      moved.fill(0, 0, 64 * PAGE);
      const m = putJson(store, tmp.file('moved.img', moved), 'moved');
      expect(m.newPages).to.equal(0);
      for (const s of ['d0', 'd1', 'moved']) expect(cli(['store', 'verify', s, '--store', store, '--against', tmp.file(`${s === 'moved' ? 'moved' : s}.img`)]).code).to.equal(0);
    });
  });

  describe('layers', () => {
    const store = tmp.file('layer-store');
    let merged2: string;
    before(() => {
      const base = makeImage(32 * MiB, { seed: 'layer', zeroFraction: 0.3 });
      writeFileSync(tmp.file('base.img'), base);
      // Diff 1: 300 pages dirtied; one of them became zero (a zero page in a Diff is zero, not the parent's).
      const one = Buffer.from(base);
      const dirty1 = Array.from({ length: 300 }, (_, i) => (i * 26 + 5) % 8192);
      for (const p of dirty1) prng(`l1:${p}`, PAGE).copy(one, p * PAGE);
      one.fill(0, dirty1[7] * PAGE, (dirty1[7] + 1) * PAGE);
      writeDiff(tmp.file('diff1.img'), one, dirty1);
      // Diff 2 on diff 1: 200 pages, some of them diff 1's again.
      const two = Buffer.from(one);
      const dirty2 = Array.from({ length: 200 }, (_, i) => (i * 41 + 5) % 8192);
      for (const p of dirty2) prng(`l2:${p}`, PAGE).copy(two, p * PAGE);
      writeDiff(tmp.file('diff2.img'), two, dirty2);
      merged2 = tmp.file('merged2.img', two);
      putJson(store, tmp.file('base.img'), 'base');
      const d1 = putJson(store, tmp.file('diff1.img'), 'diff1', ['--parent', 'base']);
      expect(d1.parentPages).to.equal(8192 - 300);
      expect(d1.newPages + d1.zeroPages + d1.reusedPages).to.equal(300);
      const d2 = putJson(store, tmp.file('diff2.img'), 'diff2', ['--parent', 'diff1']);
      expect(d2.parentPages).to.equal(8192 - 200);
    });

    it('a three-layer snapshot is served directly, every byte checked, with removes', async () => {
      await restore(store, 'diff2', merged2, ['--pattern', 'random', '--threads', '2', '--balloon', '3M:1M', '--balloon-mode', 'concurrent']);
      expect(cli(['store', 'verify', 'diff2', '--store', store, '--against', merged2]).code).to.equal(0);
      const i = JSON.parse(cli(['store', 'inspect', 'diff2', '--store', store, '--json']).stdout) as { layers: string[]; parentPages: number };
      expect(i.layers).to.deep.equal(['diff2', 'diff1', 'base']);
    });

    it('a Diff with no hole at all is put, with a warning that it may have lost its holes', () => {
      const r = cli(['store', 'put', tmp.file('merged2.img'), 'dense-diff', '--parent', 'diff2', '--store', store]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.match(/^snapfault: warning: .*merged2\.img has no holes: every page is taken from it and none from its parent; if it is a Diff snapshot, was it copied without its holes \(cp --sparse=always keeps them\)\?\n$/);
      expect(cli(['store', 'rm', 'dense-diff', '--store', store]).code).to.equal(0);
    });

    it('flatten makes one layer of the same bytes; rm refuses a parent in use', async () => {
      const f = cli(['store', 'flatten', 'diff2', 'flat2', '--store', store]);
      expect(f.code, f.stderr).to.equal(0);
      expect(cli(['store', 'verify', 'flat2', '--store', store, '--against', merged2]).code).to.equal(0);
      await restore(store, 'flat2', merged2, ['--pattern', 'seq']);
      const rm = cli(['store', 'rm', 'diff1', '--store', store]);
      expect(rm.code).to.equal(2);
      expect(rm.stderr).to.match(/^snapfault: store .*: snapshot "diff1" is the parent of diff2: remove or flatten it first \(snapfault store flatten\)\n$/);
    });

    it('gc deletes exactly the chunks no snapshot uses once a chain is removed', () => {
      const before = chunkFiles(store).length;
      // flat2 (made by the test before) uses the chain's chunks too.
      for (const s of ['flat2', 'diff2', 'diff1']) if (FolderStore.open(store).hasSnapshot(s)) expect(cli(['store', 'rm', s, '--store', store]).code).to.equal(0);
      const g = cli(['store', 'gc', '--store', store, '--grace', '0', '--json']);
      expect(g.code, g.stderr).to.equal(0);
      const left = new Set(chunkFiles(store));
      const used = referenced(store);
      // Nothing unreferenced kept, nothing referenced lost; a failure says what gc saw and what could have spared the rest.
      const why = () => `gc: ${g.stdout.trim()}; ${[...left].filter((c) => !used.has(c)).length} unreferenced left, ${[...used].filter((c) => !left.has(c)).length} referenced gone; ` +
        ['leases', 'pending', 'removed', 'trash'].map((d) => `${d}: [${readdirSync(join(store, d)).join(', ')}]`).join('; ') +
        `; newest chunk mtime ${Math.max(...[...left].map((c) => statSync(FolderStore.open(store).chunkPath(c)).mtimeMs))} vs now ${Date.now()}`;
      expect(left, why()).to.deep.equal(used);
      expect(left.size).to.be.below(before);
      expect(cli(['store', 'verify', 'base', '--store', store, '--against', tmp.file('base.img')]).code).to.equal(0);
    });
  });

  describe('gc and chunk times', () => {
    it('a modification time a day or more ahead is no touch: such a chunk is collected, one touched now is spared', () => {
      const store = tmp.file('future-store');
      putJson(store, tmp.file('keep.img', makeImage(4 * MiB, { seed: 'future-keep' })), 'keep');
      putJson(store, tmp.file('gone.img', makeImage(4 * MiB, { seed: 'future-gone' })), 'gone');
      expect(cli(['store', 'rm', 'gone', '--store', store]).code).to.equal(0);
      const keep = referenced(store);
      const unused = chunkFiles(store).filter((c) => !keep.has(c));
      expect(unused.length).to.be.above(2);
      // What a snapfault with the futimens bug wrote (ext4's largest time), and a touch from a host whose clock runs an hour ahead.
      const s = FolderStore.open(store);
      for (const c of unused.slice(1)) utimesSync(s.chunkPath(c), new Date(), new Date(15_032_385_535_000));
      utimesSync(s.chunkPath(unused[0]), new Date(), new Date(Date.now() + 3600_000));
      const g = cli(['store', 'gc', '--store', store, '--grace', '0', '--json']);
      expect(g.code, g.stderr).to.equal(0);
      expect(new Set(chunkFiles(store))).to.deep.equal(new Set([...keep, unused[0]]));
    });
  });

  describe('gc beside puts and restores', () => {
    it('concurrent puts and gcs lose nothing referenced; a restore of a snapshot removed meanwhile goes on', async () => {
      const store = tmp.file('busy-store');
      const base = makeImage(24 * MiB, { seed: 'busy', zeroFraction: 0.2 });
      writeFileSync(tmp.file('busy0.img'), base);
      putJson(store, tmp.file('busy0.img'), 'busy0');
      const variants = [1, 2, 3, 4, 5].map((k) => tmp.file(`busy${k}.img`, changed(base, 0.02 * k, `busy${k}`).img));
      // A restore leases busy0, which is removed and gc'd under it.
      const sock = tmp.file(`s${n++}.sock`);
      handler = await startSnapfault(['--store', store, sock, 'busy0']);
      const sim = startSim(['--socket', sock, '--mem', tmp.file('busy0.img'), '--verify', '--pattern', 'random', '--pause-ms', '1500']);
      await handler.waitForStderr(/serving 1 region/);
      expect(cli(['store', 'rm', 'busy0', '--store', store]).code).to.equal(0);
      const puts = variants.map((file, k) => new Promise<number | null>((resolve) => {
        const p = spawn(SNAPFAULT, ['store', 'put', file, `busy${k + 1}`, '--store', store, '--workers', '1'], { stdio: 'ignore' });
        p.on('close', (code) => resolve(code));
      }));
      let gcs = 0;
      let putsDone = false;
      const gcLoop = (async (): Promise<void> => {
        while (!putsDone) {
          const g = await new Promise<number | null>((resolve) => spawn(SNAPFAULT, ['store', 'gc', '--store', store, '--grace', '0'], { stdio: 'ignore' }).on('close', resolve));
          expect(g).to.equal(0);
          gcs++;
        }
      })();
      const codes = await Promise.all(puts);
      putsDone = true;
      await gcLoop;
      expect(codes).to.deep.equal([0, 0, 0, 0, 0]);
      expect(gcs).to.be.above(0);
      const r = await sim.result;
      expect(r.code, `${r.stderr}\n${handler.stderr}`).to.equal(0);
      expect(r.json?.mismatches).to.equal(0);
      await handler.waitExit();
      variants.forEach((file, k) => {
        const v = cli(['store', 'verify', `busy${k + 1}`, '--store', store, '--against', file]);
        expect(v.code, v.stdout + v.stderr).to.equal(0);
      });
      // Nothing unreferenced kept past a gc once nobody is at work.
      expect(cli(['store', 'gc', '--store', store, '--grace', '0']).code).to.equal(0);
      expect(new Set(chunkFiles(store))).to.deep.equal(referenced(store));
      expect(readdirSync(join(store, 'removed'))).to.deep.equal([]);
    });

    it('a put killed at random moments leaves no snapshot that refers to a missing chunk', async () => {
      const store = tmp.file('kill-store');
      const base = makeImage(32 * MiB, { seed: 'kill', zeroFraction: 0.1 });
      putJson(store, tmp.file('kill0.img', base), 'kill0');
      let committed = 0;
      for (let k = 1; k <= 8; k++) {
        const file = tmp.file(`kill${k}.img`, changed(base, 0.3, `kill${k}`).img);
        const p = spawn(SNAPFAULT, ['store', 'put', file, `kill${k}`, '--store', store], { stdio: 'ignore' });
        const closed = new Promise((r) => p.on('close', r));
        await new Promise((r) => setTimeout(r, 50 + ((k * 97) % 700)));
        p.kill('SIGKILL');
        await closed;
        // Every snapshot's chunks are there (verify reads them all once, below).
        const s = FolderStore.open(store);
        const there = new Set(chunkFiles(store));
        for (const name of s.listSnapshots()) for (const c of flattenChain(readChain(s, name)).chunks) expect(there.has(c.name.toString('hex')), name).to.equal(true);
        if (s.hasSnapshot(`kill${k}`)) committed++;
      }
      for (const name of FolderStore.open(store).listSnapshots()) {
        const v = cli(['store', 'verify', name, '--store', store]);
        expect(v.code, `${name}: ${v.stderr}`).to.equal(0);
      }
      // What the killed puts left (chunks without a manifest, temporary files) goes at the next gc.
      expect(cli(['store', 'gc', '--store', store, '--grace', '0']).code).to.equal(0);
      expect(new Set(chunkFiles(store))).to.deep.equal(referenced(store));
      expect(readdirSync(join(store, 'pending'))).to.deep.equal([]);
      expect(committed).to.be.below(8); // the kills did land mid-put
    });
  });

  describe('a full disk', () => {
    const mnt = tmp.file('small-fs');
    before(() => {
      spawnSync('mkdir', ['-p', mnt]);
      const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`cannot mount a small tmpfs (needs root): ${r.stderr}`);
    });
    after(() => {
      spawnSync('umount', [mnt]);
    });

    it('a put that runs out of space fails in one line and leaves the store as it was', () => {
      const store = join(mnt, 'store');
      const small = tmp.file('small.img', makeImage(2 * MiB, { seed: 'small', zeroFraction: 0.2 }));
      putJson(store, small, 'small');
      const big = tmp.file('big-random.img', prng('big-random', 16 * MiB));
      const r = cli(['store', 'put', big, 'big', '--store', store]);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.match(/^snapfault: store .*: chunk [0-9a-f]{64} cannot be written \(ENOSPC\): the disk is full\n$/);
      expect(FolderStore.open(store).listSnapshots()).to.deep.equal(['small']);
      expect(cli(['store', 'verify', 'small', '--store', store, '--against', small]).code).to.equal(0);
      // gc gives the space back: only what 'small' uses is left.
      expect(cli(['store', 'gc', '--store', store, '--grace', '0']).code).to.equal(0);
      expect(new Set(chunkFiles(store))).to.deep.equal(referenced(store));
      putJson(store, small, 'small-again');
    });
  });

  describe('damage and bad input', () => {
    const store = tmp.file('bad-store');
    let img: string;
    let lastChunk: string;
    before(() => {
      img = tmp.file('bad.img', makeImage(16 * MiB, { seed: 'bad', zeroFraction: 0.2 }));
      putJson(store, img, 'bad');
      const view = flattenChain(readChain(FolderStore.open(store), 'bad'));
      let last = view.pages - 1;
      while (view.index[last] === PAGE_IS_ZERO) last--;
      lastChunk = view.chunks[Math.floor(view.index[last] / 8)].name.toString('hex');
    });

    it('a damaged chunk: verify names it (exit 1); a restore needing it kills that VM naming it, a bystander goes on', async () => {
      const path = join(store, 'chunks', lastChunk.slice(0, 2), lastChunk);
      const good = readFileSync(path);
      const bad = Buffer.from(good);
      bad[Math.floor(bad.length / 2)] ^= 0x5a;
      writeFileSync(path, bad);
      try {
        const v = cli(['store', 'verify', 'bad', '--store', store]);
        expect(v.code).to.equal(1);
        expect(v.stderr).to.match(new RegExp(`^snapfault: store .*: snapshot "bad": chunk ${lastChunk} (fails its checksum|does not decode)\\n$`));
        const sock = tmp.file(`s${n++}.sock`);
        handler = await startSnapfault(['serve', '--store', store, '--socket', sock, '--mem', 'bad']);
        const victim = startSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq']);
        const bystander = await runSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq', '--touches', '1000']);
        expect(bystander.code, bystander.stderr).to.equal(0);
        const r = await victim.result;
        expect(r.signal).to.equal('SIGKILL');
        const line = (await handler.waitForStderr(/.*of the snapshot in the store.*/))[0];
        expect(line).to.match(new RegExp(`chunk ${lastChunk} of the snapshot in the store (fails its checksum|does not decode); no byte of it was served \\(snapshot bad in store .*\\); killed Firecracker pid \\d+`));
      } finally {
        writeFileSync(path, good);
      }
    });

    it('a chunk that is not what its name says (a rewritten manifest) is never served', async () => {
      // Another name for the same bytes, written into a re-signed manifest: the checksum matches, the name does not.
      const fake = createHash('sha256').update('not the chunk').digest('hex');
      copyFileSync(join(store, 'chunks', lastChunk.slice(0, 2), lastChunk), join(store, 'chunks', fake.slice(0, 2), fake));
      const m = readFileSync(join(store, 'snapshots', 'bad'));
      const at = m.indexOf(Buffer.from(lastChunk, 'hex'));
      Buffer.from(fake, 'hex').copy(m, at);
      createHash('sha256').update(m.subarray(0, m.length - 32)).digest().copy(m, m.length - 32);
      writeFileSync(join(store, 'snapshots', 'renamed'), m);
      const v = cli(['store', 'verify', 'renamed', '--store', store]);
      expect(v.code).to.equal(1);
      expect(v.stderr).to.match(new RegExp(`chunk ${fake} is not what its name says`));
      const sock = tmp.file(`s${n++}.sock`);
      handler = await startSnapfault(['--store', store, sock, 'renamed']);
      const r = await runSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq']);
      expect(r.signal).to.equal('SIGKILL');
      expect((await handler.waitExit()).code).to.equal(1);
      expect(handler.stderr).to.match(new RegExp(`chunk ${fake} of the snapshot in the store is not what its name says`));
    });

    it('a damaged manifest, a missing snapshot, store or parent, a bad name: one line each, exit 2', () => {
      const m = readFileSync(join(store, 'snapshots', 'bad'));
      m[200] ^= 1;
      writeFileSync(join(store, 'snapshots', 'broken'), m);
      const cases: Array<[string[], RegExp]> = [
        [[tmp.file('x.sock'), 'broken'], /^snapfault: store .*: snapshot "broken" fails its checksum: the manifest is damaged\n$/],
        [[tmp.file('x.sock'), './some/mem'], /^snapfault: \.\/some\/mem looks like a path, but --store makes it a snapshot's name in the store .*: give a name \(snapfault store ls\), or leave out --store to serve a memory file\n$/],
        [[tmp.file('x.sock'), 'nothing'], /^snapfault: store .*: has no snapshot "nothing": `snapfault store ls --store .*` lists them\n$/],
        [['store', 'put', img, 'child', '--parent', 'nothing'], /^snapfault: store .*: has no snapshot "nothing"/],
        [['store', 'put', img, 'bad'], /^snapfault: store .*: already has a snapshot "bad": choose another name, or remove it first \(snapfault store rm\)\n$/],
        [['store', 'put', img, '../escape'], /^snapfault: "..\/escape" is not a snapshot name/],
        [['store', 'put', tmp.file('missing.img'), 'm'], /^snapfault: snapshot .*missing\.img: no such file/],
      ];
      for (const [args, re] of cases) {
        const r = cli(args[0] === 'store' ? [...args, '--store', store] : ['--store', store, ...args]);
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(2);
        expect(r.stderr, args.join(' ')).to.match(re);
      }
      expect(cli(['store', 'lss', '--store', store]).stderr).to.equal("snapfault: unknown store command 'lss': did you mean ls?\n");
      const none = cli(['store', 'ls', '--store', tmp.file('no-such-store')]);
      expect(none.code).to.equal(2);
      expect(none.stderr).to.match(/^snapfault: store .*no-such-store: no such folder: give the folder of a store/);
      const unset = cli(['store', 'ls'], { SNAPFAULT_STORE: '' });
      expect(unset.stderr).to.equal('snapfault: no store given: pass --store DIR or set SNAPFAULT_STORE\n');
      expect(statSync(join(store, 'snapshots', 'bad')).size).to.be.above(0); // never written over
    });
  });
});
