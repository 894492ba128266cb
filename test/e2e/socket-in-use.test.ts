// A handler decides whether a socket is in use without connecting to it (a
// connection is what a drop-in handler takes for its Firecracker), and a
// connection that closes without sending a byte is nobody's Firecracker.
import { expect } from 'chai';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { createServer, createConnection, type Server } from 'node:net';
import { TempDir, makeImage } from '../helpers/images.js';
import { cli, expectRefused } from '../helpers/cli.js';
import { startSnapfault, runSim, type Proc } from '../helpers/processes.js';

const MiB = 1 << 20;

/** Connects and closes without sending anything, as a liveness probe does. */
function closeAtOnce(sock: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const c = createConnection(sock, () => c.end());
    c.on('close', () => resolve());
    c.on('error', reject);
  });
}

describe('a socket in use, and connections that send nothing', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  let mem: string;
  let n = 0;
  const live: Proc[] = [];
  before(() => {
    mem = tmp.file('mem.img', makeImage(4 * MiB, { seed: 'in-use' }));
  });
  afterEach(async () => {
    for (const h of live.splice(0)) if (h.child.exitCode === null) {
      h.kill('SIGKILL');
      await h.exited;
    }
  });
  after(() => tmp.remove());

  async function dropIn(extra: string[] = []): Promise<{ h: Proc; sock: string }> {
    const sock = tmp.file(`d${n++}.sock`);
    const h = await startSnapfault([...extra, sock, mem]);
    live.push(h);
    return { h, sock };
  }

  async function servesAndExits0(h: Proc, sock: string): Promise<void> {
    const sim = await runSim(['--socket', sock, '--mem', mem, '--touches', '200', '--verify']);
    expect(sim.code, `${sim.stderr}\n${h.stderr}`).to.equal(0);
    expect(sim.json?.mismatches).to.equal(0);
    expect((await h.waitExit()).code, h.stderr).to.equal(0);
  }

  it('is refused as in use (exit 2) without disturbing the first, which serves its Firecracker and exits 0', async () => {
    const { h, sock } = await dropIn();
    const second = cli([sock, mem]);
    const serve = cli(['serve', '--socket', sock, '--mem', mem]);
    await servesAndExits0(h, sock);
    expect(h.stderr).to.not.match(/refused|"level":"(warn|error)"/);
    expectRefused(second, /^snapfault: socket \S+ is in use by another handler \(pid \d+\): stop it or choose another path\n$/, 'second handler');
    expect(second.stderr).to.include(`pid ${h.pid}`);
    expectRefused(serve, /is in use by another handler/, 'serve on the same socket');
  });

  it('a connection that closes without sending a byte is not its Firecracker (a debug line at most)', async () => {
    const { h, sock } = await dropIn(['--log-level', 'debug']);
    for (let i = 0; i < 3; i++) await closeAtOnce(sock);
    await h.waitForStderr(/closed without sending anything/);
    await servesAndExits0(h, sock);
    const lines = h.stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string });
    expect(lines.filter((l) => /closed without sending/.test(l.msg)).map((l) => l.level)).to.deep.equal(['debug', 'debug', 'debug']);
    expect(lines.filter((l) => l.level === 'warn' || l.level === 'error')).to.deep.equal([]);
  });

  it('a connection that stays silent until the handshake timeout is refused and logged, and the drop-in goes on waiting for its Firecracker', async () => {
    const { h, sock } = await dropIn(['--handshake-timeout-ms', '300']);
    const silent = createConnection(sock);
    await h.waitForStderr(/no mapping message within 300 ms/);
    silent.destroy();
    await servesAndExits0(h, sock);
  });

  it('serve: a connection that closes without a byte is not counted as a refused handshake', async () => {
    const sock = tmp.file(`s${n++}.sock`);
    const h = await startSnapfault(['serve', '--socket', sock, '--mem', mem, '--metrics', '127.0.0.1:0']);
    live.push(h);
    const url = (await h.waitForStderr(/metrics on (http:\/\/\S+?)"/))[1];
    await closeAtOnce(sock);
    const bad = await runSim(['--socket', sock, '--mem', mem, '--raw-handshake', tmp.file('bad.json', 'oops'), '--touches', '1']);
    expect(bad.signal).to.equal('SIGKILL');
    await h.waitForStderr(/not valid JSON/);
    const text = await (await fetch(url)).text();
    expect(text).to.match(/snapfault_handshakes_rejected_total\{reason="json"\} 1\n/);
    expect(text).to.not.match(/reason="closed"/);
    expect(h.stderr).to.not.match(/closed without sending/);
  });

  it('a socket another program listens on is in use: refused without connecting to it', async () => {
    const sock = tmp.file('other.sock');
    let connections = 0;
    const server: Server = createServer(() => connections++);
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const r = cli([sock, mem]);
      await new Promise((res) => setTimeout(res, 200));
      expect(connections).to.equal(0);
      expectRefused(r, /^snapfault: socket \S+ is in use: another program listens on it: stop it or choose another path\n$/, 'foreign listener');
      expect(existsSync(sock)).to.equal(true);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('a stale socket of a handler that was killed is replaced; its lock file is reused', async () => {
    const { h, sock } = await dropIn();
    h.kill('SIGKILL');
    await h.exited;
    expect(existsSync(sock)).to.equal(true);
    const h2 = await startSnapfault([sock, mem]);
    live.push(h2);
    await servesAndExits0(h2, sock);
    expect(existsSync(sock)).to.equal(false);
    expect(existsSync(`${sock}.lock`)).to.equal(false);
  });

  it('a file of the user where the lock file goes is left alone', () => {
    const sock = tmp.file('mine.sock');
    const lock = tmp.file('mine.sock.lock', 'not a lock, my data\n');
    expectRefused(cli([sock, mem]), /^snapfault: \S+mine\.sock\.lock exists and is not a snapfault lock file: remove it or choose another socket path\n$/, 'lock file');
    expect(readFileSync(lock, 'utf8')).to.equal('not a lock, my data\n');
    expect(statSync(lock).size).to.equal(20);
  });
});
