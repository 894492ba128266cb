// The command line: help, usage errors, and start-up failures, each a single
// line that names the problem and the fix, with documented exit codes.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { SNAPFAULT } from '../helpers/paths.js';
import { TempDir, makeImage } from '../helpers/images.js';
import { startSnapfault, runSim, startSim, type Proc } from '../helpers/processes.js';
import { pack } from '../../src/compressed/pack.js';
import { truncateSync } from 'node:fs';

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(SNAPFAULT, args, { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('snapfault command line', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  let mem: string;
  before(() => {
    mem = tmp.file('mem.img', makeImage(4 << 20));
  });
  after(() => tmp.remove());

  it('--help for both forms, --version', () => {
    const main = cli(['--help']);
    expect(main.code).to.equal(0);
    expect(main.stdout).to.match(/snapfault \[options\] <socket> <memory-file>/);
    expect(main.stdout).to.match(/Exit codes/);
    const serve = cli(['serve', '--help']);
    expect(serve.code).to.equal(0);
    expect(serve.stdout).to.match(/--socket PATH/);
    for (const help of [main.stdout, serve.stdout]) expect(help).to.match(/--drain-timeout SECONDS .*SIGTERM or SIGINT/);
    expect(cli(['--version']).stdout).to.match(/^snapfault \d+\.\d+\.\d+\n$/);
  });

  const usage: Array<[string[], RegExp]> = [
    [[], /missing <socket> and <memory-file>/],
    [['a.sock'], /expected <socket> <memory-file>, got 1/],
    [['serve', '--socket', 'x.sock'], /serve needs --socket PATH and --mem FILE/],
    [['--bogus', 'a', 'b'], /unknown option --bogus; see snapfault --help/],
    [['--on-fatal', 'explode', 'a', 'b'], /--on-fatal must be kill-peer or disconnect, got explode/],
    [['--workers', '0', 'a', 'b'], /--workers must be a whole number from 1 to 64, got 0/],
    [['--socket-mode', '999', 'a', 'b'], /--socket-mode must be an octal mode from 0 to 777, got 999/],
    [['serve', '--socket', 'a', '--mem', 'b', '--drain-timeout', 'soon'], /--drain-timeout must be a whole number from 0 to 604800, got soon/],
    [['--drain-timeout', '604801', 'a', 'b'], /--drain-timeout must be a whole number from 0 to 604800, got 604801/],
    [['--drain-timeout', '-1', 'a', 'b'], /--drain-timeout must be a whole number from 0 to 604800, got -1/],
    [['--socket', 'a', '--mem', 'b'], /belong to `snapfault serve`/],
  ];
  for (const [args, re] of usage) {
    it(`usage error: ${args.join(' ') || '(no arguments)'}`, () => {
      const r = cli(args);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.match(re);
      expect(r.stderr.trim().split('\n')).to.have.length(1);
      expect(r.stderr).to.match(/^snapfault: /);
    });
  }

  it('a wrong memory file path: one line, exit 2, no socket left behind', () => {
    const sock = tmp.file('w.sock');
    const r = cli([sock, tmp.file('missing.img')]);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/^snapfault: snapshot .*missing\.img: no such file: check the memory file path\n$/);
  });

  it('a file that cannot be a memory file', () => {
    const r = cli([tmp.file('x.sock'), tmp.file('odd.img', Buffer.alloc(5000))]);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/its size 5000 is not a multiple of 4096/);
    const dir = cli([tmp.file('y.sock'), tmp.path]);
    expect(dir.code).to.equal(2);
    expect(dir.stderr).to.match(/is a folder, not a file: give the path of the snapshot file/);
  });

  it('a socket path that cannot be used', () => {
    const r = cli([tmp.file('notasocket', 'x'), mem]);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/exists and is not a socket: remove it or choose another --socket path/);
    const far = cli([`${tmp.path}/no/such/dir/s.sock`, mem]);
    expect(far.code).to.equal(2);
    expect(far.stderr).to.match(/cannot be created \(ENOENT\): check that its directory exists/);
    const long = cli([`${tmp.path}/${'x'.repeat(120)}.sock`, mem]);
    expect(long.code).to.equal(2);
    expect(long.stderr).to.match(/the limit is 107: use a shorter path/);
  });

  it('drop-in: exits 1 when the VM it served was refused', async () => {
    const sock = tmp.file('refused.sock');
    const h = await startSnapfault([sock, mem]);
    const sim = await runSim(['--socket', sock, '--mem', mem, '--raw-handshake', tmp.file('bad.json', '[1]'), '--touches', '1']);
    expect(sim.signal).to.equal('SIGKILL');
    expect((await h.waitExit()).code).to.equal(1);
    expect(h.stderr).to.match(/region 0 must be an object/);
  });
});

