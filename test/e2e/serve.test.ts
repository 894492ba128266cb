// `snapfault serve`: many Firecrackers at once and one after another, and
// every way one of them can go wrong without disturbing the others.
import { expect } from 'chai';
import { statSync, existsSync, copyFileSync, truncateSync, chmodSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { createUserfaultfd, registerMissing, UFFD_FEATURE } from '../../native/uffd.js';
import { mmapAnonymous, munmap } from '../../native/mmap.js';
import { connectUnix, sendWithFds } from '../../native/socket.js';
import { closeFd } from '../../native/fd.js';
import { TempDir, makeImage } from '../helpers/images.js';
import { startSnapfault, startSim, runSim, type Proc } from '../helpers/processes.js';
import { fdTable, fdsBackTo } from '../helpers/fds.js';

const MiB = 1 << 20;

describe('snapfault serve', function () {
  this.timeout(120_000);
  const tmp = new TempDir();
  let mem: string;
  let n = 0;
  let handler: Proc | null = null;

  before(() => {
    mem = tmp.file('mem.img', makeImage(32 * MiB, { seed: 'serve' }));
  });
  afterEach(async () => {
    if (handler && handler.child.exitCode === null) {
      handler.kill('SIGKILL');
      await handler.exited;
    }
    handler = null;
  });
  after(() => tmp.remove());

  async function serve(extra: string[] = [], file = mem): Promise<{ h: Proc; sock: string }> {
    const sock = tmp.file(`s${n++}.sock`);
    handler = await startSnapfault(['serve', '--socket', sock, '--mem', file, ...extra]);
    return { h: handler, sock };
  }

  const good = (sock: string, extra: string[] = []) =>
    runSim(['--socket', sock, '--mem', mem, '--verify', '--pattern', 'random', '--threads', '2', ...extra]);

  it('serves several VMs at once, each byte checked, on a 0600 socket it removes on SIGTERM', async () => {
    const { h, sock } = await serve(['--workers', '2']);
    expect(statSync(sock).mode & 0o777).to.equal(0o600);
    const runs = await Promise.all([
      good(sock),
      good(sock, ['--balloon', '4M:1M', '--balloon-mode', 'concurrent']),
      good(sock, ['--regions', '16M,16M']),
      good(sock, ['--pattern', 'hot']),
    ]);
    for (const r of runs) {
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json?.mismatches).to.equal(0);
    }
    await h.waitForStderr(/(ended: Firecracker closed the connection[^]*){4}/);
    h.kill('SIGTERM');
    expect((await h.waitExit()).code).to.equal(0);
    expect(existsSync(sock)).to.equal(false);
  });

  it('a Firecracker dying mid-restore is cleaned up; the VM beside it is not disturbed', async () => {
    // Text logs, so the check for error lines below can match one.
    const { h, sock } = await serve(['--workers', '1', '--log-level', 'debug', '--log-format', 'text']);
    // Warm up once so lazily created resources are part of the baseline.
    expect((await good(sock, ['--touches', '100'])).code).to.equal(0);
    await h.waitForStderr(/ended/);
    // The background zero-page scan is a thread with fds of its own, gone when
    // it finishes: at idle priority on a busy machine, that can be any time.
    await h.waitForStderr(/zero-page scan of .* pages are zero/, 60_000);
    const baseline = fdTable(h.pid);
    for (let round = 0; round < 3; round++) {
      const dying = runSim(['--socket', sock, '--mem', mem, '--pattern', 'random', '--die-after', String(500 + round * 1500)]);
      const healthy = good(sock);
      const [d, ok] = await Promise.all([dying, healthy]);
      expect(d.signal).to.equal('SIGKILL');
      expect(ok.code, ok.stderr).to.equal(0);
      expect(ok.json?.mismatches).to.equal(0);
    }
    await h.waitForStderr(/(ended[^]*){7}/);
    await fdsBackTo(baseline, h.pid);
    expect(h.stderr).to.not.match(/ error: /);
  });

  const malformed: Array<[string, string, RegExp]> = [
    ['not JSON', 'this is not json', /not valid JSON/],
    ['a JSON object', '{"base_host_virt_addr": 1}', /must be a JSON array/],
    ['disagreeing page sizes', '[{"base_host_virt_addr":140000000000000,"size":4096,"offset":0,"page_size":4096,"page_size_kib":2097152}]', /disagree/],
    ['a region beyond the snapshot', '[{"base_host_virt_addr":140000000000000,"size":1073741824,"offset":0}]', /holds 33554432/],
    ['a misaligned region', '[{"base_host_virt_addr":140000000000001,"size":4096,"offset":0}]', /not a multiple of its page size/],
  ];
  for (const [what, text, why] of malformed) {
    it(`refuses a handshake with ${what}, kills that Firecracker, serves the next`, async () => {
      const { h, sock } = await serve();
      const raw = tmp.file(`raw${n++}.json`, text);
      const bad = await runSim(['--socket', sock, '--mem', mem, '--raw-handshake', raw, '--touches', '1']);
      expect(bad.signal).to.equal('SIGKILL');
      const line = (await h.waitForStderr(/.*handshake refused.*/))[0];
      expect(line).to.match(why);
      expect(line).to.match(/killed Firecracker pid \d+/);
      const ok = await good(sock, ['--touches', '500']);
      expect(ok.code).to.equal(0);
    });
  }

  it('with --on-fatal disconnect a refused Firecracker is left alive', async () => {
    const { h, sock } = await serve(['--on-fatal', 'disconnect']);
    const raw = tmp.file(`raw${n++}.json`, 'nope');
    const r = await runSim(['--socket', sock, '--mem', mem, '--raw-handshake', raw, '--touches', '0', '--hold-ms', '300']);
    expect(r.code).to.equal(0);
    expect(h.stderr).to.match(/handshake refused: the mapping message is not valid JSON \([^)]*\); left Firecracker pid \d+ running, but its guest can no longer fault pages in/);
    expect(h.stderr).to.not.match(/killed Firecracker/);
    expect(h.stderr).to.match(/"killed":false/);
  });

  it('refuses a handshake without a userfaultfd, and a connection that sends nothing', async () => {
    const { h, sock } = await serve(['--handshake-timeout-ms', '300']);
    const noFd = await runSim(['--socket', sock, '--mem', mem, '--no-fd', '--touches', '0', '--hold-ms', '200']);
    expect(noFd.code).to.equal(0);
    await h.waitForStderr(/came without a userfaultfd/);
    const silent = await runSim(['--socket', sock, '--mem', mem, '--no-send', '--touches', '0', '--hold-ms', '800']);
    expect(silent.code).to.equal(0);
    await h.waitForStderr(/no mapping message within 300 ms/);
    expect((await good(sock, ['--touches', '200'])).code).to.equal(0);
  });

  it('kills the Firecracker whose snapshot was truncated while being served; others go on', async () => {
    const own = tmp.file('trunc.img');
    copyFileSync(mem, own);
    const { h, sock } = await serve(['--zero-scan', 'off'], own);
    const victim = startSim(['--socket', sock, '--mem', own, '--pattern', 'seq', '--hold-ms', '5000']);
    await h.waitForStderr(/serving 1 region/); // the handshake was accepted: truncate under the running restore
    truncateSync(own, 4 * MiB);
    const r = await victim.result;
    expect(r.signal).to.equal('SIGKILL');
    const line = (await h.waitForStderr(/.*snapshot bytes could not be read.*/))[0];
    expect(line).to.match(/killed Firecracker pid \d+/);
    // The file changed: a new VM gets the new file, which no longer fits its regions.
    const next = await runSim(['--socket', sock, '--mem', mem, '--touches', '1']);
    expect(next.signal).to.equal('SIGKILL');
    await h.waitForStderr(/holds 4194304/);
    expect(h.child.exitCode).to.equal(null);
  });

  it('replaces a stale socket file, refuses a socket in use', async () => {
    const { h, sock } = await serve();
    const second = await startSnapfault(['serve', '--socket', sock, '--mem', mem]).catch((e: Error) => e);
    expect(second).to.be.instanceOf(Error);
    expect((second as Error).message).to.match(/socket .* is in use by another handler/);
    h.kill('SIGKILL'); // leaves its socket file behind
    await h.exited;
    expect(existsSync(sock)).to.equal(true);
    const { h: h2 } = await serve();
    expect(h2.child.exitCode).to.equal(null);
  });
});

