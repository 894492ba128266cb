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
    // A failure must still stop the workers: one blocked in epoll_wait keeps the process from exiting.
    try {
      const idleBytes = server.coreBytesInUse;
      const pages = 16384;
      // At each turn of the main loop, how far the restore has got. Measured
      // against the worker's progress rather than the clock: a busy machine
      // (or a CPU quota) slows the worker and the loop alike, while a loop
      // blocked by the fault path sees nothing between none and all.
      const served = (): number => {
        const t = server.metricsSnapshot().total;
        return t.copies + t.zeropages + t.removedZero;
      };
      const seen: number[] = [];
      const timer = setInterval(() => seen.push(served()), 5);
      const sim = startSim(['--socket', sock, '--mem', mem, '--pattern', 'random', '--threads', '2', '--verify']);
      const r = await sim.result;
      clearInterval(timer);
      seen.push(served());
      expect(r.code, r.stderr).to.equal(0);
      expect(seen.at(-1)).to.equal(pages);
      const midway = seen.filter((n) => n > 0 && n < pages).length;
      let widest = 0;
      for (let i = 1; i < seen.length; i++) widest = Math.max(widest, seen[i] - seen[i - 1]);
      const what = `${seen.length} turns of the loop saw ${seen.join(' ')} faults served`;
      expect(midway, what).to.be.at.least(5);
      // No single stall of the loop spans half the restore.
      expect(widest, what).to.be.at.most(pages / 2);
      for (let i = 0; i < 100 && server.outcomes.length === 0; i++) await new Promise((res) => setTimeout(res, 20));
      expect(server.outcomes).to.have.length(1);
      expect(server.outcomes[0].reason).to.equal('exited');
      expect(server.outcomes[0].stats?.copies).to.equal(pages);
      // The VM's page table, bitmaps and buffers were all given back.
      expect(server.coreBytesInUse).to.equal(idleBytes);
    } finally {
      await server.stop();
    }
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
