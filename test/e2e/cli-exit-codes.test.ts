// Every command's exit codes, as the README documents them: 0 success; 1 a
// fault found (verify) or the served VM failed; 2 bad usage or unusable input.
import { expect } from 'chai';
import { readFileSync, openSync, readSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { SNAPFAULT } from '../helpers/paths.js';
import { TempDir, makeImage } from '../helpers/images.js';
import { cli } from '../helpers/cli.js';
import { writeTrace, setRecord, RECORD, RECORD_WORDS } from '../../src/trace/trace-file.js';

const IMAGE_BYTES = 1 << 20;

/** Flips one byte of a file. */
function poke(path: string, at: number): void {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0x5a;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

describe('snapfault command line: exit codes', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  after(() => tmp.remove());
  let mem: string;
  let sfz: string;
  let damaged: string;
  let other: string;
  let ws: string;
  before(() => {
    mem = tmp.file('mem.img', makeImage(IMAGE_BYTES, { seed: 'codes' }));
    sfz = tmp.file('mem.sfz');
    expect(cli(['pack', mem, '-o', sfz]).code).to.equal(0);
    damaged = tmp.file('damaged.sfz', readFileSync(sfz));
    poke(damaged, 128 + (IMAGE_BYTES / 4096) * 4 + 100); // inside the first chunk's bytes
    other = tmp.file('other.img', readFileSync(mem));
    poke(other, 3 * 4096 + 5);
    const records = new Uint32Array(RECORD_WORDS);
    setRecord(records, 0, 1, 1, 10, RECORD.FAULT_COPY);
    ws = tmp.file('ws.trace');
    writeTrace(ws, { snapshotBytes: BigInt(IMAGE_BYTES), startedMs: Date.now(), flags: 0, records });
  });

  // README, Exit codes: 0 success; 1 a fault found (verify) or the served VM failed; 2 bad usage or unusable input.
  const table: Array<[string, () => string[], number]> = [
    ['--help', () => ['--help'], 0],
    ['--version', () => ['--version'], 0],
    ['help', () => ['help'], 0],
    ['help pack', () => ['help', 'pack'], 0],
    ['no arguments', () => [], 2],
    ['help on no command', () => ['help', 'nope'], 2],
    ['serve --help', () => ['serve', '--help'], 0],
    ['serve without --mem', () => ['serve', '--socket', tmp.file('s.sock')], 2],
    ['pack --help', () => ['pack', '--help'], 0],
    ['pack', () => ['pack', mem, '-o', tmp.file('p.sfz')], 0],
    ['pack without -o', () => ['pack', mem], 2],
    ['pack a missing file', () => ['pack', tmp.file('none.img'), '-o', tmp.file('p2.sfz')], 2],
    ['unpack --help', () => ['unpack', '--help'], 0],
    ['unpack', () => ['unpack', sfz, '-o', tmp.file('u.img')], 0],
    ['unpack a raw file', () => ['unpack', mem, '-o', tmp.file('u2.img')], 2],
    ['unpack a damaged file', () => ['unpack', damaged, '-o', tmp.file('u3.img')], 2],
    ['inspect --help', () => ['inspect', '--help'], 0],
    ['inspect', () => ['inspect', sfz], 0],
    ['inspect a raw file', () => ['inspect', mem], 2],
    ['verify --help', () => ['verify', '--help'], 0],
    ['verify', () => ['verify', sfz], 0],
    ['verify --against the original', () => ['verify', sfz, '--against', mem], 0],
    ['verify a missing file', () => ['verify', tmp.file('none.sfz')], 2],
    ['verify a raw file', () => ['verify', mem], 2],
    ['verify --against a missing file', () => ['verify', sfz, '--against', tmp.file('none.img')], 2],
    ['verify without a file', () => ['verify'], 2],
    ['verify a damaged file: a fault found', () => ['verify', damaged], 1],
    ['verify --against a different file: a fault found', () => ['verify', sfz, '--against', other], 1],
    ['trace with no subcommand', () => ['trace'], 2],
    ['trace --help', () => ['trace', '--help'], 0],
    ['trace show --help', () => ['trace', 'show', '--help'], 0],
    ['trace merge --help', () => ['trace', 'merge', '--help'], 0],
    ['trace show', () => ['trace', 'show', ws], 0],
    ['trace show a missing trace', () => ['trace', 'show', tmp.file('none.trace')], 2],
    ['trace show a file that is not a trace', () => ['trace', 'show', mem], 2],
    ['trace merge', () => ['trace', 'merge', ws, '-o', tmp.file('m.trace')], 0],
    ['trace merge without -o', () => ['trace', 'merge', ws], 2],
    ['trace frob', () => ['trace', 'frob'], 2],
    ['report --help', () => ['report', '--help'], 0],
    ['report', () => ['report', ws, '-o', tmp.file('r.svg')], 0],
    ['report a file that is not a trace', () => ['report', mem, '-o', tmp.file('r2.svg')], 2],
    ['drop-in: a missing memory file', () => [tmp.file('d.sock'), tmp.file('none.img')], 2],
  ];
  for (const [what, args, code] of table) {
    it(`${what}: exit ${code}`, () => {
      const r = cli(args());
      expect(r.code, r.stderr).to.equal(code);
      if (code === 0) expect(r.stderr).to.equal('');
      else expect(r.stderr).to.match(/^snapfault: [^\n]+\n$/);
    });
  }
  it('a Node.js older than 20.12 (no crypto.hash): exit 2, one line naming the version needed', () => {
    const preload = tmp.file('old-node.cjs');
    writeFileSync(preload, "Object.defineProperty(process.versions, 'node', { value: '20.11.1' });\n");
    const r = spawnSync(process.execPath, ['--require', preload, SNAPFAULT, '--help'], { encoding: 'utf8' });
    expect(r.status).to.equal(2);
    expect(r.stderr).to.equal('snapfault: needs Node.js 20.12 or later, this is 20.11.1: install a newer Node.js\n');
  });
});