describe('snapfault serve: who may connect', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  let handler: Proc | null = null;
  // mkdtemp makes the directory 0700: let other users reach the socket files, so the socket's own mode decides.
  before(() => chmodSync(tmp.path, 0o755));
  after(() => tmp.remove());
  afterEach(async () => {
    if (handler && handler.child.exitCode === null) {
      handler.kill('SIGKILL');
      await handler.exited;
    }
  });

  // A client that connects as `nobody` and sends a well-formed-looking message.
  const asNobody = (sock: string): number | null => spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e',
    `let up = false;
     const s = require('net').connect(${JSON.stringify(sock)}, () => { up = true; s.write('[]'); setTimeout(() => s.destroy(), 300); });
     s.on('error', () => { if (!up) process.exit(3); });`], { encoding: 'utf8' }).status;

  it('another uid cannot even reach a 0600 socket', async () => {
    const mem = tmp.file('m.img', makeImage(MiB));
    const sock = tmp.file('a.sock');
    handler = await startSnapfault(['serve', '--socket', sock, '--mem', mem]);
    expect(asNobody(sock)).to.equal(3); // connect: permission denied
  });

  it('with a wider --socket-mode, a uid not in --allow-uid is refused and logged; an allowed one is not', async () => {
    const mem = tmp.file('m.img', makeImage(MiB));
    const sock = tmp.file('b.sock');
    handler = await startSnapfault(['serve', '--socket', sock, '--mem', mem, '--socket-mode', '0666']);
    expect(asNobody(sock)).to.equal(0);
    const line = (await handler.waitForStderr(/.*uid 65534 is not allowed.*/))[0];
    expect(line).to.match(/add --allow-uid 65534 if that is a jailed Firecracker/);
    handler.kill('SIGKILL');
    await handler.exited;
    const sock2 = tmp.file('c.sock');
    handler = await startSnapfault(['serve', '--socket', sock2, '--mem', mem, '--socket-mode', '0666', '--allow-uid', '65534']);
    expect(asNobody(sock2)).to.equal(0);
    await handler.waitForStderr(/handshake refused: the mapping message came without a userfaultfd/);
    expect(handler.stderr).to.not.match(/not allowed/);
  });
});

