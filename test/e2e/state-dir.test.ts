// The state directory's refusals and the drop-in form's takeover: a
// directory in use, a recorded pid that now belongs to another process (never
// touched), a process without the recorded userfaultfd (left alone, its
// record kept), a damaged record and one from a newer snapfault (refused
// before anything is touched); and a drop-in handler SIGKILLed mid-restore
// whose restart takes its one VM over and exits once that Firecracker has.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, statSync, openSync, writeSync, closeSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { TempDir, makeImage, sparseImage } from '../helpers/images.js';
import { cli, expectRefused } from '../helpers/cli.js';
import { Proc, startSnapfault, startSim } from '../helpers/processes.js';
import { SNAPFAULT } from '../helpers/paths.js';
import { stopKeeper } from '../helpers/state.js';
import { VmRecord, recordFileName } from '../../src/state/vm-record.js';
import { processStartTime } from '../../src/state/firecracker-process.js';
import { fileIdentity } from '../../src/snapshot/raw-file.js';

const MiB = 1 << 20;

describe('state directory: refusals, and the drop-in form taking its VM over', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  let mem: string;
  let n = 0;
  const live: Array<Proc | ChildProcess> = [];
  before(() => {
    mem = tmp.file('mem.img', makeImage(8 * MiB, { seed: 'state-dir' }));
  });
  const dirs: string[] = [];
  afterEach(() => {
    for (const p of live.splice(0)) p.kill('SIGKILL');
    for (const d of dirs.splice(0)) stopKeeper(d);
  });
  after(() => tmp.remove());

  const fresh = (): { sock: string; state: string } => {
    const state = tmp.file(`state${n}`);
    dirs.push(state);
    return { sock: tmp.file(`s${n++}.sock`), state };
  };
  const serve = (sock: string, state: string): string[] => ['serve', '--socket', sock, '--mem', mem, '--state-dir', state, '--log-format', 'text'];

  /** A record of process `pid` as if snapfault had served it, with the given start time. */
  function writeRecord(state: string, pid: number, startTime: bigint): string {
    const st = statSync(mem);
    VmRecord.create(state, {
      pid, startTime, uffdDev: 1, uffdIno: 12345n, handshakeMs: Date.now(), snapshotPath: mem, snapshotIdentity: fileIdentity(st),
      regions: [{ base: 0x7f0000000000n, size: BigInt(st.size), offset: 0n, pageSize: 4096 }],
    }).close(false);
    return `${state}/${recordFileName(pid)}`;
  }

  function bystander(): ChildProcess {
    const p = spawn('sleep', ['60'], { stdio: 'ignore' });
    live.push(p);
    return p;
  }

  it('a second snapfault on a state directory in use refuses to start, in one line', async () => {
    const { sock, state } = fresh();
    const h = await startSnapfault(serve(sock, state));
    live.push(h);
    const r = cli(serve(tmp.file(`other${n}.sock`), state));
    expectRefused(r, new RegExp(`state directory .* is in use by another snapfault \\(pid ${h.pid}\\): stop it, start this one with --takeover .* or with --standby`), 'in use');
  });

  it('--takeover without --state-dir is a usage error', () => {
    const { sock } = fresh();
    expectRefused(cli(['serve', '--socket', sock, '--mem', mem, '--takeover']), /--takeover needs --state-dir DIR/, 'takeover alone');
  });

  it('--standby without --state-dir, with --takeover, or in the drop-in form is a usage error', () => {
    const { sock, state } = fresh();
    expectRefused(cli(['serve', '--socket', sock, '--mem', mem, '--standby']), /--standby needs --state-dir DIR/, 'standby alone');
    expectRefused(cli([...serve(sock, state), '--standby', '--takeover']), /--standby waits .* --takeover asks it to hand over now: choose one/, 'both');
    expectRefused(cli(['--state-dir', state, '--standby', sock, mem]), /--standby belongs to `snapfault serve`/, 'drop-in');
  });

  it('a recorded pid now used by another process is never touched; its record is removed', async () => {
    const { sock, state } = fresh();
    const p = bystander();
    await new Promise((r) => p.once('spawn', r));
    const start = processStartTime(p.pid!)!;
    const file = writeRecord(stateFolder(state), p.pid!, start + 7n);
    const h = await startSnapfault(serve(sock, state));
    live.push(h);
    expect(h.stderr).to.match(new RegExp(`VM pid ${p.pid}: not taken over: pid ${p.pid} now belongs to another process .*left alone; its record is removed`));
    expect(existsSync(file)).to.equal(false);
    expect(p.exitCode).to.equal(null);
    expect(p.signalCode).to.equal(null);
  });

  it('a live process without the recorded userfaultfd is left alone, and its record kept', async () => {
    const { sock, state } = fresh();
    const p = bystander();
    await new Promise((r) => p.once('spawn', r));
    const file = writeRecord(stateFolder(state), p.pid!, processStartTime(p.pid!)!);
    const h = await startSnapfault(serve(sock, state));
    live.push(h);
    expect(h.stderr).to.match(new RegExp(`VM pid ${p.pid}: not taken over: no userfaultfd of Firecracker pid ${p.pid} matches the recorded one.*its record stays`));
    expect(existsSync(file)).to.equal(true);
    expect(p.exitCode).to.equal(null);
  });

  it('a damaged record, or one from a newer snapfault, stops the start before anything is touched', () => {
    for (const [offset, byte, re] of [[300, 0x41, /state record .* is damaged \(checksum mismatch\): .*move the file away/], [8, 2, /state record .* was written by a newer snapfault \(record version 2, this one reads 1\)/]] as const) {
      const { sock, state } = fresh();
      const p = bystander();
      const file = writeRecord(stateFolder(state), p.pid!, processStartTime(p.pid!) ?? 1n);
      const fd = openSync(file, 'r+');
      writeSync(fd, Buffer.from([byte]), 0, 1, offset);
      closeSync(fd);
      expectRefused(cli(serve(sock, state)), re, `record changed at ${offset}`);
      expect(existsSync(file)).to.equal(true);
      expect(p.exitCode).to.equal(null);
    }
  });

  for (const from of ['a memory file', 'a store'] as const) {
  it(`the drop-in form, SIGKILLed mid-restore and started again, takes its VM over and exits 0 when it has gone (${from})`, async () => {
    const { sock, state } = fresh();
    let served = mem;
    const storeArgs: string[] = [];
    if (from === 'a store') {
      const store = tmp.file(`store-${sock.split('/').pop()}`);
      expect(cli(['store', 'put', mem, 'snap', '--store', store]).code).to.equal(0);
      served = 'snap';
      storeArgs.push('--store', store);
    }
    const args = ['--state-dir', state, '--log-format', 'text', ...storeArgs, sock, served];
    const first = await startSnapfault(args);
    live.push(first);
    const sim = startSim(['--socket', sock, '--mem', mem, '--churn-ms', '3000', '--threads', '2', '--churn-window', '1024', '--verify', '--churn-stuck-ms', '20000']);
    live.push(sim.proc);
    await first.waitForStderr(/serving 1 region/);
    await new Promise((r) => setTimeout(r, 500));
    first.kill('SIGKILL');
    await first.exited;
    const second = new Proc(SNAPFAULT, ['--metrics', '127.0.0.1:0', ...args]);
    live.push(second);
    const url = (await second.waitForStderr(/metrics on (http:\/\/[^\s"]+)/))[1];
    await second.waitForStderr(/taken over from the previous handler/);
    expect(await (await fetch(url)).text()).to.match(/^snapfault_takeovers_total\{outcome="taken"\} 1$/m);
    const r = await sim.result;
    expect(r.code, `${r.stderr}\n${second.stderr}`).to.equal(0);
    expect(r.json?.mismatches).to.equal(0);
    const exit = await second.waitExit(10_000);
    expect(exit.code, second.stderr).to.equal(0);
    expect(second.stderr).to.match(/taken over from the previous handler/);
    expect(second.stderr).to.match(/ended: Firecracker exited/);
    expect(second.stderr).not.to.match(/info: listening on/); // its one VM was taken over: no socket to serve
    expect(readdirSync(state).filter((f) => f.startsWith('vm-'))).to.deep.equal([]);
  });
  }

  it('a VM taken over keeps its zero ranges out of the prefetch: --prefetch all on the new handler copies every data page past them', async () => {
    // 8 MiB of data, a 48 MiB hole (a zero range the first handler takes out of the uffd), 8 MiB of data.
    const sparse = sparseImage(tmp.file('zero-range.img'), 64 * MiB, [{ at: 0, bytes: 8 * MiB, seed: 'zr0' }, { at: 56 * MiB, bytes: 8 * MiB, seed: 'zr56' }]);
    const { sock, state } = fresh();
    const args = ['--state-dir', state, '--log-format', 'text', sock, sparse];
    const first = await startSnapfault(args);
    live.push(first);
    // The guest idles while the handlers change, then reads every page.
    const sim = startSim(['--socket', sock, '--mem', sparse, '--verify', '--pause-ms', '4000', '--pattern', 'seq']);
    live.push(sim.proc);
    await first.waitForStderr(/serving 1 region/);
    await untilUnregistered(sim.proc.pid!, 48 * MiB);
    first.kill('SIGKILL');
    await first.exited;
    const second = new Proc(SNAPFAULT, ['--prefetch', 'all', ...args]);
    live.push(second);
    await second.waitForStderr(/taken over from the previous handler/);
    const r = await sim.result;
    expect(r.code, `${r.stderr}\n${second.stderr}`).to.equal(0);
    expect(r.json?.mismatches).to.equal(0);
    expect((await second.waitExit(10_000)).code, second.stderr).to.equal(0);
    // Without the ranges marked, its first copy into the hole met ENOENT and the prefetch stopped there, short of the last 8 MiB.
    expect(second.stderr).to.match(/prefetch: 4096 pages copied \(16\.0 MiB\)/);
    expect(second.stderr).to.match(/ended: Firecracker exited; 0 faults/);
  });
});

/** Waits until a mapping of `bytes` in process `pid` is out of its userfaultfd (no `um` in its smaps VmFlags). */
async function untilUnregistered(pid: number, bytes: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
    for (const vma of smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
      const [from, to] = vma.split(' ')[0].split('-').map((h) => parseInt(h, 16));
      if (to - from === bytes && !/^VmFlags:.*\bum\b/m.test(vma)) return;
    }
    if (Date.now() > deadline) throw new Error(`no ${bytes}-byte mapping of pid ${pid} left its userfaultfd`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The state directory, made as --state-dir makes it (VmRecord.create writes into an existing folder). */
function stateFolder(state: string): string {
  mkdirSync(state, { recursive: true, mode: 0o700 });
  return state;
}
