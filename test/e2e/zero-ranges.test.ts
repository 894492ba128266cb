// Zero ranges through real userfaultfd: guest memory that is zero in the
// snapshot (runs of 2 MiB and more) is taken out of the uffd after the
// handshake, so the guest's touches there never reach the handler, and a
// balloon there sends no REMOVE (the kernel's zeros are the right answer).
import { expect } from 'chai';
import { openSync, closeSync, ftruncateSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { TempDir } from '../helpers/images.js';
import { startSnapfault, runSim, Proc, type SimResult } from '../helpers/processes.js';
import { SNAPFAULT_FAULTY } from '../helpers/paths.js';
import { pack } from '../../src/compressed/pack.js';

const MiB = 1 << 20;

/** A memory file: `layout` is [MiB, 'data' | 'zero'] pieces, in order. */
function image(path: string, layout: Array<[number, 'data' | 'zero']>): string {
  const fd = openSync(path, 'w');
  let at = 0;
  for (const [mib, kind] of layout) {
    if (kind === 'data') writeSync(fd, randomBytes(mib * MiB), 0, mib * MiB, at);
    else writeSync(fd, Buffer.alloc(mib * MiB), 0, mib * MiB, at); // written zeros: found by the scan, not as a hole
    at += mib * MiB;
  }
  closeSync(fd);
  return path;
}

interface Run {
  sim: SimResult;
  log: string;
}

describe('zero ranges', function () {
  this.timeout(120_000);
  const tmp = new TempDir();
  let mem: string;
  let n = 0;

  before(() => {
    // 8 MiB of data, 48 MiB of zeros, 8 MiB of data.
    mem = image(tmp.file('mem.img'), [[8, 'data'], [48, 'zero'], [8, 'data']]);
  });
  after(() => tmp.remove());

  /** Serves `file` (raw, or compressed from `raw`) to a simulated guest that checks every byte against `raw`. */
  async function restore(handlerArgs: string[], simArgs: string[], file = mem, raw = file): Promise<Run> {
    const sock = tmp.file(`z${n++}.sock`);
    const h = await startSnapfault(['--log-format', 'text', ...handlerArgs, sock, file]);
    // The guest waits a little: the zero-page scan of a raw file runs in the background.
    const sim = await runSim(['--socket', sock, '--mem', raw, '--verify', '--pause-ms', '300', ...simArgs]);
    const exit = await h.waitExit();
    expect(sim.code, `${sim.stderr}\n${h.stderr}`).to.equal(0);
    expect(sim.json?.mismatches, h.stderr).to.equal(0);
    expect(exit.code, h.stderr).to.equal(0);
    return { sim, log: h.stderr };
  }

  const faults = (log: string): number => Number(/(\d+) faults? \(/.exec(log)?.[1] ?? NaN);

  it('an all-zero range leaves the uffd: the guest writes fresh memory there without a fault reaching the handler', async () => {
    const r = await restore([], ['--write']);
    expect(r.log).to.match(/1 all-zero range \(48\.0 MiB\) left to the kernel/);
    // Only the 16 MiB of data faulted.
    expect(faults(r.log)).to.equal(4096);
    const off = await restore(['--zero-ranges', 'off'], ['--write']);
    expect(faults(off.log)).to.equal(16384);
    expect(off.log).to.not.match(/all-zero range/);
  });

  it('zeropage mode maps the range ahead instead: no fault there either, and REMOVEs still come', async () => {
    const r = await restore(['--zero-ranges', 'zeropage'], ['--write', '--balloon', '16M:4M']);
    expect(r.log).to.match(/1 all-zero range \(48\.0 MiB\) mapped as zero pages after the handshake/);
    expect(r.log).to.match(/\b1 remove\b/);
  });

  it('a balloon over an unregistered range sends no REMOVE, and the guest reads zeros there; across the edge, the registered part is removed as ever', async () => {
    // All inside the zero range: nothing for the handler to hear.
    const inside = await restore([], ['--balloon', '16M:16M', '--balloon-mode', 'after']);
    expect(inside.sim.json?.zero_checked).to.equal(4096);
    expect(inside.log).to.match(/\b0 removes\b/);
    // 4-20 MiB: 4 MiB of data (registered, removed, re-faulted as zeros) and 12 MiB of the zero range.
    const across = await restore([], ['--balloon', '4M:16M', '--balloon-mode', 'after']);
    expect(across.sim.json?.zero_checked).to.equal(4096);
    expect(across.log).to.match(/\b1 remove\b/);
    expect(across.log).to.match(/1024 removed\)/);
  });

  it('zero runs shorter than 2 MiB stay with the handler', async () => {
    const short = image(tmp.file('short.img'), [[1, 'data'], [1, 'zero'], [1, 'data'], [1, 'zero'], [1, 'data']]);
    const r = await restore([], [], short);
    expect(r.log).to.not.match(/all-zero range/);
    expect(faults(r.log)).to.equal(1280);
  });

  it('a compressed snapshot knows its zero pages at once', async () => {
    const packed = tmp.file('mem.sfz');
    await pack(mem, packed);
    const r = await restore([], ['--write', '--balloon', '16M:16M', '--balloon-mode', 'after'], packed, mem);
    expect(r.log).to.match(/1 all-zero range \(48\.0 MiB\) left to the kernel/);
    expect(r.log).to.match(/\b0 removes\b/);
  });

  it('at most 256 ranges a VM, the longest first (each may split a VMA of Firecracker\'s)', async () => {
    // A sparse file: 300 holes of 2 MiB, then 4 of 4 MiB, between 4 KiB pages of data.
    const path = tmp.file('many.img');
    const fd = openSync(path, 'w');
    let at = 0;
    const data = randomBytes(4096);
    for (let i = 0; i < 304; i++) {
      at += i < 300 ? 2 * MiB : 4 * MiB;
      writeSync(fd, data, 0, 4096, at);
      at += 4096;
    }
    ftruncateSync(fd, Math.ceil(at / MiB) * MiB);
    closeSync(fd);
    const r = await restore([], ['--touches', '64', '--pattern', 'random'], path);
    // 256 ranges: the four 4 MiB runs and 252 of the 2 MiB ones.
    expect(r.log).to.match(/256 all-zero ranges \(520\.0 MiB\) left to the kernel/);
  });

  it('a fault whose page left the uffd before its zero page went in (ENOENT) is woken, and the VM goes on', async () => {
    // The test worker (test/helpers/faulty-fault-worker.ts) takes the first
    // zero-page fault's page out of the uffd just before resolving it, as an
    // unregister racing that fault would. ENOENT is not Firecracker's exit.
    const sock = tmp.file(`z${n++}.sock`);
    const h = new Proc(process.execPath, [SNAPFAULT_FAULTY, '--log-format', 'text', '--zero-ranges', 'off', sock, mem], { SF_TEST_FAULT_UNREGISTER: '1' });
    await h.waitForStderr(/listening on /);
    // The guest waits for the zero-page scan: its zero pages are then mapped with UFFDIO_ZEROPAGE.
    const sim = await runSim(['--socket', sock, '--mem', mem, '--verify', '--pause-ms', '300', '--pattern', 'random', '--threads', '2']);
    const exit = await h.waitExit();
    expect(sim.code, `${sim.stderr}\n${h.stderr}`).to.equal(0);
    expect(sim.json?.mismatches).to.equal(0);
    expect(sim.json?.touches).to.equal(16384);
    expect(exit.code, h.stderr).to.equal(0);
    expect(h.stderr).to.match(/ended: Firecracker closed the connection/);
    expect(h.stderr).to.match(/\b1 on pages no longer registered \(woken\)/);
  });
});