describe('snapfault serve: a peer that talks after its handshake', function () {
  this.timeout(30_000);
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('garbage after a valid handshake is logged and ignored; the VM is served until its peer goes', async () => {
    const mem = tmp.file('g.img', makeImage(MiB));
    const sock = tmp.file('g.sock');
    // disconnect, not kill-peer: the peer here is the test runner itself.
    const h = await startSnapfault(['serve', '--socket', sock, '--mem', mem, '--on-fatal', 'disconnect']);
    try {
      // This process plays Firecracker: its own uffd and registered memory, one sendmsg, then garbage.
      const uffd = createUserfaultfd(UFFD_FEATURE.EVENT_REMOVE);
      const guest = mmapAnonymous(MiB);
      registerMissing(uffd, guest.addr, MiB);
      const conn = connectUnix(sock);
      sendWithFds(conn, Buffer.from(`[{"base_host_virt_addr":${guest.addr},"size":${MiB},"offset":0,"page_size":4096}]`), [uffd]);
      await h.waitForStderr(/serving 1 region/);
      sendWithFds(conn, Buffer.from('this is not supposed to be here'), []);
      await h.waitForStderr(/sent 31 unexpected bytes after the handshake; ignored/);
      closeFd(conn);
      await h.waitForStderr(/ended: Firecracker closed the connection/);
      closeFd(uffd);
      munmap(guest);
      expect(h.child.exitCode).to.equal(null);
    } finally {
      h.kill('SIGKILL');
      await h.exited;
    }
  });
});

