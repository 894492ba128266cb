// Crash recovery: a `serve` with a state directory is SIGKILLed at random
// moments (before, during and after handshakes, in fault storms, inside
// prefetch batches, during its own takeover) while eight simulated
// Firecrackers restore under balloon churn, and is started again on the same
// state directory each time. Every VM must finish with every byte the
// snapshot's or, once removed, zero; the only exception is the documented
// one, a handshake accepted by a handler killed before it could record it,
// whose Firecracker the next handler must name and kill (never leave frozen). The simulators
// report every read that waited over 20 ms; the longest wait after a new
// handler was started is the figure the README quotes.
import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import { TempDir, makeImage } from '../helpers/images.js';
import { Proc, startSnapfault, startSim, type SimResult } from '../helpers/processes.js';
import { SNAPFAULT } from '../helpers/paths.js';
import { killLeftOver } from '../helpers/state.js';
import { longestWaitAfter } from '../helpers/stalls.js';
import { seededRandom } from '../helpers/seeded-random.js';

const MiB = 1 << 20;
const VMS = 8;
const KILLS = 20;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const monoNs = (): bigint => process.hrtime.bigint(); // CLOCK_MONOTONIC, as the simulator's stall times

interface Report extends SimResult {
  stalls: Array<[number, number]>;
}

describe('takeover: a handler SIGKILLed at random moments, restarted on its state directory', function () {
  this.timeout(240_000);
  const tmp = new TempDir();
  let img: string;

  before(() => {
    img = tmp.file('mem.img', makeImage(32 * MiB, { seed: 'takeover', zeroFraction: 0.3 }));
  });
  after(() => tmp.remove());

  it(`${VMS} VMs under balloon churn, ${KILLS} SIGKILLs: every VM finishes byte-exact, but one whose handshake a killed handler lost, which is killed, never frozen`, async () => {
    const seed = Number(process.env.TAKEOVER_SEED ?? Date.now() % 1_000_000);
    const rand = seededRandom(seed);
    const sock = tmp.file('s.sock');
    const state = tmp.file('state');
    const args = ['serve', '--socket', sock, '--mem', img, '--state-dir', state, '--prefetch', 'all', '--workers', '2', '--log-format', 'text'];
    const handlers: Proc[] = [await startSnapfault(args)];
    const starts: bigint[] = [monoNs()];
    const sims: Array<Promise<SimResult>> = [];
    const simPids: number[] = [];
    const simStarts = (async () => {
      for (let i = 0; i < VMS; i++) {
        const sim = startSim(['--timeout-ms', '120000', '--socket', sock, '--mem', img, '--churn-ms', '9000', '--threads', '2', '--churn-removers', '1',
          '--churn-window', '1024', '--churn-max', '8', '--churn-stuck-ms', '30000', '--stall-report-ms', '20', '--seed', String(seed + i), '--verify']);
        sims.push(sim.result);
        simPids.push(sim.proc.pid);
        await sleep(900);
      }
    })();
    const log = (): string => `(replay with TAKEOVER_SEED=${seed})\n` + handlers.map((h, i) => `--- handler ${i} (pid ${h.pid}) ---\n${h.stderr}`).join('\n');
    try {
      for (let k = 0; k < KILLS; k++) {
        await sleep(100 + rand() * 900);
        const h = handlers[handlers.length - 1];
        h.kill('SIGKILL');
        await h.exited;
        starts.push(monoNs());
        handlers.push(new Proc(SNAPFAULT, args));
      }
      await simStarts;
      const results = (await Promise.all(sims)) as Report[];
      for (const r of results) r.stalls = ((r.json as unknown as { stalls?: Array<[number, number]> }) ?? {}).stalls ?? [];
      const last = handlers[handlers.length - 1];
      // The one documented loss: a handshake accepted by a handler killed before it recorded it (README, Crashes and
      // upgrades). Its Firecracker must have been named and killed by the next handler, never left frozen.
      let lost = 0;
      results.forEach((r, i) => {
        if (r.signal === 'SIGKILL' && log().includes(`VM pid ${simPids[i]}: the previous handler died after accepting its connection`)) {
          lost++;
          return;
        }
        expect(r.signal, `VM ${i} was killed\n${r.stderr}\n${log()}`).to.equal(null);
        expect(r.code, `VM ${i}: ${r.stderr}\n${log()}`).to.equal(0);
        expect(r.json?.mismatches, `VM ${i}`).to.equal(0);
      });
      expect(lost, log()).to.be.at.most(2);
      const taken = (log().match(/taken over from the previous handler/g) ?? []).length;
      const waits = results.map((r) => longestWaitAfter(r.stalls, starts)).concat(0);
      const worst = Math.max(...waits);
      console.log(`      ${VMS} VMs, ${KILLS} SIGKILLs (seed ${seed}): ${VMS - lost} finished byte-exact, ${lost} lost in the handshake window (killed); ` +
        `${taken} takeovers; longest wait of a read after a new handler started: ${worst.toFixed(0)} ms`);
      // Not vacuous: every handler that got as far as listening took over the VMs running then (the first had none);
      // on a loaded machine a handler may be killed before it gets there, so the kills are not the measure.
      const listened = handlers.slice(1).filter((h) => /listening on /.test(h.stderr)).length;
      expect(listened, log()).to.be.at.least(3);
      expect(taken, log()).to.be.at.least(listened);
      // A regression guard well above this machine's figure (the README's); a missing wake would hang a read for good.
      expect(worst).to.be.below(3000);
      // Each VM's end was seen and its record removed; then a stop leaves nothing behind.
      for (let i = 0; i < 100 && readdirSync(state).some((f) => f.startsWith('vm-')); i++) await sleep(100);
      expect(readdirSync(state).filter((f) => f.startsWith('vm-')), log()).to.deep.equal([]);
      // The last handler may have been started a moment ago: a SIGTERM before Node set its handlers would kill it outright.
      await last.waitForStderr(/listening on /, 30_000);
      last.kill('SIGTERM');
      expect((await last.waitExit()).code, last.stderr).to.equal(0);
    } finally {
      killLeftOver(handlers, state);
    }
  });
});
