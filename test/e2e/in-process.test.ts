// The server as a library in this process: the main event loop stays free
// while fault workers serve a restore, and stop() works with a VM attached.
import { expect } from 'chai';
import { TempDir, makeImage } from '../helpers/images.js';
import { startSim } from '../helpers/processes.js';
import { SnapfaultServer, RECENT_OUTCOMES } from '../../src/server.js';
import { pack } from '../../src/compressed/pack.js';
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
      handshakeTimeoutMs: 5000, zeroScan: false, zeroRanges: 'unregister', once: false, log: createLogger('silent'), cacheMiB: 64, fillAround: true, prefetch: { kind: 'none' }, record: null, allowUids: [],
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

  // The prefetch worker (test/helpers/faulty-prefetch-worker.ts) ends itself at its first copy: inside
  // the VM's fence, and, from a compressed snapshot, holding the cache slot of the chunk it copies from.
  for (const compressed of [false, true]) {
    it(`a prefetch worker that dies inside a fence${compressed ? ' holding a cache slot' : ''}: both are opened, the VM goes on on demand, the next VM is served without prefetch`, async () => {
      const mem = tmp.file(`crash${compressed}.img`, makeImage(32 << 20, { seed: 'crash', zeroFraction: 0 }));
      let served = mem;
      if (compressed) {
        served = tmp.file('crash.sfz');
        await pack(mem, served);
      }
      const sock = tmp.file(`crash${compressed}.sock`);
      const lines: string[] = [];
      const log = createLogger('silent');
      log.error = (msg: string) => void lines.push(msg);
      process.env.SF_TEST_PREFETCH_DIE = '1';
      let server: SnapfaultServer;
      try {
        server = await SnapfaultServer.start({
          socketPath: sock, memPath: served, socketMode: 0o600, workers: 1, onFatal: 'kill-peer',
          handshakeTimeoutMs: 5000, zeroScan: false, zeroRanges: 'unregister', once: false, log, cacheMiB: 64, fillAround: true,
          prefetch: { kind: 'all', trace: null }, record: null, allowUids: [],
          prefetchWorker: new URL('../helpers/faulty-prefetch-worker.js', import.meta.url),
        });
      } finally {
        delete process.env.SF_TEST_PREFETCH_DIE; // the worker has its copy of the environment
      }
      try {
        // Every page, so the chunk the worker died holding is faulted on too.
        const r = await startSim(['--socket', sock, '--mem', mem, '--pattern', 'random', '--verify', '--timeout-ms', '20000']).result;
        expect(r.code, r.stderr).to.equal(0);
        expect(r.json?.mismatches).to.equal(0);
        expect(lines.join('\n')).to.match(/the prefetch worker stopped: it exited with code 70; prefetching is off for every VM, faults are served on demand/);
        const next = await startSim(['--socket', sock, '--mem', mem, '--pattern', 'random', '--verify', '--touches', '500', '--timeout-ms', '20000']).result;
        expect(next.code, next.stderr).to.equal(0);
        for (let i = 0; i < 200 && server.connectedVms > 0; i++) await new Promise((res) => setTimeout(res, 10));
        expect(server.connectedVms).to.equal(0);
      } finally {
        await server.stop();
      }
    });
  }

  it(`keeps only the last ${RECENT_OUTCOMES} VM outcomes however many VMs it served`, async () => {
    const mem = tmp.file('many.img', makeImage(1 << 20, { seed: 'many', zeroFraction: 0 }));
    const sock = tmp.file('many.sock');
    const server = await SnapfaultServer.start({
      socketPath: sock, memPath: mem, socketMode: 0o600, workers: 1, onFatal: 'kill-peer',
      handshakeTimeoutMs: 5000, zeroScan: false, zeroRanges: 'unregister', once: false, log: createLogger('silent'), cacheMiB: 64, fillAround: true,
      prefetch: { kind: 'none' }, record: null, allowUids: [],
    });
    try {
      const vms = RECENT_OUTCOMES + 6;
      for (let i = 0; i < vms; i++) {
        const r = await startSim(['--socket', sock, '--mem', mem, '--touches', '1']).result;
        expect(r.code, r.stderr).to.equal(0);
      }
      for (let i = 0; i < 200 && server.connectedVms > 0; i++) await new Promise((res) => setTimeout(res, 10));
      expect(server.outcomes).to.have.length(RECENT_OUTCOMES);
      expect(server.metricsSnapshot().ended.get('exited')).to.equal(vms);
    } finally {
      await server.stop();
    }
  });
});
