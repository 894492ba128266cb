// The test helpers clean up after themselves however a run ends: a TempDir
// whose `after` hook never ran (mocha --grep, --bail, a crash) is removed when
// the process exits.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/paths.js';

describe('test helpers', function () {
  this.timeout(60_000);
  let home = '';
  beforeEach(() => {
    // The children's TMPDIR: what they leave behind is theirs alone, whatever else runs on the machine.
    home = mkdtempSync(join(tmpdir(), 'snapfault-tempdir-check-'));
  });
  afterEach(() => rmSync(home, { recursive: true, force: true }));

  const images = join(ROOT, 'build', 'test', 'helpers', 'images.js');
  const endings: Array<[string, string]> = [
    ['the process ends on its own', ''],
    ['the process calls process.exit()', 'process.exit(3);'],
    ['an exception goes uncaught', 'throw new Error("boom");'],
  ];
  for (const [how, end] of endings) {
    it(`TempDir folders not removed by the test are removed when ${how}`, () => {
      const script = `import { TempDir } from ${JSON.stringify(images)};\nconst t = new TempDir();\nt.file('a', 'x');\nnew TempDir();\n${end}`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, TMPDIR: home }, encoding: 'utf8' });
      expect(r.error).to.equal(undefined);
      expect(readdirSync(home), r.stderr).to.deep.equal([]);
    });
  }

  it('mocha --grep that skips every test (and so every after hook) leaves no folder', () => {
    const mocha = join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js');
    const r = spawnSync(process.execPath, [mocha, '--no-config', '--grep', 'no test is named like this', join(ROOT, 'build', 'test', 'e2e', 'cli.test.js')], {
      env: { ...process.env, TMPDIR: home }, encoding: 'utf8',
    });
    expect(r.status, r.stderr).to.equal(0);
    expect(readdirSync(home)).to.deep.equal([]);
  });
});
