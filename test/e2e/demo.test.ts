// `npm run demo` as a new user runs it (after the build): it succeeds, leaves
// what it made in build/example/ and says so, and its lines read cleanly.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { ROOT } from '../helpers/paths.js';

describe('npm run demo', function () {
  this.timeout(180_000);

  it('restores raw and packed, records and replays, and leaves its outputs in build/example/', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'build', 'scripts', 'demo.js')], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).to.equal(0);
    const dir = join(ROOT, 'build', 'example');
    for (const f of ['mem.img', 'mem.sfz', 'working-set.trace', 'replayed.trace', 'replayed.svg']) expect(existsSync(join(dir, f)), f).to.equal(true);
    expect(r.stdout).to.include(`Everything the demo made is in ${dir}`);
    expect(r.stdout).to.match(/0 mismatches/);
    // It once read "1 removes", "0.0 MiB" for 11 pages, and "drawn as ... draws it".
    expect(r.stdout).not.to.match(/\b1 removes\b|\b0\.0 MiB\b|draws it/);
  });
});
