// A planned upgrade: `snapfault serve --takeover` on the same state directory
// and socket while the old handler serves eight simulated Firecrackers under
// balloon churn. The old one stops at a clean point, leaves its VMs recorded
// and exits 0; the new one takes them over and binds the socket. Three
// upgrades in a row: every VM finishes byte-exact, and a Firecracker that
// comes after is served by the last handler. The simulators report every
// read that waited over 5 ms; the longest is the figure the README quotes.
import { expect } from 'chai';
import { TempDir, makeImage } from '../helpers/images.js';
import { Proc, startSnapfault, startSim, runSim, type SimResult } from '../helpers/processes.js';
import { killLeftOver } from '../helpers/state.js';

const MiB = 1 << 20;
const VMS = 8;
const UPGRADES = 3;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A log line's wall-clock time on the simulators' clock (CLOCK_MONOTONIC ns, as process.hrtime). */
const wallToMono = (() => {
  const offset = process.hrtime.bigint() - BigInt(Date.now()) * 1_000_000n;
  return (iso: string): bigint => BigInt(Date.parse(iso)) * 1_000_000n + offset;
})();
const timeOf = (text: string, re: RegExp): bigint => {
  const m = text.match(new RegExp(`^(\\S+) snapfault info: ${re.source}`, 'm'));
  if (!m) throw new Error(`no line matching ${re} in:\n${text}`);
  return wallToMono(m[1]);
};

describe('takeover: a planned upgrade (serve --takeover) under load', function () {
  this.timeout(180_000);
  const tmp = new TempDir();
  let img: string;

  before(() => {
    img = tmp.file('mem.img', makeImage(32 * MiB, { seed: 'upgrade', zeroFraction: 0.3 }));
  });
  after(() => tmp.remove());

  it(`${VMS} VMs under balloon churn, ${UPGRADES} upgrades in a row: every VM finishes byte-exact, the old handlers exit 0`, async () => {
    const sock = tmp.file('s.sock');
    const state = tmp.file('state');
    const args = ['serve', '--socket', sock, '--mem', img, '--state-dir', state, '--prefetch', 'all', '--workers', '2', '--log-format', 'text'];
    const handlers: Proc[] = [await startSnapfault(args)];
    const log = (): string => handlers.map((h, i) => `--- handler ${i} (pid ${h.pid}) ---\n${h.stderr}`).join('\n');
    try {
      const sims: Array<Promise<SimResult>> = [];
      for (let i = 0; i < VMS; i++) {
        sims.push(startSim(['--timeout-ms', '120000', '--socket', sock, '--mem', img, '--churn-ms', '14000', '--threads', '2', '--churn-removers', '1',
          '--churn-window', '1024', '--churn-max', '8', '--churn-stuck-ms', '30000', '--stall-report-ms', '5', '--seed', String(i + 1), '--verify']).result);
      }
      await handlers[0].waitForStderr(new RegExp(`(serving 1 region[^]*){${VMS}}`), 20_000);
      const windows: Array<[bigint, bigint]> = [];
      for (let u = 0; u < UPGRADES; u++) {
        await sleep(1000);
        const old = handlers[handlers.length - 1];
        const next = await startSnapfault([...args, '--takeover']);
        handlers.push(next);
        expect((await old.waitExit(20_000)).code, log()).to.equal(0);
        // From the old handler's last batch to the new one's socket: the VMs are served by nobody in between.
        windows.push([timeOf(old.stderr, /handing over/), timeOf(next.stderr, /listening on/) + 1_000_000n]);
        expect(old.stderr, log()).to.match(/handing over/);
        expect((next.stderr.match(/taken over from the previous handler/g) ?? []).length, log()).to.equal(VMS);
      }
      const results = await Promise.all(sims);
      let worst = 0;
      results.forEach((r, i) => {
        expect(r.signal, `VM ${i}: ${r.stderr}\n${log()}`).to.equal(null);
        expect(r.code, `VM ${i}: ${r.stderr}\n${log()}`).to.equal(0);
        expect(r.json?.mismatches, `VM ${i}`).to.equal(0);
        const stalls = (r.json as unknown as { stalls: Array<[number, number]> }).stalls;
        // Reads waiting while a handover was under way.
        for (const [s, e] of stalls) {
          if (windows.some(([a, b]) => BigInt(e) >= a && BigInt(s) <= b)) worst = Math.max(worst, (e - s) / 1e6);
        }
      });
      console.log(`      ${VMS} VMs, ${UPGRADES} upgrades: longest wait of a read during a handover: ${worst.toFixed(1)} ms`);
      // Not frozen across a handover: far below the 30 s the simulators would call stuck (the target, 50 ms, is what the README reports).
      expect(worst).to.be.below(2000);
      // The last handler serves newcomers on the same socket.
      const late = await runSim(['--socket', sock, '--mem', img, '--threads', '2', '--pattern', 'random', '--touches', '2000', '--verify']);
      expect(late.code, `${late.stderr}\n${log()}`).to.equal(0);
      const last = handlers[handlers.length - 1];
      last.kill('SIGTERM');
      expect((await last.waitExit()).code, last.stderr).to.equal(0);
    } finally {
      killLeftOver(handlers, state);
    }
  });
});
