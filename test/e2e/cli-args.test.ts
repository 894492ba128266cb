// Mistyped options: one line in snapfault's own words, exit 2.
import { expect } from 'chai';
import { cli } from '../helpers/cli.js';

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
