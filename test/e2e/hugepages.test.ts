// 2 MiB hugetlbfs guest memory: reserves huge pages for the test (root) and
// puts the old reservation back afterwards.
import { expect } from 'chai';
import { readFileSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { SNAPFAULT } from '../helpers/paths.js';
import { TempDir, makeImage } from '../helpers/images.js';
import { startSnapfault, runSim } from '../helpers/processes.js';
import { pack } from '../../src/compressed/pack.js';

const MiB = 1 << 20;
const NR = '/proc/sys/vm/nr_hugepages';
const FREE = '/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages';

describe('2 MiB hugetlbfs guest memory', function () {
  this.timeout(120_000);
  const tmp = new TempDir();
  let old = 0;
  let mem: string;

  before(() => {
    old = Number(readFileSync(NR, 'utf8'));
    // 32 MiB of guest memory, plus room for the kernel to round.
    writeFileSync(NR, String(old + 24));
    const free = Number(readFileSync(FREE, 'utf8'));
    if (free < 16) throw new Error(`could reserve only ${free} free 2 MiB pages (need 16): memory too fragmented`);
    mem = tmp.file('huge.img', makeImage(32 * MiB, { seed: 'huge', pageSize: 2 * MiB, zeroFraction: 0.25 }));
  });
  after(() => {
    writeFileSync(NR, String(old));
    tmp.remove();
  });

  for (const shape of ['kib', 'page_size']) {
    it(`serves 2 MiB pages announced as ${shape}, two vCPUs, every byte checked`, async () => {
      const sock = tmp.file(`h-${shape}.sock`);
      // Zero ranges off: every huge page, zero ones included, goes through the fault path here.
      const h = await startSnapfault(['--zero-ranges', 'off', sock, mem]);
      const sim = await runSim(['--socket', sock, '--mem', mem, '--page-size', '2097152', '--shape', shape, '--verify', '--pattern', 'random', '--threads', '2']);
      expect(sim.code, sim.stderr + h.stderr).to.equal(0);
      expect(sim.json?.touches).to.equal(16);
      expect(sim.json?.mismatches).to.equal(0);
      expect((await h.waitExit()).code).to.equal(0);
      expect(h.stderr).to.match(/16x2M pages/);
      expect(h.stderr).to.match(/16 faults \(16 copied/);
    });
  }

  it('serves 2 MiB pages from a compressed snapshot, assembled from its chunks', async () => {
    const packed = tmp.file('huge.sfz');
    await pack(mem, packed);
    const sock = tmp.file('h-packed.sock');
    const h = await startSnapfault(['--zero-ranges', 'off', sock, packed]);
    const sim = await runSim(['--socket', sock, '--mem', mem, '--page-size', '2097152', '--verify', '--pattern', 'random', '--threads', '2',
      '--balloon', '6M:2M', '--balloon-mode', 'after']);
    expect(sim.code, sim.stderr + h.stderr).to.equal(0);
    expect(sim.json?.mismatches).to.equal(0);
    expect((await h.waitExit()).code).to.equal(0);
    expect(h.stderr).to.match(/chunks: [1-9]\d* decoded/);
  });

  it('serves 2 MiB pages from a three-layer snapshot in a store, with removes', async () => {
    const store = tmp.file('huge-store');
    const base = readFileSync(mem);
    const put = (file: string, name: string, extra: string[] = []): void => {
      const r = spawnSync(SNAPFAULT, ['store', 'put', file, name, '--store', store, ...extra], { encoding: 'utf8' });
      expect(r.status, r.stderr).to.equal(0);
    };
    put(mem, 'h0');
    // Two sparse Diff layers: 4 KiB pages changed here and there, inside several huge pages.
    const merged = Buffer.from(base);
    for (const [layer, step] of [[1, 97], [2, 131]]) {
      const diff = tmp.file(`huge-diff${layer}.img`);
      const fd = openSync(diff, 'w');
      ftruncateSync(fd, base.length);
      for (let p = layer; p < base.length / 4096; p += step) {
        merged.fill(layer * 16 + (p & 15), p * 4096, (p + 1) * 4096);
        writeSync(fd, merged, p * 4096, 4096, p * 4096);
      }
      closeSync(fd);
      put(diff, `h${layer}`, ['--parent', `h${layer - 1}`]);
    }
    const want = tmp.file('huge-merged.img', merged);
    const sock = tmp.file('h-store.sock');
    const h = await startSnapfault(['--store', store, sock, 'h2']);
    const sim = await runSim(['--socket', sock, '--mem', want, '--page-size', '2097152', '--verify', '--pattern', 'random', '--threads', '2',
      '--balloon', '6M:2M', '--balloon-mode', 'after']);
    expect(sim.code, sim.stderr + h.stderr).to.equal(0);
    expect(sim.json?.mismatches).to.equal(0);
    expect((await h.waitExit()).code).to.equal(0);
  });

  it('ballooned 2 MiB pages come back as zeros (hugetlbfs has no ZEROPAGE)', async () => {
    const sock = tmp.file('h-balloon.sock');
    const h = await startSnapfault(['--zero-ranges', 'off', sock, mem]);
    const sim = await runSim(['--socket', sock, '--mem', mem, '--page-size', '2097152', '--verify', '--pattern', 'seq',
      '--balloon', '4M:4M,20M:2M', '--balloon-mode', 'after']);
    expect(sim.code, sim.stderr + h.stderr).to.equal(0);
    expect(sim.json?.mismatches).to.equal(0);
    expect((await h.waitExit()).code).to.equal(0);
    expect(h.stderr).to.match(/3 removed\)/);
  });

  it('zero ranges: runs of whole zero 2 MiB pages leave the uffd (raw and compressed); the guest reads zeros there, ballooned or not', async () => {
    // 8 huge pages of data, 4 zero, 4 of data: 8 MiB of zeros, one range of four whole huge pages.
    const layout = Buffer.concat([makeImage(16 * MiB, { seed: 'zr-a', zeroFraction: 0 }), Buffer.alloc(8 * MiB), makeImage(8 * MiB, { seed: 'zr-b', zeroFraction: 0 })]);
    const zr = tmp.file('huge-zero.img', layout);
    const packed = tmp.file('huge-zero.sfz');
    await pack(zr, packed);
    for (const file of [zr, packed]) {
      const sock = tmp.file(`h-zr-${file === zr ? 'raw' : 'packed'}.sock`);
      const h = await startSnapfault(['--log-format', 'text', sock, file]);
      const sim = await runSim(['--socket', sock, '--mem', zr, '--page-size', '2097152', '--verify', '--pattern', 'seq', '--write', '--pause-ms', '300',
        '--balloon', '18M:4M', '--balloon-mode', 'after']);
      expect(sim.code, sim.stderr + h.stderr).to.equal(0);
      expect(sim.json?.mismatches).to.equal(0);
      expect(sim.json?.zero_checked).to.equal(2);
      expect((await h.waitExit()).code).to.equal(0);
      expect(h.stderr).to.match(/1 all-zero range \(8\.0 MiB\) left to the kernel/);
      // The 12 huge pages of data fault; the 4 zero ones never do, and the balloon over two of them sends no REMOVE.
      expect(h.stderr).to.match(/12 faults \(/);
      expect(h.stderr).to.match(/\b0 removes\b/);
    }
  });

  for (const kind of ['raw', 'compressed']) {
    it(`prefetch all installs 2 MiB pages of a ${kind} snapshot ahead of the guest; ballooned ones stay zero`, async () => {
      let file = mem;
      if (kind === 'compressed') {
        file = tmp.file('huge-prefetch.sfz');
        await pack(mem, file);
      }
      const sock = tmp.file(`h-prefetch-${kind}.sock`);
      const h = await startSnapfault(['--zero-ranges', 'off', '--prefetch', 'all', sock, file]);
      const sim = await runSim(['--socket', sock, '--mem', mem, '--page-size', '2097152', '--verify', '--pattern', 'random', '--threads', '2',
        '--balloon', '8M:4M', '--balloon-mode', 'after']);
      expect(sim.code, sim.stderr + h.stderr).to.equal(0);
      expect(sim.json?.mismatches).to.equal(0);
      expect((await h.waitExit()).code).to.equal(0);
      const m = /(\d+) faults? .*prefetch: (\d+) pages copied/.exec(h.stderr);
      expect(m, h.stderr).to.not.equal(null);
      // Every huge page is in, one way or the other (512 snapshot pages each).
      expect(Number(m![1]) * 512 + Number(m![2])).to.be.at.least(16 * 512);
    });
  }
});
