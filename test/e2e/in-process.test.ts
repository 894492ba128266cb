// The server as a library in this process: the main event loop stays free
// while fault workers serve a restore, and stop() works with a VM attached.
import { expect } from 'chai';
import { TempDir, makeImage } from '../helpers/images.js';
import { startSim } from '../helpers/processes.js';
import { SnapfaultServer } from '../../src/server.js';
import { createLogger } from '../../src/log.js';

describe('SnapfaultServer in process', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('keeps the main event loop responsive while workers serve faults, and frees the VM after', async () => {
    const mem = tmp.file('mem.img', makeImage(64 << 20, { seed: 'loop', zeroFraction: 0 }));
    const sock = tmp.file('loop.sock');
    const server = await SnapfaultServer.start({
      socketPath: sock, memPath: mem, socketMode: 0o600, workers: 1, onFatal: 'kill-peer',
      handshakeTimeoutMs: 5000, zeroScan: false, once: false, log: createLogger('silent'), cacheMiB: 64, fillAround: true, prefetch: { kind: 'none' }, record: null, allowUids: [],
    });
    const idleBytes = server.coreBytesInUse;
    let ticks = 0;
    let worst = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last);
      last = now;
      ticks++;
    }, 5);
    const sim = startSim(['--socket', sock, '--mem', mem, '--pattern', 'random', '--threads', '2', '--verify']);
    const r = await sim.result;
    clearInterval(timer);
    expect(r.code, r.stderr).to.equal(0);
    const elapsedMs = r.json!.elapsed_ns / 1e6;
    // The loop kept ticking through the restore; the bound is generous, a blocked loop would miss it by far.
    expect(ticks).to.be.at.least(Math.floor(elapsedMs / 50));
    expect(worst).to.be.below(250);
    for (let i = 0; i < 100 && server.outcomes.length === 0; i++) await new Promise((res) => setTimeout(res, 20));
    expect(server.outcomes).to.have.length(1);
    expect(server.outcomes[0].reason).to.equal('exited');
    expect(server.outcomes[0].stats?.copies).to.equal(16384);
    // The VM's page table, bitmaps and buffers were all given back.
    expect(server.coreBytesInUse).to.equal(idleBytes);
    await server.stop();
  });

  it('a prefetch worker that dies inside a fence: the fence is opened, the VM goes on on demand, the next VM is served without prefetch', async () => {
    const mem = tmp.file('crash.img', makeImage(32 << 20, { seed: 'crash', zeroFraction: 0 }));
    const sock = tmp.file('crash.sock');
    // Every prefetch copy is held 300 ms inside the fence: the worker is killed there.
    process.env.SNAPFAULT_TEST_PREFETCH_STALL_MS = '300';
    const lines: string[] = [];
    const log = createLogger('silent');
    log.error = (msg: string) => void lines.push(msg);
    const server = await SnapfaultServer.start({
      socketPath: sock, memPath: mem, socketMode: 0o600, workers: 1, onFatal: 'kill-peer',
      handshakeTimeoutMs: 5000, zeroScan: false, once: false, log, cacheMiB: 64, fillAround: true,
      prefetch: { kind: 'all', trace: null }, record: null, allowUids: [],
    });
    delete process.env.SNAPFAULT_TEST_PREFETCH_STALL_MS;
    try {
      const sim = startSim(['--socket', sock, '--mem', mem, '--pattern', 'random', '--verify', '--touches', '2000']);
      for (let i = 0; i < 200 && server.connectedVms === 0; i++) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 100)); // now inside a stalled copy, holding the fence
      const prefetcher = (server as unknown as { prefetcher: { worker: { terminate(): Promise<number> } } }).prefetcher;
      await prefetcher.worker.terminate();
      // Without opening the fence the guest's next fault would never be served.
      const r = await sim.result;
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json?.mismatches).to.equal(0);
      expect(lines.join('\n')).to.match(/the prefetch worker stopped: .*prefetching is off for every VM, faults are served on demand/);
      const next = await startSim(['--socket', sock, '--mem', mem, '--pattern', 'random', '--verify', '--touches', '500']).result;
      expect(next.code, next.stderr).to.equal(0);
      for (let i = 0; i < 200 && server.connectedVms > 0; i++) await new Promise((res) => setTimeout(res, 10));
      expect(server.connectedVms).to.equal(0);
    } finally {
      await server.stop();
    }
  });
});
