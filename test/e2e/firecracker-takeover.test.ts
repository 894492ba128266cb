// Takeover under the real Firecracker (the kit in ../shared/firecracker): a
// `serve` with a state directory is SIGKILLed in the middle of a restore, raw
// and compressed, with the balloon inflated and deflated (REMOVE events that
// must stay zeros), and a new one started on the same state directory takes
// the running Firecracker's userfaultfd and serves on; then a planned
// `--takeover` while three guests restore; and a standby (`--standby`)
// taking over the moment the owner is killed. Each guest checks every byte.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TempDir } from '../helpers/images.js';
import { Proc, startSnapfault } from '../helpers/processes.js';
import { SNAPFAULT } from '../helpers/paths.js';
import { stopKeeper } from '../helpers/state.js';
import { q, sh, requireKit, KitSnapshot, type Restore } from '../helpers/firecracker.js';
import { pack } from '../../src/compressed/pack.js';

const snapshot = new KitSnapshot(16, 128);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function expectPass(r: Restore): void {
  expect(r.pass, r.output).to.equal(true);
}

describe('real Firecracker: takeover', function () {
  this.timeout(300_000);
  const tmp = new TempDir();
  let packed = '';
  let n = 0;
  const live: Proc[] = [];
  const dirs: string[] = [];
  const stateDir = (): string => {
    const d = tmp.file(`state${n}`);
    dirs.push(d);
    return d;
  };

  before(async function () {
    requireKit(this);
    await snapshot.ensure();
    packed = tmp.file('mem.sfz');
    await pack(snapshot.mem, packed);
  });
  afterEach(async () => {
    for (const h of live.splice(0)) if (h.running) {
      h.kill('SIGKILL');
      await h.exited;
    }
    for (const d of dirs.splice(0)) stopKeeper(d);
  });
  after(() => tmp.remove());

  // The kit starts "the handler" per restore: here a stand-in that points its socket at the running serve.
  const viaServe = (sock: string): string[] => sh(`ln -s ${q(sock)} "$1" && exec sleep 600`);
  const log = (hs: Proc[]): string => hs.map((h, i) => `--- handler ${i} ---\n${h.stderr}`).join('\n');

  /** Waits until the VM's record holds a removed page: the balloon has inflated, and the pages it took must read as zeros from now on. */
  async function removesRecorded(state: string, pid: string): Promise<void> {
    for (let i = 0; i < 3000; i++) {
      try {
        if (readFileSync(join(state, `vm-${pid}.state`)).subarray(8192).some((b) => b !== 0)) return;
      } catch {
        /* not yet */
      }
      await sleep(10);
    }
    throw new Error('the balloon never removed a page');
  }

  const cases = [
    { compressed: false, when: 'in its first round of faults', standby: false },
    { compressed: false, when: 'once the balloon has removed pages', standby: false },
    { compressed: true, when: 'once the balloon has removed pages', standby: false },
    { compressed: false, when: 'once the balloon has removed pages', standby: true },
  ];
  for (const { compressed, when, standby } of cases) {
    const by = standby ? 'the standby waiting beside it' : 'the next';
    it(`real Firecracker: a handler SIGKILLed ${when} is taken over by ${by}, every byte right, removed pages zero${compressed ? ', compressed' : ''}`, async () => {
      const sock = tmp.file(`k${n++}.sock`);
      const state = stateDir();
      const args = ['serve', '--socket', sock, '--mem', compressed ? packed : snapshot.mem, '--state-dir', state, '--log-format', 'text'];
      const first = await startSnapfault(args);
      live.push(first);
      const waiting = standby ? new Proc(SNAPFAULT, [...args, '--standby']) : null;
      if (waiting) {
        live.push(waiting);
        await waiting.waitForStderr(/standing by: /, 30_000);
      }
      const restoring = snapshot.restore(viaServe(sock), { HANDLER_EXIT_TIMEOUT: '0', BALLOON_MIB: '16', ROUNDS: '2' });
      const pid = (await first.waitForStderr(/VM pid (\d+): serving/, 60_000))[1];
      if (when.startsWith('once')) await removesRecorded(state, pid);
      else await sleep(250);
      first.kill('SIGKILL');
      await first.exited;
      const t0 = performance.now();
      const second = waiting ?? new Proc(SNAPFAULT, args);
      if (!waiting) live.push(second);
      const m = await second.waitForStderr(/taken over from the previous handler \((\d+) removed/, 20_000);
      const tookMs = performance.now() - t0;
      if (when.startsWith('once')) expect(Number(m[1]), 'removed pages handed over').to.be.above(0);
      const r = await restoring;
      expectPass(r);
      expect(r.output).to.match(/balloon: reached 16 MiB/);
      expect(r.output).to.match(/nonzero_words=0/);
      await second.waitForStderr(/ended: Firecracker exited/, 20_000);
      console.log(`      handler killed ${when}: taken over ${tookMs.toFixed(0)} ms after ${standby ? 'the kill, by the standby' : 'the new handler was started'} (${m[1]} removed pages then); ` +
        `load->verified ${r.verifiedMs} ms`);
      expect(log([first, second])).not.to.match(/error/);
    });
  }

  it('real Firecracker: serve --takeover while three guests restore, every guest verified', async () => {
    const sock = tmp.file(`u${n++}.sock`);
    const args = ['serve', '--socket', sock, '--mem', snapshot.mem, '--state-dir', stateDir(), '--log-format', 'text'];
    const old = await startSnapfault(args);
    live.push(old);
    const restores = [0, 1, 2].map(() => snapshot.restore(viaServe(sock), { HANDLER_EXIT_TIMEOUT: '0', BALLOON_MIB: '16', ROUNDS: '2' }));
    await old.waitForStderr(/(VM pid \d+: serving[^]*){3}/, 90_000);
    await sleep(200);
    const next = await startSnapfault([...args, '--takeover']);
    live.push(next);
    expect((await old.waitExit(20_000)).code, old.stderr).to.equal(0);
    const rs = await Promise.all(restores);
    for (const r of rs) expectPass(r);
    expect((next.stderr.match(/taken over from the previous handler/g) ?? []).length, log([old, next])).to.be.at.least(1);
    console.log(`      planned takeover: ${(next.stderr.match(/taken over from the previous handler/g) ?? []).length} VM(s) handed over; ` +
      `load->verified ${rs.map((r) => r.verifiedMs).join(', ')} ms`);
  });
});
