// The command line: help, usage errors, and start-up failures, each a single
// line that names the problem and the fix, with documented exit codes.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { SNAPFAULT } from '../helpers/paths.js';
import { TempDir, makeImage } from '../helpers/images.js';
import { startSnapfault, runSim } from '../helpers/processes.js';

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
});
