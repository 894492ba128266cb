// snapfault under the real Firecracker (v1.14.1, from the kit in
// ../shared/firecracker): a guest booted on this machine's KVM is snapshotted
// once per build, then restored through snapfault while it checks every byte
// of its memory against a checksum taken before the snapshot.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { SNAPFAULT } from '../helpers/paths.js';
import { TempDir } from '../helpers/images.js';
import { Proc, startSnapfault } from '../helpers/processes.js';
import { KIT, kitProblem, KitSnapshot, restoreAndAlloc, type Restore } from '../helpers/firecracker.js';

/** Small enough to restore in a second or two. */
const snapshot = new KitSnapshot(16, 128);
const SNAPSHOT_MEM = snapshot.mem;
const restore = (handler: string[], env: NodeJS.ProcessEnv = {}): Promise<Restore> => snapshot.restore(handler, env);
import { pack } from '../../src/compressed/pack.js';

const sh = (script: string): string[] => ['sh', '-c', script, 'sh'];
const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function expectPass(r: Restore): void {
  expect(r.pass, r.output).to.equal(true);
  expect(r.loadMs).to.be.above(0);
  expect(r.verifiedMs).to.be.above(0);
}

describe('real Firecracker', function () {
  this.timeout(300_000);
  const tmp = new TempDir();
  let packed = '';

  before(async function () {
    const problem = kitProblem();
    if (problem) {
      // CI has the kit and KVM: there a missing one is a failure, never a silent skip.
      if (process.env.CI) throw new Error(`real Firecracker tests cannot run: ${problem}`);
      console.log(`    real Firecracker: SKIPPED: ${problem}`);
      this.skip();
    }
    console.log(`    real Firecracker: kit ${KIT}, snapshot of a ${snapshot.vmMib} MiB VM with a ${snapshot.guestMib} MiB guest buffer (made once per build, ~65 s)`);
    await snapshot.ensure();
    packed = tmp.file('mem.sfz');
    await pack(SNAPSHOT_MEM, packed);
  });
  after(() => tmp.remove());

  it('real Firecracker: restores on demand from the raw memory file, every byte checked', async () => {
    const r = await restore([SNAPFAULT]);
    expectPass(r);
    expect(r.output).to.match(/ended: Firecracker closed the connection; \d+ faults?\b/);
  });

  it('real Firecracker: restores from a compressed snapshot', async () => {
    const r = await restore(sh(`exec ${q(SNAPFAULT)} "$1" ${q(packed)}`));
    expectPass(r);
    expect(r.output).to.match(/chunks: [1-9]\d* decoded/);
  });

  for (const compressed of [false, true]) {
    it(`real Firecracker: balloon inflate and deflate (UFFD_EVENT_REMOVE), the guest re-touches removed memory${compressed ? ', compressed' : ''}`, async () => {
      // Zero ranges off: every page the balloon takes is the handler's, so the REMOVEs come.
      const handler = compressed ? sh(`exec ${q(SNAPFAULT)} --zero-ranges off "$1" ${q(packed)}`) : [SNAPFAULT, '--zero-ranges', 'off'];
      const r = await restore(handler, { BALLOON_MIB: '16', ROUNDS: '2' });
      expectPass(r);
      expect(r.output).to.match(/balloon: reached 16 MiB/);
      expect(r.output).to.match(/nonzero_words=0/);
      expect(r.output).to.match(/[1-9]\d* removes?\b/);
    });
  }

  it('real Firecracker: with the all-zero ranges unregistered, the balloon takes pages the handler never hears of, and the guest reads zeros there after the deflate', async () => {
    const r = await restore([SNAPFAULT], { BALLOON_MIB: '16', ROUNDS: '2' });
    expectPass(r);
    expect(r.output).to.match(/balloon: reached 16 MiB/);
    // The guest re-allocates 32 MiB after the deflate and checks it is zero; then re-checks its buffer.
    expect(r.output).to.match(/nonzero_words=0/);
    expect(r.output).to.match(/[1-9]\d* all-zero ranges? \([\d.]+ MiB\) left to the kernel/);
  });

  it('real Firecracker: the guest allocates fresh memory after the restore without the handler (zero ranges unregistered)', async () => {
    const on = await restoreAndAlloc(snapshot, [SNAPFAULT, '--log-format', 'text'], 4);
    expect(on.pass, on.output).to.equal(true);
    const off = await restoreAndAlloc(snapshot, [SNAPFAULT, '--log-format', 'text', '--zero-ranges', 'off'], 4);
    expect(off.pass, off.output).to.equal(true);
    const faults = (out: string): number => Number(/(\d+) faults? \(/.exec(out)?.[1] ?? NaN);
    expect(on.output).to.match(/all-zero ranges? \([\d.]+ MiB\) left to the kernel/);
    // 4 MiB is 1024 pages: served on demand without zero ranges, by the kernel with them.
    expect(faults(off.output) - faults(on.output), `${on.output}\n${off.output}`).to.be.above(900);
  });

  it('real Firecracker: records a restore, then replays it ahead of the guest', async () => {
    const trace = tmp.file('fc.trace');
    const first = await restore([SNAPFAULT, '--record', trace]);
    expectPass(first);
    expect(existsSync(trace)).to.equal(true);
    const replayed = await restore([SNAPFAULT, '--prefetch', `replay:${trace}`]);
    expectPass(replayed);
    expect(replayed.output).to.match(/prefetch: [1-9]\d* pages copied/);
    const compressed = await restore(sh(`exec ${q(SNAPFAULT)} --prefetch replay:${q(trace)} "$1" ${q(packed)}`));
    expectPass(compressed);
    expect(compressed.output).to.match(/prefetch: [1-9]\d* pages copied/);
  });

  it('real Firecracker: --prefetch all, raw and compressed', async () => {
    expectPass(await restore([SNAPFAULT, '--prefetch', 'all']));
    expectPass(await restore(sh(`exec ${q(SNAPFAULT)} --prefetch all "$1" ${q(packed)}`)));
  });

  describe('one snapfault serve', () => {
    let h: Proc;
    let sock: string;
    before(async () => {
      sock = tmp.file('serve.sock');
      h = await startSnapfault(['serve', '--socket', sock, '--mem', SNAPSHOT_MEM, '--log-format', 'text']);
    });
    after(async () => {
      h.kill('SIGKILL');
      await h.waitExit();
    });
    // The kit starts "the handler" per restore: here a stand-in that points its socket at the running serve.
    const viaServe = (): string[] => sh(`ln -s ${q(sock)} "$1" && exec sleep 600`);

    it('real Firecracker: serve restores three Firecrackers at once', async () => {
      const rs = await Promise.all([0, 1, 2].map(() => restore(viaServe(), { HANDLER_EXIT_TIMEOUT: '0' })));
      for (const r of rs) expectPass(r);
      await h.waitForStderr(/(ended: Firecracker closed the connection[^]*){3}/, 20_000);
    });

    it('real Firecracker: a Firecracker killed mid-restore is cleaned up, and the next one is served', async () => {
      const before = (h.stderr.match(/VM pid \d+: serving/g) ?? []).length;
      const dying = restore(viaServe(), { HANDLER_EXIT_TIMEOUT: '0', ROUNDS: '3' });
      let pid = 0;
      for (let i = 0; i < 400 && !pid; i++) {
        const all = [...h.stderr.matchAll(/VM pid (\d+): serving/g)];
        if (all.length > before) pid = Number(all[all.length - 1][1]);
        else await new Promise((r) => setTimeout(r, 25));
      }
      expect(pid, h.stderr).to.be.above(0);
      await new Promise((r) => setTimeout(r, 150)); // in the middle of its restore
      process.kill(pid, 'SIGKILL');
      const r = await dying;
      expect(r.pass).to.equal(false);
      await h.waitForStderr(new RegExp(`VM pid ${pid} ended`), 20_000);
      expectPass(await restore(viaServe(), { HANDLER_EXIT_TIMEOUT: '0' }));
      expect(h.child.exitCode).to.equal(null);
    });
  });
});