describe('stopping: SIGTERM and SIGINT drain, a second one stops at once', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  let mem: string;
  let n = 0;
  let handler: Proc | null = null;
  const sims: Proc[] = [];
  const PAGES = (8 * MiB) / 4096;

  before(() => {
    mem = tmp.file('mem.img', makeImage(8 * MiB, { seed: 'drain' }));
  });
  afterEach(async () => {
    for (const p of [handler, ...sims.splice(0)]) {
      if (p?.running) {
        p.kill('SIGKILL');
        await p.exited;
      }
    }
    handler = null;
  });
  after(() => tmp.remove());

  async function start(args: string[]): Promise<{ h: Proc; sock: string }> {
    const sock = tmp.file(`d${n++}.sock`);
    handler = await startSnapfault(args[0] === 'serve' ? ['serve', '--socket', sock, '--mem', mem, ...args.slice(1)] : [...args, sock, mem]);
    return { h: handler, sock };
  }
  function sim(sock: string, extra: string[]): ReturnType<typeof startSim> {
    const s = startSim(['--socket', sock, '--mem', mem, '--print-pid-ready', ...extra]);
    sims.push(s.proc);
    return s;
  }
  /** The error of connecting to `sock` now: ENOENT once the handler removed it. */
  const connectError = (sock: string): Promise<string> => new Promise((resolve) => {
    const c = connect(sock);
    c.on('connect', () => {
      c.destroy();
      resolve('connected');
    });
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  type Line = { msg: string; event?: string; vm?: number; vms?: number[]; reason?: string; faults?: number; level: string };
  const lines = (h: Proc): Line[] => h.stderr.trim().split('\n').map((l) => JSON.parse(l) as Line);
  const simPid = (s: Proc): number => Number(/ready (\d+)/.exec(s.stderr)?.[1]);
  /** 'draining' once the handler says so; 'exited' if it exits instead (releasing its VMs, as it did before drains). */
  const draining = (h: Proc): Promise<string> =>
    Promise.race([h.waitForStderr(/"event":"draining"/).then(() => 'draining'), h.exited.then(() => 'exited')]);

  it('a VM connected when SIGTERM arrives goes on being served to its end, byte-exact; the socket is gone at once; exit 0', async () => {
    const { h, sock } = await start(['serve', '--metrics', '127.0.0.1:0']);
    const url = (await h.waitForStderr(/metrics on (http:\/\/[^\s"]+)/))[1];
    // Idle at first, so that every one of its faults comes after the signal.
    const vm = sim(sock, ['--verify', '--pattern', 'random', '--threads', '2', '--pause-ms', '1500']);
    await h.waitForStderr(/serving 1 region/);
    h.kill('SIGTERM');
    expect(await draining(h), h.stderr).to.equal('draining');
    expect(existsSync(sock)).to.equal(false);
    expect(await connectError(sock)).to.equal('ENOENT');
    // Still running, and still reporting, while its VM is.
    expect(h.child.exitCode).to.equal(null);
    expect((await fetch(url)).status).to.equal(200);
    // An upgrade: the new handler takes the path while the old one drains.
    const next = await startSnapfault(['serve', '--socket', sock, '--mem', mem]);
    sims.push(next);
    expect((await sim(sock, ['--verify', '--touches', '100']).result).code).to.equal(0);
    const r = await vm.result;
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json?.mismatches).to.equal(0);
    expect(r.json?.touches).to.equal(PAGES);
    expect((await h.waitExit()).code).to.equal(0);
    expect(existsSync(sock)).to.equal(true); // the new handler's, left alone
    expect(next.child.exitCode).to.equal(null);
    const log = lines(h);
    const pid = simPid(vm.proc);
    expect(log.find((l) => l.event === 'draining')).to.deep.include({ vms: [pid] });
    const ended = log.find((l) => l.event === 'vm_end');
    expect(ended).to.deep.include({ vm: pid, reason: 'exited', faults: PAGES });
    expect(log.map((l) => l.event)).to.include('drained');
    expect(log.map((l) => l.event)).to.not.include('releasing');
  });

  it('a second signal during the drain stops at once, naming the VM it releases', async () => {
    const { h, sock } = await start(['serve']);
    // Its worker waits in epoll for a VM that does nothing more.
    const held = sim(sock, ['--touches', '10', '--hold-ms', '30000']);
    await h.waitForStderr(/serving 1 region/);
    h.kill('SIGTERM');
    await h.waitForStderr(/"event":"draining"/);
    const t0 = Date.now();
    h.kill('SIGINT');
    expect((await h.waitExit(5000)).code).to.equal(0);
    expect(Date.now() - t0).to.be.below(5000);
    const pid = simPid(held.proc);
    const released = lines(h).find((l) => l.event === 'releasing');
    expect(released).to.deep.include({ level: 'warn', vms: [pid] });
    expect(released?.msg).to.match(new RegExp(`still depend on this handler: pid ${pid}; released unfinished, their Firecrackers keep running but their guests can no longer fault pages in`));
    expect(h.stderr).to.match(/SIGINT again: stopping now/);
    expect(lines(h).find((l) => l.event === 'vm_end')).to.deep.include({ vm: pid, reason: 'shutdown' });
  });

  it('--drain-timeout: VMs still connected when it passes are released and named; 0 stops at once', async () => {
    const { h, sock } = await start(['serve', '--drain-timeout', '1']);
    const held = sim(sock, ['--touches', '10', '--hold-ms', '30000']);
    await h.waitForStderr(/serving 1 region/);
    const t0 = Date.now();
    h.kill('SIGTERM');
    expect((await h.waitExit(10_000)).code).to.equal(0);
    expect(Date.now() - t0).to.be.at.least(1000);
    const events = lines(h).map((l) => l.event);
    expect(events).to.include.members(['draining', 'drain_timeout', 'releasing']);
    expect(lines(h).find((l) => l.event === 'releasing')?.vms).to.deep.equal([simPid(held.proc)]);

    const { h: h0, sock: sock0 } = await start(['serve', '--drain-timeout', '0']);
    const held0 = sim(sock0, ['--touches', '10', '--hold-ms', '30000']);
    await h0.waitForStderr(/serving 1 region/);
    h0.kill('SIGTERM');
    expect((await h0.waitExit(5000)).code).to.equal(0);
    expect(lines(h0).map((l) => l.event)).to.not.include('draining');
    expect(lines(h0).find((l) => l.event === 'releasing')?.vms).to.deep.equal([simPid(held0.proc)]);
    expect(existsSync(sock0)).to.equal(false);
  });

  it('with no VM connected the first signal stops at once', async () => {
    const { h, sock } = await start(['serve']);
    expect((await sim(sock, ['--touches', '10']).result).code).to.equal(0);
    await h.waitForStderr(/ended/);
    h.kill('SIGINT');
    expect((await h.waitExit(5000)).code).to.equal(0);
    expect(lines(h).map((l) => l.event)).to.not.include('draining');
    expect(lines(h).map((l) => l.event)).to.not.include('releasing');
    expect(existsSync(sock)).to.equal(false);
  });

  it('drop-in: a signal before Firecracker connects exits 0 at once; after, the one VM is served to its end first', async () => {
    const { h: early, sock: s0 } = await start([]);
    early.kill('SIGTERM');
    expect((await early.waitExit(5000)).code).to.equal(0);
    expect(existsSync(s0)).to.equal(false);

    const { h, sock } = await start([]);
    const vm = sim(sock, ['--verify', '--pattern', 'random', '--pause-ms', '1000']);
    await h.waitForStderr(/serving 1 region/);
    h.kill('SIGTERM');
    expect(await draining(h), h.stderr).to.equal('draining');
    const r = await vm.result;
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json?.mismatches).to.equal(0);
    expect((await h.waitExit()).code).to.equal(0);
    expect(lines(h).find((l) => l.event === 'vm_end')).to.deep.include({ reason: 'exited', faults: PAGES });
  });
});
