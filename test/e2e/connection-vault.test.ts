// Connections accepted and not yet recorded outlive the handler (the
// connection vault, src/state/connection-vault.ts): a Firecracker whose
// connection was accepted, but whose handshake had not come, when its handler
// was SIGKILLed (or handed over in an upgrade) is served by the next handler,
// byte-exact, instead of being frozen or killed. The simulator connects and
// sends its handshake only 1.5 s later, so the kill lands between accept(2)
// and the record every time.
import { expect } from 'chai';
import { TempDir, makeImage } from '../helpers/images.js';
import { Proc, startSnapfault, startSim } from '../helpers/processes.js';
import { stopKeeper } from '../helpers/state.js';

const MiB = 1 << 20;

describe('takeover: a connection accepted but not yet recorded survives its handler', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  let img: string;
  let n = 0;
  const live: Proc[] = [];
  const dirs: string[] = [];
  before(() => {
    img = tmp.file('mem.img', makeImage(16 * MiB, { seed: 'vault', zeroFraction: 0.2 }));
  });
  afterEach(() => {
    for (const p of live.splice(0)) if (p.running) p.kill('SIGKILL');
    for (const d of dirs.splice(0)) stopKeeper(d);
  });
  after(() => tmp.remove());

  const setup = (): { sock: string; args: string[] } => {
    const sock = tmp.file(`v${n}.sock`);
    const state = tmp.file(`state${n++}`);
    dirs.push(state);
    return { sock, args: ['serve', '--socket', sock, '--mem', img, '--state-dir', state, '--log-level', 'debug', '--log-format', 'text'] };
  };
  const delayedSim = (sock: string): ReturnType<typeof startSim> =>
    startSim(['--socket', sock, '--mem', img, '--send-delay-ms', '1500', '--threads', '2', '--pattern', 'random', '--touches', '3000', '--verify']);

  for (const how of ['SIGKILL', 'an upgrade (--takeover)'] as const) {
    it(`${how} between accept and the handshake: the next handler serves that Firecracker byte-exact`, async () => {
      const { sock, args } = setup();
      const first = await startSnapfault(args);
      live.push(first);
      const sim = delayedSim(sock);
      await first.waitForStderr(new RegExp(`connection from pid ${sim.proc.pid} accepted`));
      let next: Proc;
      if (how === 'SIGKILL') {
        first.kill('SIGKILL');
        await first.exited;
        next = await startSnapfault(args);
      } else {
        next = await startSnapfault([...args, '--takeover']);
        expect((await first.waitExit(20_000)).code, first.stderr).to.equal(0);
      }
      live.push(next);
      const log = (): string => `--- first ---\n${first.stderr}\n--- next ---\n${next.stderr}`;
      const r = await sim.result;
      expect(r.signal, `${r.stderr}\n${log()}`).to.equal(null);
      expect(r.code, `${r.stderr}\n${log()}`).to.equal(0);
      expect(r.json?.mismatches).to.equal(0);
      expect(next.stderr, log()).to.match(new RegExp(`served again: pid ${sim.proc.pid}`));
      expect(next.stderr, log()).to.match(new RegExp(`VM pid ${sim.proc.pid}: serving 1 region`));
      expect(log()).not.to.match(/killed Firecracker/);
      next.kill('SIGTERM');
      expect((await next.waitExit()).code, next.stderr).to.equal(0);
    });
  }

  it('the drop-in form, SIGKILLed between accept and the handshake and started again, serves that Firecracker and exits 0 after it', async () => {
    const { sock, args } = setup();
    const state = args[args.indexOf('--state-dir') + 1];
    const dropIn = ['--state-dir', state, '--log-level', 'debug', '--log-format', 'text', sock, img];
    const first = await startSnapfault(dropIn);
    live.push(first);
    const sim = delayedSim(sock);
    await first.waitForStderr(new RegExp(`connection from pid ${sim.proc.pid} accepted`));
    first.kill('SIGKILL');
    await first.exited;
    const next = await startSnapfault(dropIn);
    live.push(next);
    const r = await sim.result;
    expect(r.code, `${r.stderr}\n${next.stderr}`).to.equal(0);
    expect(r.json?.mismatches).to.equal(0);
    expect((await next.waitExit(10_000)).code, next.stderr).to.equal(0);
    expect(next.stderr).to.match(new RegExp(`served again: pid ${sim.proc.pid}`));
  });

  it('a connection refused or served is settled: the next handler does not serve it again', async () => {
    const { sock, args } = setup();
    const first = await startSnapfault(args);
    live.push(first);
    const sim = startSim(['--socket', sock, '--mem', img, '--threads', '1', '--pattern', 'random', '--touches', '500', '--hold-ms', '3000', '--verify']);
    await first.waitForStderr(new RegExp(`VM pid ${sim.proc.pid}: serving 1 region`));
    first.kill('SIGKILL');
    await first.exited;
    const next = await startSnapfault(args);
    live.push(next);
    const r = await sim.result;
    expect(r.code, `${r.stderr}\n${next.stderr}`).to.equal(0);
    // Taken over through its record, never replayed from the vault.
    expect(next.stderr).to.match(new RegExp(`VM pid ${sim.proc.pid}: taken over`));
    expect(next.stderr).not.to.match(/served again/);
    next.kill('SIGTERM');
    expect((await next.waitExit()).code, next.stderr).to.equal(0);
  });
});