describe('logs', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('JSON lines when stderr is not a terminal, each VM message carrying the VM; readable lines with --log-format text', async () => {
    const mem = tmp.file('l.img', makeImage(1 << 20));
    const sock = tmp.file('l.sock');
    const h = await startSnapfault([sock, mem]);
    const sim = await runSim(['--socket', sock, '--mem', mem, '--touches', '10', '--print-pid-ready']);
    expect(sim.code).to.equal(0);
    expect((await h.waitExit()).code).to.equal(0);
    const simPid = Number(/ready (\d+)/.exec(sim.stderr)?.[1]);
    const lines = h.stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: string; time: string; msg: string; vm?: number; pid: number });
    for (const l of lines) {
      expect(l.level).to.be.oneOf(['debug', 'info', 'warn', 'error']);
      expect(Date.parse(l.time)).to.be.above(0);
      expect(l.pid).to.be.a('number');
    }
    const ended = lines.find((l) => / ended: /.test(l.msg));
    expect(ended?.vm).to.equal(simPid);
    expect(ended?.msg).to.match(/10 faults/);

    const sock2 = tmp.file('t.sock');
    const t = await startSnapfault(['--log-format', 'text', sock2, mem]);
    expect((await runSim(['--socket', sock2, '--mem', mem, '--touches', '10'])).code).to.equal(0);
    await t.waitExit();
    expect(t.stderr).to.match(/^\S+ snapfault info: listening on /);
    expect(cli(['--log-format', 'xml', 'a', 'b']).stderr).to.match(/--log-format must be json or text, got xml/);
  });

  /** The handler's JSON log lines. */
  type Line = { level: string; msg: string; vm?: number; event?: string } & Record<string, unknown>;
  const jsonLines = (h: Proc): Line[] => h.stderr.trim().split('\n').map((l) => JSON.parse(l) as Line);
  const one = (lines: Line[], event: string): Line => {
    const found = lines.filter((l) => l.event === event);
    expect(found, `${event} in ${JSON.stringify(lines, null, 1)}`).to.have.length(1);
    return found[0];
  };
  const summaryNumbers = ['faults', 'faultsCopied', 'faultsZero', 'faultsRemovedZero', 'bytesCopied', 'removeEvents', 'eagain', 'eexist', 'lateFaults',
    'prefetchedPages', 'prefetchedZeroPages', 'prefetchedBytes', 'chunkHits', 'chunkMisses', 'filledAroundPages', 'lastFaultMs', 'servedMs'];

  it('the end summary and every event carry their numbers as fields, the same numbers the message reads', async () => {
    const mem = tmp.file('f.img', makeImage(1 << 20, { seed: 'log-fields' }));
    const sock = tmp.file('f.sock');
    const h = await startSnapfault([sock, mem]);
    // 256 pages, then the ballooned 16 read again as removed: one REMOVE event.
    const sim = await runSim(['--socket', sock, '--mem', mem, '--verify', '--balloon', '512K:64K', '--balloon-mode', 'after', '--print-pid-ready']);
    expect(sim.code, sim.stderr).to.equal(0);
    expect((await h.waitExit()).code).to.equal(0);
    const simPid = Number(/ready (\d+)/.exec(sim.stderr)?.[1]);
    const lines = jsonLines(h);
    const listening = one(lines, 'listening');
    expect(listening).to.deep.include({ socket: sock, mem, workers: 1, prefetch: null, record: null });
    expect(one(lines, 'vm_connected')).to.deep.include({ vm: simPid, regions: 1, pages4k: 256, pages2m: 0, guestBytes: 1 << 20 });
    const end = one(lines, 'vm_end');
    for (const k of summaryNumbers) expect(end[k], k).to.be.a('number');
    expect(end).to.deep.include({ vm: simPid, reason: 'exited', killed: false, faults: 256 + 16, faultsRemovedZero: 16, removeEvents: 1, prefetchedPages: 0, chunkMisses: 0 });
    expect((end.faultsCopied as number) + (end.faultsZero as number)).to.equal(256);
    expect(end.bytesCopied).to.equal((end.faultsCopied as number) * 4096);
    expect(end.lastFaultMs as number).to.be.above(0).and.at.most(end.servedMs as number);
    // The readable message says the same.
    expect(end.msg).to.include(`${256 + 16} faults (${end.faultsCopied as number} copied, ${end.faultsZero as number} zero, 16 removed)`);
    expect(end.msg).to.include(`last fault at ${(end.lastFaultMs as number).toFixed(1)} ms`);
    // ... as a sentence: one remove, and half a MiB in KiB (it read "1 removes", "0.0 MiB" for small counts).
    expect(end.bytesCopied as number).to.be.below(1 << 20);
    expect(end.msg).to.include(`${Math.round((end.bytesCopied as number) / 1024)} KiB copied, 1 remove, `);
    // Every line names what happened.
    for (const l of lines) expect(l.event, l.msg).to.be.a('string');
  });

  it('prefetch and compressed-snapshot numbers are fields of the end summary too', async () => {
    const mem = tmp.file('c.img', makeImage(1 << 20, { seed: 'log-chunks' }));
    const sfz = tmp.file('c.sfz');
    await pack(mem, sfz);
    const sock = tmp.file('c.sock');
    const h = await startSnapfault([sock, sfz]);
    expect((await runSim(['--socket', sock, '--mem', mem, '--verify', '--pattern', 'random'])).code).to.equal(0);
    expect((await h.waitExit()).code).to.equal(0);
    const c = one(jsonLines(h), 'vm_end');
    expect(c.chunkMisses as number).to.be.above(0);
    expect(c.msg).to.include(`chunks: ${c.chunkMisses as number} decoded, ${c.chunkHits as number} from cache, ${c.filledAroundPages as number} pages filled around`);
    // Every page came in once: faulted, or filled around with another page's chunk.
    expect((c.faults as number) + (c.filledAroundPages as number)).to.equal(256);

    const sock2 = tmp.file('p.sock');
    const p = await startSnapfault(['--prefetch', 'all', sock2, mem]);
    // Connected long enough for `all` to install every page.
    expect((await runSim(['--socket', sock2, '--mem', mem, '--verify', '--pattern', 'random', '--touches', '20', '--hold-ms', '1500'])).code).to.equal(0);
    expect((await p.waitExit()).code).to.equal(0);
    const e = one(jsonLines(p), 'vm_end');
    expect(one(jsonLines(p), 'listening').prefetch).to.equal('all');
    expect((e.prefetchedPages as number) + (e.prefetchedZeroPages as number) + (e.faults as number)).to.equal(256);
    expect(e.prefetchedBytes).to.equal((e.prefetchedPages as number) * 4096);
    expect(e.msg).to.include(`prefetch: ${e.prefetchedPages as number} pages copied`);
    expect(e.msg).to.include(`${e.lateFaults as number} faults arrived while their page was going in`);
  });

  it('--on-fatal disconnect: the error line says the Firecracker was left running with a guest that can no longer fault pages in', async () => {
    const mem = tmp.file('d.img', makeImage(1 << 20, { seed: 'log-disconnect' }));
    // Refused at the handshake: its uffd was already sent.
    const sock = tmp.file('d.sock');
    const h = await startSnapfault(['--on-fatal', 'disconnect', sock, mem]);
    const bad = await runSim(['--socket', sock, '--mem', mem, '--raw-handshake', tmp.file('d.json', '[1]'), '--touches', '0', '--hold-ms', '200', '--print-pid-ready']);
    expect(bad.code).to.equal(0); // alive
    expect((await h.waitExit()).code).to.equal(1);
    const badPid = Number(/ready (\d+)/.exec(bad.stderr)?.[1]);
    const refused = one(jsonLines(h), 'vm_refused');
    expect(refused).to.deep.include({ level: 'error', vm: badPid, reason: 'shape', killed: false, leftRunning: true });
    expect(refused.msg).to.include(`left Firecracker pid ${badPid} running, but its guest can no longer fault pages in`);

    // Fatal while served: the memory file shrinks under a guest that has not touched anything yet.
    const own = tmp.file('own.img', makeImage(1 << 20, { seed: 'log-disconnect' }));
    const sock2 = tmp.file('d2.sock');
    const d = await startSnapfault(['--on-fatal', 'disconnect', '--zero-scan', 'off', sock2, own]);
    const victim = startSim(['--socket', sock2, '--mem', mem, '--pause-ms', '1000', '--timeout-ms', '4000', '--print-pid-ready']);
    await d.waitForStderr(/serving 1 region/);
    truncateSync(own, 0);
    expect((await victim.result).code).to.equal(4); // alive, its guest frozen until its own timeout
    expect((await d.waitExit()).code).to.equal(1);
    const victimPid = Number(/ready (\d+)/.exec(victim.proc.stderr)?.[1]);
    const fatal = one(jsonLines(d), 'vm_end');
    expect(fatal).to.deep.include({ level: 'error', vm: victimPid, reason: 'fatal', killed: false, leftRunning: true });
    expect(fatal.msg).to.match(new RegExp(`could not be read.*; disconnected it: left Firecracker pid ${victimPid} running, but its guest can no longer fault pages in`));
    expect(fatal.faults).to.equal(0);
  });
});
