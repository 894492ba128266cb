// Prefetch policies end to end, through real userfaultfd: record a restore,
// replay its working set, readahead, all, a custom policy module; REMOVE and
// EEXIST races with the prefetch worker; several VMs; bad policies refused.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SNAPFAULT, ROOT, SNAPFAULT_FAULTY } from '../helpers/paths.js';
import { TempDir, makeImage, sparseImage } from '../helpers/images.js';
import { startSnapfault, runSim, startSim, Proc, type SimResult } from '../helpers/processes.js';
import { readTrace, RECORD, RECORD_WORDS, FIELD, SOURCE } from '../../src/trace/trace-file.js';
import { summarize } from '../../src/trace/summary.js';
import { pack } from '../../src/compressed/pack.js';

const MiB = 1 << 20;
const PAGES = (64 * MiB) / 4096;
const EXAMPLE = join(ROOT, 'build', 'examples', 'fault-around.wasm');

interface Restore {
  sim: SimResult;
  log: string;
  code: number | null;
}

describe('prefetch policies', function () {
  this.timeout(120_000);
  const tmp = new TempDir();
  let mem: string;
  let packed: string;
  let n = 0;

  before(async () => {
    mem = tmp.file('mem.img', makeImage(64 * MiB, { seed: 'prefetch' }));
    packed = tmp.file('mem.sfz');
    await pack(mem, packed);
  });
  after(() => tmp.remove());

  async function restore(handlerArgs: string[], simArgs: string[], file = mem): Promise<Restore> {
    const sock = tmp.file(`p${n++}.sock`);
    const h = await startSnapfault(['--log-format', 'text', ...handlerArgs, sock, file]);
    const sim = await runSim(['--socket', sock, '--mem', mem, '--verify', ...simArgs]);
    const exit = await h.waitExit();
    return { sim, log: h.stderr, code: exit.code };
  }

  function expectClean(r: Restore): void {
    expect(r.sim.code, `simulator: ${r.sim.stderr}\nhandler:\n${r.log}`).to.equal(0);
    expect(r.sim.json?.mismatches).to.equal(0);
    expect(r.code, r.log).to.equal(0);
    expect(r.log).to.not.match(/warn|error/);
  }

  /** Demand faults of the VM, from its summary line. */
  function faults(log: string): number {
    const m = /(\d+) faults? \(/.exec(log);
    if (!m) throw new Error(`no summary in:\n${log}`);
    return Number(m[1]);
  }

  /** A guest idle for a moment after the restore: the prefetch starts ahead of
   * it even on a loaded machine, where a guest that starts at once can take
   * every page itself before the prefetch thread first runs (CI saw it). */
  const IDLE_FIRST = ['--pause-ms', '300'];

  function prefetched(log: string): number {
    const m = /prefetch: (\d+) pages copied .* and (\d+) zero pages mapped/.exec(log);
    if (!m) throw new Error(`no prefetch summary in:\n${log}`);
    return Number(m[1]) + Number(m[2]);
  }

  describe('record and replay', () => {
    let truth: string;

    before(async () => {
      truth = tmp.file('hot.trace');
      const r = await restore(['--record', truth], ['--pattern', 'hot', '--seed', '11']);
      expectClean(r);
      expect(r.log).to.match(/trace written to/);
    });

    it('--record writes every fault of the restore, in snapshot pages', () => {
      const t = readTrace(truth);
      expect(t.snapshotBytes).to.equal(BigInt(64 * MiB));
      const s = summarize(t);
      expect(s.touchedPages).to.equal(Math.round(PAGES * 0.1));
      expect(s.faults.copy + s.faults.zero).to.equal(s.touchedPages);
      expect(s.prefetchedPages + s.prefetchedZeroPages).to.equal(0);
      expect(s.recordedWhilePrefetching).to.equal(false);
      // Every copied page came from the plain memory file; zero pages have no source.
      expect(s.sources.faults).to.deep.equal({ file: s.faults.copy });
      for (let o = 0; o < t.records.length; o += RECORD_WORDS) expect(t.records[o + FIELD.PAGE]).to.be.below(PAGES);
    });

    it('replay installs the recorded working set ahead of the guest: few demand faults left, every byte right', async () => {
      const out = tmp.file('replayed.trace');
      const r = await restore(['--prefetch', `replay:${truth}`, '--record', out], ['--pattern', 'hot', '--seed', '11', ...IDLE_FIRST]);
      expectClean(r);
      // How many pages arrive before a busy guest asks is a race (npm run bench
      // measures it); what must hold is that replay fetched only needed pages
      // and that each page came in exactly one way or the other.
      const left = faults(r.log);
      const score = summarize(readTrace(out), readTrace(truth)).against!;
      expect(score.hitRate).to.equal(1); // replaying exactly what the same guest touches
      expect(score.hits, r.log).to.be.above(0);
      expect(score.hits + left, r.log).to.equal(score.needed);
      // And a person can look at it.
      const svgPath = tmp.file('replayed.svg');
      const rep = spawnSync(SNAPFAULT, ['report', out, '-o', svgPath], { encoding: 'utf8' });
      expect(rep.status, rep.stderr).to.equal(0);
      const svg = readFileSync(svgPath, 'utf8');
      expect(svg).to.match(/^<svg /);
      expect(svg).to.include('replayed.trace');
      expect(svg).to.include('prefetched (copied)');
      expect(svg).to.match(/class="prefetch-curve"/);
      const bad = spawnSync(SNAPFAULT, ['report', tmp.file('none.trace'), '-o', svgPath], { encoding: 'utf8' });
      expect(bad.status).to.equal(2);
      expect(bad.stderr).to.match(/^snapfault: trace .*none.trace does not exist; record one with --record/);
    });

    it('replays from a compressed snapshot too, its chunks decoded ahead before the VM came; the trace says which copies decoded a chunk and which found it in memory', async () => {
      const out = tmp.file('replayed-packed.trace');
      const r = await restore(['--prefetch', `replay:${truth}`, '--record', out, '--cache-mib', '128'], ['--pattern', 'hot', '--seed', '11', ...IDLE_FIRST], packed);
      expectClean(r);
      expect(prefetched(r.log), r.log).to.be.above(0);
      // Between the handler's start and the VM, the main thread decoded the trace's chunks (src/snapshot/decode-ahead.ts).
      const ahead = /decoded (\d+) chunks of the prefetch policy's ahead, before the first VM/.exec(r.log);
      expect(ahead, r.log).not.to.equal(null);
      const t = readTrace(out);
      const s = summarize(t);
      const decoded = (s.sources.prefetched.local ?? 0) + (s.sources.faults.local ?? 0);
      // How many before the handshake is a race with the simulator's start; the VM's threads decode the rest, once each.
      expect(Number(ahead![1])).to.be.above(0);
      expect(s.sources.prefetched.memory, JSON.stringify(s.sources)).to.be.above(0);
      expect(Object.keys({ ...s.sources.prefetched, ...s.sources.faults }).every((k) => k === 'local' || k === 'memory'), JSON.stringify(s.sources)).to.equal(true);
      // A chunk is decoded once (the cache holds twice the 64 MiB): at most one record a chunk says local.
      let localRecords = 0;
      for (let o = 0; o < t.records.length; o += RECORD_WORDS) if ((t.records[o + FIELD.SOURCE] & 0xff) === SOURCE.LOCAL) localRecords++;
      expect(localRecords).to.be.at.most(PAGES / 8);
      expect(decoded).to.be.at.least(localRecords);
    });

    it('a guest touching other pages than the trace is still served, and the score shows the waste', async () => {
      const out = tmp.file('other.trace');
      const r = await restore(['--prefetch', `replay:${truth}`, '--record', out], ['--pattern', 'hot', '--seed', '12']);
      expectClean(r);
      const ref = tmp.file('other-truth.trace');
      expectClean(await restore(['--record', ref], ['--pattern', 'hot', '--seed', '12']));
      const score = summarize(readTrace(out), readTrace(ref)).against!;
      expect(score.wasted).to.be.above(score.hits); // two random 10% sets share ~10%
    });

    it('trace merge keeps pages by how many runs touched them', () => {
      const other = tmp.file('other-truth.trace');
      const union = tmp.file('union.trace');
      const inter = tmp.file('inter.trace');
      const u = spawnSync(SNAPFAULT, ['trace', 'merge', truth, other, '-o', union], { encoding: 'utf8' });
      expect(u.status, u.stderr).to.equal(0);
      const i = spawnSync(SNAPFAULT, ['trace', 'merge', truth, other, '--mode', 'intersection', '-o', inter], { encoding: 'utf8' });
      expect(i.status, i.stderr).to.equal(0);
      const a = new Set(summarizePages(truth));
      const b = new Set(summarizePages(other));
      const both = [...a].filter((p) => b.has(p)).length;
      expect(summarize(readTrace(union)).touchedPages).to.equal(a.size + b.size - both);
      expect(summarize(readTrace(inter)).touchedPages).to.equal(both);
      const show = spawnSync(SNAPFAULT, ['trace', 'show', union, '--json'], { encoding: 'utf8' });
      expect(JSON.parse(show.stdout).touchedPages).to.equal(a.size + b.size - both);
    });
  });

  function summarizePages(path: string): number[] {
    const t = readTrace(path);
    const out: number[] = [];
    for (let o = 0; o < t.records.length; o += RECORD_WORDS) if (t.records[o + FIELD.KIND] <= RECORD.FAULT_LATE) out.push(t.records[o + FIELD.PAGE]);
    return out;
  }

  it('readahead follows a sequential guest: most pages arrive before it asks', async () => {
    const r = await restore(['--prefetch', 'readahead'], ['--pattern', 'seq']);
    expectClean(r);
    expect(prefetched(r.log), r.log).to.be.above(PAGES / 4);
  });

  it('readahead leaves a random guest alone (no windows grow)', async () => {
    const r = await restore(['--prefetch', 'readahead'], ['--pattern', 'random', '--touches', '3000']);
    expectClean(r);
    expect(prefetched(r.log)).to.be.below(300);
  });

  for (const [name, file] of [['raw', () => mem], ['compressed', () => packed]] as const) {
    it(`all populates every page of a ${name} snapshot while the guest reads all of it`, async () => {
      const r = await restore(['--prefetch', 'all'], ['--pattern', 'random', '--threads', '2'], file());
      expectClean(r);
      const filledAround = Number(/(\d+) pages filled around/.exec(r.log)?.[1] ?? 0);
      const installed = faults(r.log) + prefetched(r.log) + filledAround;
      // Each page goes in once: a fault claims its page before the prefetch can plan it.
      if (name === 'raw') expect(installed, r.log).to.equal(PAGES);
      // Fill-around claims a chunk's pages outside the fence, so a prefetch copy can beat it to one and both count it.
      else expect(installed, r.log).to.be.at.least(PAGES);
    });
  }

  it('replay and all across several regions (the x86 split and a hotplug region)', async () => {
    const truth = tmp.file('regions.trace');
    const regions = ['--regions', '40M,16M,8M'];
    expectClean(await restore(['--record', truth], [...regions, '--pattern', 'hot', '--seed', '3']));
    const t = readTrace(truth);
    const pages = summarizePages(truth);
    expect(pages.some((p) => p >= (56 * MiB) / 4096), 'the trace reaches the third region').to.equal(true);
    expect(t.snapshotBytes).to.equal(BigInt(64 * MiB));
    const r = await restore(['--prefetch', `replay:${truth}`], [...regions, '--pattern', 'hot', '--seed', '3', ...IDLE_FIRST]);
    expectClean(r);
    expect(prefetched(r.log)).to.be.above(0);
    const all = await restore(['--prefetch', 'all'], [...regions, '--pattern', 'random', '--threads', '2']);
    expectClean(all);
    expect(faults(all.log) + prefetched(all.log), all.log).to.equal(PAGES);
  });

  for (const mode of ['before', 'concurrent', 'after']) {
    it(`a page removed ${mode} the faults is never refilled from the snapshot by the prefetch (all, balloon)`, async () => {
      for (const file of [mem, packed]) {
        const r = await restore(['--prefetch', 'all'], ['--pattern', 'random', '--balloon', '4M:8M,40M:4M', '--balloon-mode', mode, '--threads', '2'], file);
        expectClean(r);
        expect(r.log).to.match(/[1-9]\d* removes?\b/);
      }
    });
  }

  it('the fence holds: a copy planned before a REMOVE and held back never lands after the madvise (stalled prefetch)', async () => {
    // Every prefetch copy waits 2 ms after its pages were checked; the guest
    // balloons 60 MiB meanwhile. Without the fence between the fault worker's
    // read and the prefetch copies this fails 5 times in 6 (tried).
    const data = tmp.file('data.img', makeImage(64 * MiB, { seed: 'fence', zeroFraction: 0 }));
    for (let round = 0; round < 3; round++) {
      const sock = tmp.file(`fence${round}.sock`);
      const h = new Proc(process.execPath, [SNAPFAULT_FAULTY, '--prefetch', 'all', sock, data], { SF_TEST_PREFETCH_STALL_MS: '2' });
      await h.waitForStderr(/listening on /);
      const sim = await runSim(['--socket', sock, '--mem', data, '--verify', '--pattern', 'random', '--touches', '200', '--balloon', '0:60M', '--balloon-mode', 'after']);
      expect(sim.code, `round ${round}: ${sim.stderr}\n${h.stderr}`).to.equal(0);
      expect(sim.json?.mismatches).to.equal(0);
      expect((await h.waitExit()).code).to.equal(0);
    }
  });

  it('a copy ahead into a range no longer registered (ENOENT) is skipped: the prefetch goes on past it', async () => {
    // 8 MiB of data, a 48 MiB hole (zero pages, known at once), 8 MiB of data; the hole stays registered
    // (--zero-ranges off) and the test worker takes the range of the first zero page mapped ahead out of the
    // uffd just before mapping it (test/helpers/faulty-prefetch-worker.ts), as a handler before a takeover may have.
    const sparse = sparseImage(tmp.file('enoent.img'), 64 * MiB, [{ at: 0, bytes: 8 * MiB, seed: 'enoent0' }, { at: 56 * MiB, bytes: 8 * MiB, seed: 'enoent56' }]);
    const sock = tmp.file('enoent.sock');
    const h = new Proc(process.execPath, [SNAPFAULT_FAULTY, '--log-format', 'text', '--prefetch', 'all', '--zero-ranges', 'off', sock, sparse], { SF_TEST_PREFETCH_UNREGISTER: '1' });
    await h.waitForStderr(/listening on /);
    const sim = await runSim(['--socket', sock, '--mem', sparse, '--verify', '--pause-ms', '1500', '--pattern', 'seq']);
    expect(sim.code, `${sim.stderr}\n${h.stderr}`).to.equal(0);
    expect(sim.json?.mismatches).to.equal(0);
    expect((await h.waitExit()).code, h.stderr).to.equal(0);
    // Stopped at the first ENOENT, it had copied the first 8 MiB only (2048 pages).
    expect(h.stderr).to.match(/prefetch: 4096 pages copied \(16\.0 MiB\) and [1-9]\d* zero pages mapped ahead/);
    expect(h.stderr).not.to.match(/warn|error/);
  });

  it('a custom policy module built from examples/ is loaded and used', async () => {
    const b = spawnSync('npm', ['run', '--silent', 'example:policy'], { cwd: ROOT, encoding: 'utf8' });
    expect(b.status, b.stderr).to.equal(0);
    expect(existsSync(EXAMPLE)).to.equal(true);
    // The guest stays a while, so the policy has heard of every fault before the VM ends.
    const r = await restore(['--prefetch', EXAMPLE], ['--pattern', 'random', '--touches', '500', '--hold-ms', '500']);
    expectClean(r);
    // Every fault fetches the rest of its 16-page block.
    expect(prefetched(r.log)).to.be.above(500 * 4);
  });

  it('serves several VMs at once with a policy, one trace per VM', async () => {
    const sock = tmp.file('multi.sock');
    const pattern = join(tmp.path, 'vm-{pid}.trace');
    const h = await startSnapfault(['serve', '--socket', sock, '--mem', mem, '--prefetch', 'all', '--record', pattern, '--log-format', 'text']);
    const sims = [0, 1, 2].map(() => startSim(['--socket', sock, '--mem', mem, '--verify', '--pattern', 'random', '--print-pid-ready']));
    const results = await Promise.all(sims.map((s) => s.result));
    for (const s of results) {
      expect(s.code, s.stderr).to.equal(0);
      expect(s.json?.mismatches).to.equal(0);
    }
    await waitFor(h, /ended.*\n.*ended.*\n.*ended/s);
    h.child.kill('SIGTERM');
    await h.waitExit();
    for (const s of sims) {
      const pid = /ready (\d+)/.exec(s.proc.stderr)?.[1];
      const t = readTrace(pattern.replace('{pid}', String(pid)));
      const sum = summarize(t);
      expect(sum.prefetchedPages + sum.prefetchedZeroPages + sum.faults.copy + sum.faults.zero).to.equal(PAGES);
    }
  });

  describe('refused at start, with one line that says what to do', () => {
    function start(args: string[]): { code: number | null; stderr: string } {
      const r = spawnSync(SNAPFAULT, [...args, tmp.file('never.sock'), mem], { encoding: 'utf8', timeout: 30_000 });
      return { code: r.status, stderr: r.stderr };
    }
    const cases: Array<[string, () => string[], RegExp]> = [
      ['an unknown policy', () => ['--prefetch', 'fastest'], /--prefetch fastest: expected none, readahead/],
      ['a missing trace', () => ['--prefetch', 'replay:/nonexistent.trace'], /trace \/nonexistent.trace does not exist; record one with --record/],
      ['a file that is not a trace', () => ['--prefetch', `replay:${mem}`], /is not a snapfault trace/],
      ['a trace of another snapshot', () => ['--prefetch', `replay:${otherTrace()}`], /recorded from a 4096-byte snapshot but the served one has 67108864 bytes/],
      ['a missing policy module', () => ['--prefetch', '/nonexistent.wasm'], /prefetch policy \/nonexistent.wasm does not exist/],
      ['a module without sf_fault', () => ['--prefetch', badModule()], /does not export the function sf_fault/],
      ['serve --record without {pid}', () => ['serve', '--socket', 'x', '--mem', mem, '--record', 'a.trace'], /put \{pid\} in the path/],
      ['--record into a folder that does not exist', () => ['--record', '/nonexistent/dir/a.trace'], /the folder \/nonexistent\/dir does not exist: create it first/],
    ];
    for (const [what, args, message] of cases) {
      it(`refuses ${what}`, () => {
        const a = args();
        const r = a[0] === 'serve' ? (({ status, stderr }) => ({ code: status, stderr }))(spawnSync(SNAPFAULT, a, { encoding: 'utf8' })) : start(a);
        expect(r.code).to.equal(2);
        expect(r.stderr).to.match(message);
        expect(r.stderr.trim().split('\n')).to.have.length(1);
      });
    }
  });

  it('a policy that traps while running is stopped with a warning; the VM is served on demand', async () => {
    const r = await restore(['--prefetch', trappingModule()], ['--pattern', 'random', '--touches', '400']);
    expect(r.sim.code, r.log).to.equal(0);
    expect(r.sim.json?.mismatches).to.equal(0);
    expect(r.code).to.equal(0);
    expect(r.log).to.match(/prefetch stopped: prefetch policy .*trap.wasm trapped \(unreachable\); faults are served on demand/);
    expect(faults(r.log)).to.equal(400);
  });

  it('a policy call that never returns is ended by the watchdog; the VM is served on demand', async () => {
    const r = await restore(['--prefetch', loopingModule()], ['--pattern', 'random', '--touches', '300', '--hold-ms', '3000']);
    expect(r.sim.code, r.log).to.equal(0);
    expect(r.sim.json?.mismatches).to.equal(0);
    expect(r.code, r.log).to.equal(0);
    expect(r.log).to.match(/the prefetch worker stopped: prefetch policy .*loop\.wasm did not return within 1 s; prefetching is off for every VM, faults are served on demand/);
    expect(faults(r.log)).to.equal(300);
  });

  function otherTrace(): string {
    // A valid trace of a one-page snapshot.
    const p = tmp.file('tiny.trace');
    const b = Buffer.alloc(64 + 16);
    b.write('SFTRACE1', 0, 'latin1');
    b.writeUInt32LE(1, 8);
    b.writeUInt32LE(16, 12);
    b.writeBigUInt64LE(4096n, 16);
    b.writeBigUInt64LE(1n, 24);
    b.writeUInt32LE(0, 64);
    b.writeUInt32LE(1, 68);
    b.writeUInt32LE(5, 72);
    b.writeUInt32LE(1, 76);
    writeFileSync(p, b);
    return p;
  }

  /** A module exporting the interface but sf_fault: (module (memory (export "memory") 1) (func (export "sf_abi_version") (result i32) i32.const 1) ...). */
  function badModule(): string {
    const p = tmp.file('bad.wasm');
    writeFileSync(p, wat2wasm([exportFn('sf_abi_version', 0, [0x41, 1]), exportFn('sf_init', 1, [0x41, 0])]));
    return p;
  }

  /** A module whose sf_fault executes `unreachable`. */
  function trappingModule(): string {
    const p = tmp.file('trap.wasm');
    writeFileSync(p, wat2wasm([exportFn('sf_abi_version', 0, [0x41, 1]), exportFn('sf_init', 1, [0x41, 0]), exportFn('sf_fault', 2, [0x00])]));
    return p;
  }

  /** A module whose sf_fault loops forever: (loop (br 0)) unreachable. */
  function loopingModule(): string {
    const p = tmp.file('loop.wasm');
    writeFileSync(p, wat2wasm([exportFn('sf_abi_version', 0, [0x41, 1]), exportFn('sf_init', 1, [0x41, 0]), exportFn('sf_fault', 2, [0x03, 0x40, 0x0c, 0x00, 0x0b, 0x00])]));
    return p;
  }

  async function waitFor(p: Proc, re: RegExp): Promise<void> {
    for (let i = 0; i < 400 && !re.test(p.stderr); i++) await new Promise((r) => setTimeout(r, 25));
    expect(p.stderr).to.match(re);
  }
});

interface Fn {
  name: string;
  params: number;
  body: number[];
}

function exportFn(name: string, params: number, body: number[]): Fn {
  return { name, params, body };
}

/** A minimal module: one memory exported as "memory" and i32 functions taking `params` i32 each. */
function wat2wasm(fns: Fn[]): Buffer {
  const vec = (items: number[][]): number[] => [items.length, ...items.flat()];
  const str = (s: string): number[] => [s.length, ...Buffer.from(s)];
  const section = (id: number, bytes: number[]): number[] => [id, ...leb(bytes.length), ...bytes];
  const types = vec(fns.map((f) => [0x60, f.params, ...new Array<number>(f.params).fill(0x7f), 1, 0x7f]));
  const funcs = vec(fns.map((_, i) => [i]));
  const memory = vec([[0x00, 1]]);
  const exports = vec([[...str('memory'), 0x02, 0], ...fns.map((f, i) => [...str(f.name), 0x00, i])]);
  const code = vec(fns.map((f) => {
    const body = [0, ...f.body, 0x0b];
    return [...leb(body.length), ...body];
  }));
  return Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...section(1, types), ...section(3, funcs), ...section(5, memory), ...section(7, exports), ...section(10, code)]);
}

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
