// Fault injection: Firecrackers dying at random moments of a restore, again
// and again, beside a VM that must not notice; afterwards the handler's fds
// and shared memory are back at their baseline.
import { expect } from 'chai';
import { TempDir, makeImage, prng } from '../helpers/images.js';
import { startSim } from '../helpers/processes.js';
import { fdTable, fdsBackTo } from '../helpers/fds.js';
import { SnapfaultServer } from '../../src/server.js';
import { createLogger } from '../../src/log.js';
import { pack } from '../../src/compressed/pack.js';

const MiB = 1 << 20;

describe('fault injection', function () {
  this.timeout(180_000);
  const tmp = new TempDir();
  after(() => tmp.remove());

  const cases = [['raw', 'none'], ['compressed', 'none'], ['raw', 'all'], ['compressed', 'all']] as const;
  for (const [kind, prefetch] of cases) {
    const name = `${kind}${prefetch === 'none' ? '' : `, --prefetch ${prefetch}`}`;
    it(`${name}: 12 Firecrackers killed before, during and after their handshake and restore; the bystander is served; nothing leaks`, async () => {
      const mem = tmp.file(`${kind}-${prefetch}.img`, makeImage(16 * MiB, { seed: `inject-${kind}` }));
      let served = mem;
      if (kind === 'compressed') {
        served = tmp.file(`inject-${prefetch}.sfz`);
        await pack(mem, served);
      }
      const sock = tmp.file(`${kind}-${prefetch}.sock`);
      const server = await SnapfaultServer.start({
        socketPath: sock, memPath: served, socketMode: 0o600, allowUids: [], workers: 2, onFatal: 'kill-peer',
        handshakeTimeoutMs: 2000, zeroScan: false, zeroRanges: 'unregister', once: false, log: createLogger('silent'), cacheMiB: 8, fillAround: true,
        prefetch: prefetch === 'none' ? { kind: 'none' } : { kind: 'all', trace: null }, record: null,
      });
      try {
        // Warm up once: lazily created things belong to the baseline.
        expect((await startSim(['--socket', sock, '--mem', mem, '--touches', '50']).result).code).to.equal(0);
        await waitUntil(() => server.connectedVms === 0);
        const fds = fdTable();
        const bytes = server.coreBytesInUse;
        const bystander = startSim(['--socket', sock, '--mem', mem, '--verify', '--pattern', 'random', '--threads', '2']);
        const dice = prng(`dice-${name}`, 64);
        for (let i = 0; i < 12; i++) {
          const when = dice[i] % 4;
          const args = ['--socket', sock, '--mem', mem, '--pattern', 'random'];
          if (when === 0) args.push('--no-send', '--touches', '0', '--hold-ms', '5000'); // killed before its handshake
          else if (when === 1) args.push('--touches', '0', '--hold-ms', '5000'); // killed right after it
          else args.push('--die-after', String(1 + dice[i + 12] * 16)); // dies mid-restore
          const victim = startSim(args);
          if (when < 2) {
            await new Promise((r) => setTimeout(r, 20 + (dice[i + 24] % 80)));
            victim.proc.kill('SIGKILL');
          }
          const r = await victim.result;
          expect(r.signal, `round ${i}`).to.equal('SIGKILL');
        }
        const b = await bystander.result;
        expect(b.code, b.stderr).to.equal(0);
        expect(b.json?.mismatches).to.equal(0);
        // Connections still in their handshake close as their peers' deaths are noticed: allow a moment.
        await waitUntil(() => server.connectedVms === 0);
        await fdsBackTo(fds);
        expect(server.coreBytesInUse).to.equal(bytes);
      } finally {
        await server.stop();
      }
    });
  }
});

async function waitUntil(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for the handler to settle');
    await new Promise((r) => setTimeout(r, 20));
  }
}
