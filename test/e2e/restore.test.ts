// Drop-in restores, end to end: `snapfault <socket> <mem>` serves the
// Firecracker simulator through real userfaultfd; the simulator checks every
// byte it touches against the memory file (or zeros where it ballooned).
import { expect } from 'chai';
import { TempDir, makeImage, sparseImage } from '../helpers/images.js';
import { startSnapfault, runSim, type SimResult, type Exit } from '../helpers/processes.js';

const MiB = 1 << 20;

describe('drop-in restore through real userfaultfd', function () {
  this.timeout(120_000);
  const tmp = new TempDir();
  let mem: string;
  let n = 0;

  before(() => {
    mem = tmp.file('mem.img', makeImage(64 * MiB, { seed: 'restore' }));
  });
  after(() => tmp.remove());

  async function restore(simArgs: string[], handlerArgs: string[] = [], file = mem): Promise<{ sim: SimResult; exit: Exit; log: string }> {
    const sock = tmp.file(`r${n++}.sock`);
    const h = await startSnapfault([...handlerArgs, sock, file]);
    const sim = await runSim(['--socket', sock, '--mem', file, '--verify', ...simArgs]);
    const exit = await h.waitExit();
    return { sim, exit, log: h.stderr };
  }

  function expectClean(r: { sim: SimResult; exit: Exit; log: string }, touches?: number): void {
    expect(r.sim.stderr, 'simulator stderr').to.equal('');
    expect(r.sim.code, `simulator exit; handler log:\n${r.log}`).to.equal(0);
    expect(r.sim.json?.mismatches).to.equal(0);
    if (touches !== undefined) expect(r.sim.json?.touches).to.equal(touches);
    expect(r.exit.code, `handler exit; log:\n${r.log}`).to.equal(0);
    expect(r.log).to.match(/ended: Firecracker closed the connection/);
    expect(r.log).to.not.match(/error|warn/);
  }

  for (const shape of ['none', 'kib', 'page_size', 'both']) {
    it(`accepts the ${shape === 'none' ? 'Firecracker 1.1-1.6' : shape} handshake shape and serves every page`, async () => {
      const r = await restore(['--shape', shape, '--pattern', 'seq']);
      expectClean(r, 16384);
      expect(r.log).to.match(/16384 faults/);
    });
  }

  it('accepts a handshake of several KiB with unknown fields', async () => {
    expectClean(await restore(['--pad', '3000', '--regions', '32M,32M', '--touches', '2000', '--pattern', 'random']), 2000);
  });

  for (const [pattern, threads] of [['random', 4], ['hot', 2], ['seq', 2]] as const) {
    it(`serves ${threads} vCPUs touching pages in ${pattern} order`, async () => {
      expectClean(await restore(['--pattern', pattern, '--threads', String(threads)]));
    });
  }

  it('serves several regions: the x86 split and a hotplug region', async () => {
    expectClean(await restore(['--regions', '24M,32M,8M', '--pattern', 'random', '--threads', '2']), 16384);
  });

  for (const mode of ['after', 'before', 'concurrent']) {
    it(`balloon ${mode} the faults: removed pages read back as zeros`, async () => {
      const r = await restore(['--pattern', 'random', '--threads', '2', '--balloon', '1M:2M,40M:4K,63M:1M', '--balloon-mode', mode]);
      expectClean(r);
      expect(r.sim.json?.zero_checked).to.be.at.least(769);
      expect(r.log).to.match(/[1-9]\d* removes?\b/);
    });
  }

  it('maps all-zero snapshot pages with UFFDIO_ZEROPAGE once the scan found them', async () => {
    const sock = tmp.file(`r${n++}.sock`);
    const h = await startSnapfault(['--log-level', 'debug', sock, mem]);
    const scan = await h.waitForStderr(/zero-page scan of .*: (\d+) of 16384 pages are zero/);
    const zeros = Number(scan[1]);
    expect(zeros).to.be.within(16384 * 0.4, 16384 * 0.6);
    const sim = await runSim(['--socket', sock, '--mem', mem, '--verify', '--pattern', 'random']);
    expect((await h.waitExit()).code).to.equal(0);
    expect(sim.code).to.equal(0);
    expect(sim.json?.mismatches).to.equal(0);
    expect(h.stderr).to.match(new RegExp(`16384 faults \\(${16384 - zeros} copied, ${zeros} zero, 0 removed\\)`));
  });

  it('with --zero-scan off every page is copied', async () => {
    const r = await restore(['--pattern', 'random'], ['--zero-scan', 'off']);
    expectClean(r);
    expect(r.log).to.match(/16384 faults \(16384 copied, 0 zero/);
  });

  it('serves a sparse (diff-style) memory file: holes are zero pages', async () => {
    const sparse = sparseImage(tmp.file('sparse.img'), 32 * MiB, [{ at: 8 * MiB, bytes: 4 * MiB, seed: 'sparse' }]);
    const r = await restore(['--pattern', 'random', '--threads', '2'], ['--zero-scan', 'off', '--zero-ranges', 'off'], sparse);
    expectClean(r, 8192);
    expect(r.log).to.match(/8192 faults \(1024 copied, 7168 zero/);
    // By default the holes (known at once, without the scan) leave the uffd: only the data faults.
    const ranges = await restore(['--pattern', 'random', '--threads', '2'], ['--zero-scan', 'off'], sparse);
    expectClean(ranges, 8192);
    expect(ranges.log).to.match(/1024 faults \(1024 copied, 0 zero/);
    expect(ranges.log).to.match(/2 all-zero ranges \(28\.0 MiB\) left to the kernel/);
  });
});
