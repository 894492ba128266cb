// Nothing a user types destroys data: every output path is checked before any
// work (a folder that exists and is writable, not one of the command's inputs
// or the memory file being served however it is spelled, not a file of another
// kind without --force) and written atomically; an input that is a folder or
// is missing is one line naming it, exit 2.
import { expect } from 'chai';
import { type SpawnSyncOptions } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync, linkSync, chmodSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { TempDir, makeImage, prng } from '../helpers/images.js';
import { cli, expectRefused, expectNoLeftovers, digest } from '../helpers/cli.js';
import { Proc, startSnapfault, runSim } from '../helpers/processes.js';
import { SNAPFAULT } from '../helpers/paths.js';
import { writeTrace, setRecord, RECORD, RECORD_WORDS } from '../../src/trace/trace-file.js';

const MiB = 1 << 20;
const IMAGE_BYTES = 1 * MiB;

describe('snapfault command line: output paths', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  let mem: string;
  let sfz: string;
  let ws: string;
  let notes: string;
  let adir: string;
  before(() => {
    mem = tmp.file('mem.img', makeImage(IMAGE_BYTES, { seed: 'safety' }));
    sfz = tmp.file('mem.sfz');
    expect(cli(['pack', mem, '-o', sfz]).code).to.equal(0);
    const records = new Uint32Array(3 * RECORD_WORDS);
    for (let i = 0; i < 3; i++) setRecord(records, i * RECORD_WORDS, i * 7, 1, i * 1000, RECORD.FAULT_COPY);
    ws = tmp.file('ws.trace');
    writeTrace(ws, { snapshotBytes: BigInt(IMAGE_BYTES), startedMs: Date.now(), flags: 0, records });
    notes = tmp.file('notes.txt', 'my notes, not a snapfault file\n');
    adir = join(tmp.path, 'adir');
    mkdirSync(adir);
  });
  after(() => tmp.remove());

  it('never writes over one of its inputs or the memory file being served, however the path is spelled, --force or not', () => {
    const hard = join(tmp.path, 'hard.img');
    linkSync(mem, hard);
    const sub = join(tmp.path, 'sub');
    mkdirSync(sub, { recursive: true });
    const sock = join(tmp.path, 'v.sock');
    const cases: Array<[string[], string, RegExp]> = [
      [['pack', mem, '-o', mem], mem, /-o (\S+)mem\.img: is the memory file to pack \(\1mem\.img\): choose another path/],
      [['pack', mem, '-o', `${sub}/../mem.img`], mem, /-o .*sub\/\.\.\/mem\.img: is the same file as the memory file to pack \(.*mem\.img\): choose another path/],
      [['pack', mem, '-o', hard], mem, /-o .*hard\.img: is the same file as the memory file to pack \(.*mem\.img\)/],
      [['pack', mem, '-o', mem, '--force'], mem, /is the memory file to pack/],
      [['unpack', sfz, '-o', sfz], sfz, /-o .*mem\.sfz: is the compressed snapshot to unpack/],
      [['unpack', sfz, '-o', sfz, '--force'], sfz, /is the compressed snapshot to unpack/],
      [['report', ws, '-o', ws], ws, /-o .*ws\.trace: is the trace to draw/],
      [['trace', 'merge', ws, '-o', ws], ws, /-o .*ws\.trace: is a trace to merge/],
      [['trace', 'merge', ws, ws, '-o', ws, '--force'], ws, /is a trace to merge/],
      [['--record', mem, sock, mem], mem, /--record .*mem\.img: is the memory file being served/],
      [['--record', hard, '--force', sock, mem], mem, /--record .*hard\.img: is the same file as the memory file being served/],
      [['--prefetch', `replay:${ws}`, '--record', ws, sock, mem], ws, /--record .*ws\.trace: is the trace being replayed/],
    ];
    for (const [args, file, re] of cases) {
      const before = digest(file);
      expectRefused(cli(args), re, args.join(' '));
      expect(digest(file), args.join(' ')).to.equal(before);
      expect(existsSync(sock), args.join(' ')).to.equal(false);
      expectNoLeftovers(tmp.path);
    }
  });

  it("'-' is not taken for a file name: standard output is not supported", () => {
    expectRefused(cli(['pack', mem, '-o', '-'], { cwd: tmp.path }), /^snapfault: -o -: standard output is not supported/, 'pack -o -');
    expect(existsSync(join(tmp.path, '-'))).to.equal(false);
  });

  it('an interrupted pack leaves the file it would have replaced as it was, and no temporary', async () => {
    const big = tmp.file('big.img', prng('interrupted', 64 * MiB)); // random pages: the slowest to pack
    const out = tmp.file('big.sfz', readFileSync(sfz));
    const before = digest(out);
    const p = new Proc(SNAPFAULT, ['pack', big, '-o', out, '--workers', '1']);
    for (const end = Date.now() + 10_000; !readdirSync(tmp.path).some((f) => f.includes('partial')); ) {
      if (Date.now() > end || p.child.exitCode !== null) throw new Error(`no temporary seen while packing: ${p.stderr}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    p.kill('SIGINT');
    const exit = await p.waitExit();
    expect(exit.signal, p.stderr).to.equal('SIGINT');
    expect(digest(out)).to.equal(before);
    expectNoLeftovers(tmp.path);
  });

  it('writes over an existing file of another kind only with --force', () => {
    const cases: Array<[(out: string) => string[], RegExp]> = [
      [(out) => ['pack', mem, '-o', out], /-o .*: exists and is not a snapfault compressed snapshot: give --force to replace it, or choose another path/],
      [(out) => ['unpack', sfz, '-o', out], /-o .*: exists \(a memory file has no header to recognise it by\): give --force to replace it, or choose another path/],
      [(out) => ['trace', 'merge', ws, '-o', out], /-o .*: exists and is not a snapfault trace: give --force/],
      [(out) => ['report', ws, '-o', out], /-o .*: exists and is not an SVG file: give --force/],
      [(out) => ['--record', out, join(tmp.path, 'r.sock'), mem], /--record .*: exists and is not a snapfault trace: give --force/],
    ];
    let n = 0;
    for (const [args, re] of cases) {
      const out = tmp.file(`precious${n++}.txt`, readFileSync(notes));
      expectRefused(cli(args(out)), re, args(out).join(' '));
      expect(readFileSync(out, 'utf8')).to.equal('my notes, not a snapfault file\n');
      expectNoLeftovers(tmp.path);
      if (args(out)[0] === '--record') continue; // needs a Firecracker to get as far as writing
      const forced = cli([...args(out), '--force']);
      expect(forced.code, forced.stderr).to.equal(0);
      expect(readFileSync(out, 'utf8')).to.not.equal('my notes, not a snapfault file\n');
    }
    // The memory file being served is the trace's subject, not something of another kind to replace.
    expect(cli(['--record', mem, '--force', join(tmp.path, 'f.sock'), mem]).code).to.equal(2);
  });

  it('--record checks again when the trace is written: a file put there meanwhile is left as it is', async () => {
    const out = join(tmp.path, 'late.trace');
    const sock = join(tmp.path, 'late.sock');
    const h = await startSnapfault(['--record', out, sock, mem]);
    writeFileSync(out, 'written meanwhile\n');
    const sim = await runSim(['--socket', sock, '--mem', mem, '--touches', '10']);
    expect(sim.code, sim.stderr).to.equal(0);
    expect((await h.waitExit()).code).to.equal(0);
    expect(readFileSync(out, 'utf8')).to.equal('written meanwhile\n');
    expect(h.stderr).to.match(/--record \S+late\.trace: exists and is not a snapfault trace: give --force to replace it/);
    expectNoLeftovers(tmp.path);
  });

  it('replaces a file of its own kind, and an empty file, without --force', () => {
    const out = tmp.file('again.sfz');
    expect(cli(['pack', mem, '-o', out]).code).to.equal(0);
    const twice = cli(['pack', mem, '-o', out, '--chunk-kib', '64']);
    expect(twice.code, twice.stderr).to.equal(0);
    const merged = tmp.file('merged.trace');
    expect(cli(['trace', 'merge', ws, '-o', merged]).code).to.equal(0);
    expect(cli(['trace', 'merge', ws, ws, '-o', merged]).code).to.equal(0);
    const svg = tmp.file('r.svg');
    expect(cli(['report', ws, '-o', svg]).code).to.equal(0);
    expect(cli(['report', ws, '-o', svg]).code).to.equal(0);
    const empty = tmp.file('empty.img', '');
    expect(cli(['unpack', sfz, '-o', empty]).code).to.equal(0);
    expect(digest(empty)).to.equal(digest(mem));
    expectNoLeftovers(tmp.path);
  });

  describe('the same folder checks and messages for every output path, before any work', () => {
    // As root every folder is writable: run the tools as nobody against a folder only root may write to.
    const asUser: SpawnSyncOptions = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    let ro: string;
    before(() => {
      chmodSync(tmp.path, 0o755);
      for (const f of [mem, sfz, ws]) chmodSync(f, 0o644);
      ro = join(tmp.path, 'ro');
      mkdirSync(ro, { mode: 0o555 });
      chmodSync(ro, 0o555);
    });
    const outputs: Array<[string, (out: string) => string[]]> = [
      ['pack', (out) => ['pack', mem, '-o', out]],
      ['unpack', (out) => ['unpack', sfz, '-o', out]],
      ['trace merge', (out) => ['trace', 'merge', ws, '-o', out]],
      ['report', (out) => ['report', ws, '-o', out]],
      ['--record (drop-in)', (out) => ['--record', out, join(tmp.path, 'never.sock'), mem]],
      ['--record (serve)', (out) => ['serve', '--socket', join(tmp.path, 'never.sock'), '--mem', mem, '--record', out.replace(/\.out$/, '-{pid}.out')]],
    ];
    for (const [name, args] of outputs) {
      it(name, () => {
        const opt = name.startsWith('--record') ? '--record' : '-o';
        const missing = cli(args(join(tmp.path, 'nodir', 'x.out')));
        expectRefused(missing, new RegExp(`^snapfault: ${opt} \\S+: the folder \\S+/nodir does not exist: create it first\\n$`), `${name}: missing folder`);
        const notFolder = cli(args(join(notes, 'x.out')));
        expectRefused(notFolder, new RegExp(`^snapfault: ${opt} \\S+: \\S+notes\\.txt is not a folder: check the path\\n$`), `${name}: a file as the folder`);
        if (!name.includes('serve')) {
          const folder = cli(args(adir));
          expectRefused(folder, new RegExp(`^snapfault: ${opt} \\S+adir: is a folder: give the path of a file to write, e.g. \\S+adir/`), `${name}: a folder as the output`);
        }
        const readOnly = cli(args(join(ro, 'x.out')), asUser);
        expectRefused(readOnly, new RegExp(`^snapfault: ${opt} \\S+: the folder \\S+/ro is not writable: choose another folder\\n$`), `${name}: read-only folder`);
        expect(readdirSync(adir)).to.deep.equal([]);
        expect(existsSync(join(tmp.path, 'never.sock'))).to.equal(false);
        expectNoLeftovers(tmp.path);
      });
    }
  });

  it('a folder, a missing file or a file of the wrong kind as an input: one line naming it, exit 2', () => {
    const cases: Array<[string[], RegExp]> = [
      [['pack', adir, '-o', tmp.file('o1.sfz')], /^snapfault: snapshot \S+adir: is a folder, not a file: give the path of the snapshot file\n$/],
      [['unpack', adir, '-o', tmp.file('o2.img')], /^snapfault: snapshot \S+adir: is a folder, not a file/],
      [['inspect', adir], /^snapfault: snapshot \S+adir: is a folder, not a file/],
      [['verify', adir], /^snapfault: snapshot \S+adir: is a folder, not a file/],
      [['verify', sfz, '--against', adir], /^snapfault: --against \S+adir: is a folder, not a file: give the original memory file\n$/],
      [['verify', sfz, '--against', join(tmp.path, 'gone.img')], /^snapfault: --against \S+gone\.img: no such file: give the original memory file\n$/],
      [['verify', join(tmp.path, 'gone.sfz')], /^snapfault: snapshot \S+gone\.sfz: no such file: check the memory file path\n$/],
      [['verify', mem], /^snapfault: snapshot \S+mem\.img: is not a snapfault compressed snapshot \(it may be a raw memory file\)\n$/],
      [['report', adir, '-o', tmp.file('o3.svg')], /^snapfault: trace \S+adir is a folder, not a trace file\n$/],
      [['trace', 'show', adir], /^snapfault: trace \S+adir is a folder, not a trace file\n$/],
    ];
    for (const [args, re] of cases) expectRefused(cli(args), re, args.join(' '));
    expectNoLeftovers(tmp.path);
  });
});
