// Compressed snapshots end to end: pack/unpack round trips, the inspect and
// verify tools, damaged files refused, and restores served from them through
// real userfaultfd with every byte checked.
import { expect } from 'chai';
import { readFileSync, writeFileSync, truncateSync, statSync, openSync, closeSync, readSync, writeSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { SNAPFAULT } from '../helpers/paths.js';
import { TempDir, makeImage, prng } from '../helpers/images.js';
import { startSnapfault, runSim, startSim, type Proc } from '../helpers/processes.js';
import { pack } from '../../src/compressed/pack.js';
import { inspect, unpack, verify } from '../../src/compressed/tools.js';
import { SnapshotError } from '../../src/errors.js';
import { DEFAULT_CHUNK_BYTES } from '../../src/compressed/format.js';

const MiB = 1 << 20;
const PAGE = 4096;

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(SNAPFAULT, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Overwrites one byte of a file. */
function poke(path: string, at: number, value?: number): void {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] = value ?? b[0] ^ 0x5a;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

describe('compressed snapshots', function () {
  this.timeout(120_000);
  const tmp = new TempDir();
  let n = 0;
  after(() => tmp.remove());

  describe('pack and unpack', () => {
    const kinds: Array<[string, () => Buffer]> = [
      ['all zero', () => Buffer.alloc(2 * MiB)],
      ['random (incompressible)', () => prng('rand', 2 * MiB)],
      ['mixed with duplicates', () => makeImage(8 * MiB, { seed: 'mix' })],
      ['few zeros', () => makeImage(4 * MiB, { seed: 'few', zeroFraction: 0.05 })],
      ['an odd number of pages', () => makeImage(13 * PAGE, { seed: 'odd' })],
      ['a single page', () => makeImage(PAGE, { seed: 'one', zeroFraction: 0 })],
    ];
    for (const [name, make] of kinds) {
      for (const chunkKiB of [4, 64, 1024]) {
        it(`round-trips ${name} with ${chunkKiB} KiB chunks, byte for byte`, async () => {
          const original = make();
          const src = tmp.file(`in${n}.img`, original);
          const out = tmp.file(`out${n}.sfz`);
          const back = tmp.file(`back${n++}.img`);
          const s = await pack(src, out, { chunkBytes: chunkKiB * 1024 });
          expect(s.zeroPages + s.duplicatePages + s.storedPages).to.equal(original.length / PAGE);
          expect(statSync(out).size).to.equal(s.fileSize);
          unpack(out, back);
          expect(readFileSync(back).equals(original)).to.equal(true);
          expect(verify(out, src).pagesCompared).to.equal(original.length / PAGE);
          const i = inspect(out);
          expect(i.storedPages).to.equal(s.storedPages);
          expect(i.chunks).to.equal(Math.ceil(s.storedPages / (chunkKiB / 4)));
        });
      }
    }

    it('property: 40 random images of random page kinds round-trip exactly', async () => {
      for (let t = 0; t < 40; t++) {
        const seed = prng(`prop${t}`, 64);
        const pages = 1 + (seed[0] % 48);
        const img = Buffer.alloc(pages * PAGE);
        for (let p = 0; p < pages; p++) {
          const kind = seed[(p % 60) + 1] % 5;
          const page = img.subarray(p * PAGE, (p + 1) * PAGE);
          if (kind === 1) prng(`p${t}.${p}`, PAGE).copy(page);
          else if (kind === 2 && p > 0) img.copy(page, 0, (seed[2] % p) * PAGE, ((seed[2] % p) + 1) * PAGE);
          else if (kind === 3) page.fill(seed[3] | 1);
          else if (kind === 4) prng(`q${t}.${p}`, 64).copy(page, seed[4] % (PAGE - 64));
        }
        const src = tmp.file(`prop${t}.img`, img);
        const out = tmp.file(`prop${t}.sfz`);
        await pack(src, out, { chunkBytes: PAGE * (1 + (seed[5] % 8)), workers: 1 + (t % 2) });
        const back = tmp.file(`prop${t}.back`);
        unpack(out, back);
        expect(readFileSync(back).equals(img), `case ${t}`).to.equal(true);
      }
    });

    it('is smaller than whole-file lz4 on a realistic image', async () => {
      const src = tmp.file('real.img', makeImage(16 * MiB, { seed: 'real' }));
      const out = tmp.file('real.sfz');
      const s = await pack(src, out);
      const lz4 = spawnSync('lz4', ['-q', '-c', src], { maxBuffer: 64 * MiB });
      expect(lz4.status).to.equal(0);
      expect(s.fileSize).to.be.below(lz4.stdout.length);
    });
  });

  describe('command line tools', () => {
    let img: string;
    let packed: string;
    before(() => {
      img = tmp.file('cli.img', makeImage(4 * MiB, { seed: 'cli' }));
      packed = tmp.file('cli.sfz');
    });

    it('pack, inspect, verify, unpack', () => {
      const p = cli(['pack', img, '-o', packed]);
      expect(p.code, p.stderr).to.equal(0);
      expect(p.stdout).to.match(/cli\.sfz: 4\.0 MiB -> [\d.]+ MiB \([\d.]+:1\) .*zero, \d+ duplicate, \d+ stored pages in \d+ chunks/);
      expect(p.stderr).to.equal(''); // no progress bar when stderr is not a terminal
      const i = cli(['inspect', packed]);
      expect(i.code).to.equal(0);
      expect(i.stdout).to.match(/version 1, codec lz4-block/);
      expect(i.stdout).to.match(/pages: +1024 of 4096 bytes: \d+ zero/);
      const j = JSON.parse(cli(['inspect', '--json', packed]).stdout) as { pages: number; chunkBytes: number };
      expect(j.pages).to.equal(1024);
      expect(j.chunkBytes).to.equal(DEFAULT_CHUNK_BYTES);
      const v = cli(['verify', packed, '--against', img]);
      expect(v.code).to.equal(0);
      expect(v.stdout).to.match(/chunks OK, 1024 pages identical/);
      const back = tmp.file('cli.back');
      expect(cli(['unpack', packed, '-o', back]).code).to.equal(0);
      expect(readFileSync(back).equals(readFileSync(img))).to.equal(true);
    });

    it('clear one-line errors', () => {
      const cases: Array<[string[], number, RegExp]> = [
        [['pack', tmp.file('nope.img'), '-o', tmp.file('x.sfz')], 2, /no such file: check the memory file path/],
        [['pack', img], 2, /pack needs -o <file>/],
        [['pack', packed, '-o', tmp.file('y.sfz')], 2, /is already a compressed snapshot/],
        [['pack', img, '-o', tmp.file('z.sfz'), '--chunk-kib', '6'], 2, /--chunk-kib 6: expected a multiple of 4/],
        [['unpack', img, '-o', tmp.file('w.img')], 2, /is not a snapfault compressed snapshot \(it may be a raw memory file\)/],
        [['inspect'], 2, /inspect takes one <file>, got 0/],
      ];
      for (const [args, code, re] of cases) {
        const r = cli(args);
        expect(r.code, args.join(' ')).to.equal(code);
        expect(r.stderr).to.match(re);
        expect(r.stderr.trim().split('\n')).to.have.length(1);
      }
    });

    it('verify finds damage anywhere: data, index, header, truncation, a newer version', async () => {
      const damaged = (name: string, hurt: (p: string) => void): string => {
        const p = tmp.file(name, readFileSync(packed));
        hurt(p);
        return p;
      };
      const i = inspect(packed);
      const dataAt = 128 + i.pages * 4 + 100; // inside the first chunk's bytes
      const cases: Array<[string, RegExp]> = [
        [damaged('d1.sfz', (p) => poke(p, dataAt)), /chunk 0 (fails its checksum|does not decode)/],
        [damaged('d2.sfz', (p) => poke(p, 128 + 40)), /page index checksum mismatch: the file is damaged; pack it again/],
        [damaged('d3.sfz', (p) => poke(p, 20)), /header checksum mismatch|corrupt header/],
        [damaged('d4.sfz', (p) => truncateSync(p, statSync(p).size - 10)), /is truncated: \d+ bytes, its header says \d+/],
        [damaged('d5.sfz', (p) => poke(p, 8, 2)), /has format version 2, this snapfault reads version 1: upgrade snapfault/],
        [damaged('d6.sfz', (p) => poke(p, statSync(p).size - 3)), /chunk table checksum mismatch/],
      ];
      for (const [file, re] of cases) {
        const r = cli(['verify', file]);
        expect(r.code, `${file}: ${r.stderr}`).to.be.oneOf([1, 2]);
        expect(r.stderr).to.match(re);
        expect(r.stderr.trim().split('\n')).to.have.length(1);
        expect(() => verify(file)).to.throw(SnapshotError);
      }
      const differs = tmp.file('other.img', readFileSync(img));
      poke(differs, 5 * PAGE + 17, 0x42);
      const r = cli(['verify', packed, '--against', differs]);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/page 5 \(offset 20480\) differs/);
    });
  });

  describe('serving', () => {
    let img: string;
    let packed: string;
    let handler: Proc | null = null;
    before(async () => {
      img = tmp.file('serve.img', makeImage(32 * MiB, { seed: 'serve-c' }));
      packed = tmp.file('serve.sfz');
      await pack(img, packed);
    });
    afterEach(async () => {
      if (handler && handler.child.exitCode === null) {
        handler.kill('SIGKILL');
        await handler.exited;
      }
      handler = null;
    });

    async function restore(simArgs: string[], handlerArgs: string[] = [], file = packed): Promise<string> {
      const sock = tmp.file(`c${n++}.sock`);
      const h = await startSnapfault([...handlerArgs, sock, file]);
      const sim = await runSim(['--socket', sock, '--mem', img, '--verify', ...simArgs]);
      const exit = await h.waitExit();
      expect(sim.code, `${sim.stderr}\n${h.stderr}`).to.equal(0);
      expect(sim.json?.mismatches).to.equal(0);
      expect(exit.code).to.equal(0);
      return h.stderr;
    }

    for (const pattern of ['random', 'seq', 'hot']) {
      it(`serves every byte from the compressed file: ${pattern}, 2 vCPUs, 2 regions`, async () => {
        const log = await restore(['--pattern', pattern, '--threads', '2', '--regions', '24M,8M']);
        expect(log).to.match(/chunks: [1-9]\d* decoded/);
      });
    }

    it('balloon removes during the restore: removed pages read as zeros, fill-around never refills them', async () => {
      await restore(['--pattern', 'random', '--threads', '2', '--balloon', '1M:1M,20M:64K,31M:1M', '--balloon-mode', 'concurrent']);
      await restore(['--pattern', 'random', '--balloon', '2M:2M', '--balloon-mode', 'before']);
      await restore(['--pattern', 'seq', '--balloon', '5M:3M', '--balloon-mode', 'after']);
    });

    it('with --fill-around off, pages are installed one fault at a time', async () => {
      const log = await restore(['--pattern', 'random'], ['--fill-around', 'off']);
      expect(log).to.match(/ 0 pages filled around/);
    });

    it('several VMs restoring at once share one decoded-chunk cache', async () => {
      const sock = tmp.file(`c${n++}.sock`);
      handler = await startSnapfault(['serve', '--socket', sock, '--mem', packed, '--workers', '2']);
      const runs = await Promise.all([0, 1, 2].map(() => runSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq'])));
      for (const r of runs) expect(r.json?.mismatches, r.stderr).to.equal(0);
      const log = (await handler.waitForStderr(/(ended[^]*){3}/))[0];
      const hits = [...log.matchAll(/(\d+) from cache/g)].reduce((s, m) => s + Number(m[1]), 0);
      expect(hits).to.be.above(0);
    });

    it('a damaged chunk is never served: that VM is killed naming file and chunk, the others go on', async () => {
      const bad = tmp.file('bad.sfz', readFileSync(packed));
      const i = inspect(bad);
      // Damage the last chunk: the simulator that stays away from the end of memory never needs it.
      const size = statSync(bad).size;
      const tableAt = size - i.chunks * 16;
      const lastChunkEnd = tableAt;
      poke(bad, lastChunkEnd - 50);
      const sock = tmp.file(`c${n++}.sock`);
      handler = await startSnapfault(['serve', '--socket', sock, '--mem', bad]);
      const victim = startSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq']);
      const bystander = await runSim(['--socket', sock, '--mem', img, '--verify', '--pattern', 'seq', '--touches', '2000']);
      expect(bystander.code, bystander.stderr).to.equal(0);
      const v = await victim.result;
      expect(v.signal).to.equal('SIGKILL');
      expect(v.json).to.equal(null);
      const line = (await handler.waitForStderr(/.*chunk \d+ of the compressed snapshot .*/))[0];
      expect(line).to.match(new RegExp(`chunk ${i.chunks - 1} of the compressed snapshot (fails its checksum|does not decode); no byte of it was served`));
      expect(line).to.match(/killed Firecracker pid \d+/);
    });

    it('a truncated or newer-version file is refused at start with one line', () => {
      const cut = tmp.file('cut.sfz', readFileSync(packed).subarray(0, 100_000));
      const r = cli([tmp.file(`c${n++}.sock`), cut]);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.match(/^snapfault: snapshot .*cut\.sfz: is truncated: 100000 bytes, its header says \d+: was it copied completely\?\n$/);
    });

    it('keeps its memory bounded by the cache, not by the snapshot size', async () => {
      const bigImg = tmp.file('big.img', makeImage(256 * MiB, { seed: 'big', zeroFraction: 0.2 }));
      const bigPacked = tmp.file('big.sfz');
      await pack(bigImg, bigPacked);
      const sock = tmp.file(`c${n++}.sock`);
      handler = await startSnapfault(['serve', '--socket', sock, '--mem', bigPacked, '--cache-mib', '8']);
      const rssOf = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;
      const before = rssOf(handler.pid);
      const r = await runSim(['--socket', sock, '--mem', bigImg, '--pattern', 'random']);
      expect(r.code, r.stderr).to.equal(0);
      await handler.waitForStderr(/ended/);
      const grown = rssOf(handler.pid) - before;
      // A raw file mapping would have added up to 256 MiB; here: the cache, one index, and the guest-side nothing.
      expect(grown).to.be.below(48 * MiB);
      writeFileSync(tmp.file('rss.txt'), String(grown));
    });
  });
});
