// Mistyped options and commands: one line in snapfault's own words, exit 2,
// and never a handler started on a socket named after a misspelt command.
import { expect } from 'chai';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { TempDir, makeImage } from '../helpers/images.js';
import { cli } from '../helpers/cli.js';
import { startSnapfault, runSim } from '../helpers/processes.js';

describe('snapfault command line: option errors in its own words', function () {
  this.timeout(60_000);
  const cases: Array<[string[], RegExp]> = [
    [['--bogus', 'a', 'b'], /^snapfault: unknown option --bogus; see snapfault --help\n$/],
    [['--workr', '2', 'a', 'b'], /^snapfault: unknown option --workr: did you mean --workers\?\n$/],
    [['-x', 'a', 'b'], /^snapfault: unknown option -x; see snapfault --help\n$/],
    [['--cache-mib', '-1', 'a', 'b'], /^snapfault: --cache-mib must be a whole number from 1 to 1024, got -1\n$/],
    [['--workers', '-1', 'a', 'b'], /^snapfault: --workers must be a whole number from 1 to 64, got -1\n$/],
    [['--workers', '1.5', 'a', 'b'], /^snapfault: --workers must be a whole number from 1 to 64, got 1\.5\n$/],
    [['--handshake-timeout-ms', '-5', 'a', 'b'], /^snapfault: --handshake-timeout-ms must be a whole number from 1 to 3600000, got -5\n$/],
    [['--socket-mode', '999', 'a', 'b'], /^snapfault: --socket-mode must be an octal mode from 0 to 777, got 999\n$/],
    [['--allow-uid', '-3', 'a', 'b'], /^snapfault: --allow-uid must be a whole number from 0 to 4294967294, got -3\n$/],
    [['a', 'b', '--workers'], /^snapfault: --workers needs a value; see snapfault --help\n$/],
    [['--workers', '--zero-scan', 'off', 'a', 'b'], /^snapfault: --workers needs a value \(--zero-scan is an option\); see snapfault --help\n$/],
    [['--zero-scan', 'maybe', 'a', 'b'], /^snapfault: --zero-scan must be on or off, got maybe\n$/],
    [['--help=yes'], /^snapfault: --help takes no value\n$/],
    [['--log-level', 'info', '--log-level', 'debug', 'a', 'b'], /^snapfault: --log-level given twice: give it once\n$/],
    [['serve', '--socket', 's', '--mem', 'm', '--bogus'], /^snapfault: unknown option --bogus; see snapfault serve --help\n$/],
    [['pack', 'x', '-o'], /^snapfault: -o needs a value; see snapfault pack --help\n$/],
    [['pack', 'x', '-o', '--workers', '2'], /^snapfault: -o needs a value \(--workers is an option; write \.\/--workers for a file of that name\); see snapfault pack --help\n$/],
    [['pack', 'x', '-o', 'y', '--chunk-kib', 'abc'], /^snapfault: --chunk-kib must be a whole number from 4 to 1024, got abc\n$/],
    [['pack', 'x', '-o', 'y', '--workers', '-2'], /^snapfault: --workers must be a whole number from 1 to 64, got -2\n$/],
    [['pack', 'x', '-o', 'y', '--jsno'], /^snapfault: unknown option --jsno; see snapfault pack --help\n$/],
    [['inspect', '--json=yes', 'x'], /^snapfault: --json takes no value\n$/],
    [['report', 'x', '-o', 'a', '--output', 'b'], /^snapfault: -o\/--output given twice: give it once\n$/],
    [['trace', 'merge', 'a', '-o', 'b', '--min-runs', '-1'], /^snapfault: --min-runs must be a whole number from 1 to 1, got -1\n$/],
    [['trace', 'merge', 'a', '-o', 'b', '--mode', 'both'], /^snapfault: --mode must be union or intersection, got both\n$/],
  ];
  for (const [args, re] of cases) {
    it(args.join(' '), () => {
      const r = cli(args);
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.match(re);
      expect(r.stderr).to.not.match(/Option '|ambiguous|To specify|ERR_/);
    });
  }
});

describe('snapfault command line: mistyped commands', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  let mem: string;
  before(() => {
    mem = tmp.file('mem.img', makeImage(1 << 20, { seed: 'typos' }));
  });
  after(() => tmp.remove());

  const cases: Array<[string[], RegExp]> = [
    [['inpsect', 'mem.img'], /^snapfault: unknown command 'inpsect': did you mean inspect\? \(to serve on a socket of that name, write \.\/inpsect\)\n$/],
    [['pakc', 'mem.img', '-o', 'x.sfz'], /^snapfault: unknown command 'pakc': did you mean pack\?/],
    [['serv', '--socket', 's.sock', '--mem', 'mem.img'], /^snapfault: unknown command 'serv': did you mean serve\?/],
    [['--log-level', 'debug', 'verfiy', 'mem.img'], /^snapfault: unknown command 'verfiy': did you mean verify\?/],
    [['Pack', 'mem.img'], /^snapfault: unknown command 'Pack': did you mean pack\?/],
    [['frobnicate'], /^snapfault: unknown command 'frobnicate'; commands: serve, pack, unpack, inspect, verify, trace, report, store, help; or serve one Firecracker with snapfault \[options\] <socket> <memory-file>\n$/],
    [['trace', 'shwo', 'x.trace'], /^snapfault: unknown command 'trace shwo': did you mean trace show\?\n$/],
  ];
  for (const [args, re] of cases) {
    it(args.join(' '), () => {
      const r = cli(args, { cwd: tmp.path, timeout: 5000 });
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.match(re);
      expect(readdirSync(tmp.path).sort()).to.deep.equal(['mem.img']);
    });
  }

  it('a near miss written as a path, or naming an existing socket, is a socket', async () => {
    const sock = join(tmp.path, 'inpsect');
    const h = await startSnapfault([sock, mem]);
    h.kill('SIGKILL'); // leaves a stale socket ./inpsect behind
    await h.exited;
    expect(statSync(sock).isSocket()).to.equal(true);
    const again = await startSnapfault(['inpsect', 'mem.img'], { cwd: tmp.path });
    expect(again.stderr).to.match(/listening on inpsect, serving mem\.img/);
    const sim = await runSim(['--socket', sock, '--mem', mem, '--touches', '20']);
    expect(sim.code, sim.stderr).to.equal(0);
    expect((await again.waitExit()).code).to.equal(0);
  });
});
