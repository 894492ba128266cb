// --metrics: the Prometheus endpoint reports what the handler did.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { TempDir, makeImage } from '../helpers/images.js';
import { startSnapfault, startSim, runSim, type Proc } from '../helpers/processes.js';
import { SNAPFAULT } from '../helpers/paths.js';

const MiB = 1 << 20;

function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (!line) throw new Error(`no ${series} in:\n${text}`);
  return Number(line.slice(series.length + 1));
}

describe('metrics', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  let h: Proc | null = null;
  after(() => tmp.remove());
  afterEach(async () => {
    if (h && h.child.exitCode === null) {
      h.kill('SIGKILL');
      await h.exited;
    }
  });

  it('counts faults by resolution, latency and reads, VMs, refusals; per-VM series only while connected', async () => {
    const mem = tmp.file('m.img', makeImage(16 * MiB, { seed: 'metrics' }));
    const sock = tmp.file('m.sock');
    h = await startSnapfault(['serve', '--socket', sock, '--mem', mem, '--metrics', '127.0.0.1:0', '--log-level', 'debug']);
    const url = (await h.waitForStderr(/metrics on (http:\/\/[^\s"]+)/))[1];
    await h.waitForStderr(/zero-page scan/);
    const held = startSim(['--socket', sock, '--mem', mem, '--touches', '100', '--hold-ms', '1500']);
    await h.waitForStderr(/serving 1 region/);
    // Scrape until the guest has made its 100 touches: it stays connected 1.5 s after.
    let during = '';
    for (let i = 0; i < 100; i++) {
      during = await (await fetch(url)).text();
      if (/snapfault_vm_faults\{pid="\d+"\} 100\n/.test(during)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(value(during, 'snapfault_vms_connected')).to.equal(1);
    expect(during).to.match(/snapfault_vm_faults\{pid="\d+"\} 100\n/);
    expect((await held.result).code).to.equal(0);

    const sim = await runSim(['--socket', sock, '--mem', mem, '--verify', '--pattern', 'random', '--balloon', '1M:1M', '--balloon-mode', 'after']);
    expect(sim.code).to.equal(0);
    const bad = await runSim(['--socket', sock, '--mem', mem, '--raw-handshake', tmp.file('bad.json', 'oops'), '--touches', '1']);
    expect(bad.signal).to.equal('SIGKILL');
    await h.waitForStderr(/(ended[^]*){2}/);
    await h.waitForStderr(/not valid JSON/);
    const text = await (await fetch(url)).text();
    const copy = value(text, 'snapfault_faults_total{resolution="copy"}');
    const zero = value(text, 'snapfault_faults_total{resolution="zero"}');
    const removed = value(text, 'snapfault_faults_total{resolution="removed_zero"}');
    // Both VMs: 100 touches, then 4096 pages and the 256 ballooned ones again.
    expect(copy + zero + removed).to.equal(100 + 4096 + 256);
    expect(removed).to.equal(256);
    expect(zero).to.be.above(0);
    expect(value(text, 'snapfault_bytes_copied_total')).to.equal(copy * 4096);
    expect(value(text, 'snapfault_fault_seconds_count')).to.equal(copy + zero + removed);
    expect(value(text, 'snapfault_fault_seconds_bucket{le="+Inf"}')).to.equal(copy + zero + removed);
    expect(value(text, 'snapfault_fault_seconds_sum')).to.be.above(0);
    // One madvise of one range in one region: one REMOVE event.
    expect(value(text, 'snapfault_remove_events_total')).to.equal(1);
    // Each guest has one vCPU thread, blocked until its fault (or madvise) is
    // served: one event is outstanding at a time, so every read takes exactly one.
    expect(value(text, 'snapfault_events_per_read_count')).to.equal(copy + zero + removed + 1);
    expect(value(text, 'snapfault_events_per_read_bucket{le="1"}')).to.equal(copy + zero + removed + 1);
    // ... so the events read add up to as many: the sum is real, not a 0 beside a growing count.
    expect(value(text, 'snapfault_events_per_read_sum')).to.equal(copy + zero + removed + 1);
    expect(value(text, 'snapfault_vms_connected')).to.equal(0);
    expect(value(text, 'snapfault_vms_ended_total{reason="exited"}')).to.equal(2);
    expect(value(text, 'snapfault_handshakes_rejected_total{reason="json"}')).to.equal(1);
    expect(text).to.not.match(/snapfault_vm_faults\{/);
    expect((await fetch(url.replace('/metrics', '/other'))).status).to.equal(404);
  });

  it('serves the process and Node.js metrics beside its own (CPU, memory, event loop, GC)', async () => {
    const mem = tmp.file('d.img', makeImage(4 * MiB, { seed: 'metrics-default' }));
    const sock = tmp.file('d.sock');
    const startedS = Date.now() / 1000;
    h = await startSnapfault(['serve', '--socket', sock, '--mem', mem, '--metrics', '127.0.0.1:0']);
    const url = (await h.waitForStderr(/metrics on (http:\/\/[^\s"]+)/))[1];
    expect((await runSim(['--socket', sock, '--mem', mem, '--verify'])).code).to.equal(0);
    await h.waitForStderr(/ ended: /); // the handler has seen the VM go
    const text = await (await fetch(url)).text();
    expect(value(text, 'process_cpu_seconds_total')).to.be.above(0);
    expect(value(text, 'process_resident_memory_bytes')).to.be.above(10 * MiB);
    expect(value(text, 'process_open_fds')).to.be.above(2);
    // Started by this test, a few seconds ago at most (prom-client rounds it to the second).
    expect(value(text, 'process_start_time_seconds')).to.be.within(Math.floor(startedS) - 1, Date.now() / 1000 + 1);
    expect(value(text, 'nodejs_heap_size_used_bytes')).to.be.above(0);
    expect(value(text, 'nodejs_eventloop_lag_seconds')).to.be.at.least(0);
    expect(text).to.match(/^nodejs_version_info\{version="v20\./m);
    expect(text).to.match(/^# TYPE nodejs_gc_duration_seconds histogram$/m);
    // Its own series are still there beside them.
    expect(value(text, 'snapfault_vms_ended_total{reason="exited"}')).to.equal(1);
  });

  it('counts what the prefetch policy installed, per VM while it is connected', async () => {
    const mem = tmp.file('p.img', makeImage(16 * MiB, { seed: 'metrics-prefetch' }));
    const sock = tmp.file('p.sock');
    h = await startSnapfault(['serve', '--socket', sock, '--mem', mem, '--prefetch', 'all', '--metrics', '127.0.0.1:0']);
    const url = (await h.waitForStderr(/metrics on (http:\/\/[^\s"]+)/))[1];
    const held = startSim(['--socket', sock, '--mem', mem, '--verify', '--pattern', 'random', '--touches', '10', '--hold-ms', '1500']);
    let during = '';
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 50));
      during = await (await fetch(url)).text();
      if (/snapfault_vm_prefetched_pages\{pid="\d+"\} [1-9]/.test(during)) break;
    }
    expect(during).to.match(/snapfault_vm_prefetched_pages\{pid="\d+"\} [1-9]\d*\n/);
    expect((await held.result).code).to.equal(0);
    let text = '';
    for (let i = 0; i < 40; i++) {
      text = await (await fetch(url)).text();
      if (value(text, 'snapfault_vms_connected') === 0 && !/snapfault_vm_prefetched_pages\{/.test(text)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const copied = value(text, 'snapfault_prefetched_pages_total{kind="copy"}');
    const zero = value(text, 'snapfault_prefetched_pages_total{kind="zero"}');
    const faults = ['copy', 'zero', 'removed_zero'].reduce((n, r) => n + value(text, `snapfault_faults_total{resolution="${r}"}`), 0);
    // Every page came in once: by the guest's fault or ahead of it (a late fault is a woken one, not a second install).
    expect(copied + zero + faults).to.equal(4096);
    expect(value(text, 'snapfault_prefetch_bytes_total')).to.equal(copied * 4096);
    // How many of the guest's 10 touches found their page in, or on its way in (late), is a race;
    // but a late fault is read and woken like any other, and each touch faults at most once.
    const late = value(text, 'snapfault_late_faults_total');
    expect(value(text, 'snapfault_fault_seconds_count')).to.equal(faults + late);
    expect(faults + late).to.be.at.most(10);
    expect(text).to.not.match(/snapfault_vm_prefetched_pages\{/);
  });

  it('a bad or busy --metrics address is a one-line start-up error', async () => {
    const mem = tmp.file('n.img', makeImage(MiB));
    const r = spawnSync(SNAPFAULT, ['--metrics', 'nowhere', tmp.file('x.sock'), mem], { encoding: 'utf8' });
    expect(r.status).to.equal(2);
    expect(r.stderr).to.match(/--metrics nowhere: expected HOST:PORT/);
    h = await startSnapfault(['serve', '--socket', tmp.file('y.sock'), '--mem', mem, '--metrics', '127.0.0.1:0']);
    const url = (await h.waitForStderr(/metrics on (http:\/\/[^\s"]+)/))[1];
    const port = new URL(url).port;
    const busy = spawnSync(SNAPFAULT, ['--metrics', `127.0.0.1:${port}`, tmp.file('z.sock'), mem], { encoding: 'utf8' });
    expect(busy.status).to.equal(2);
    expect(busy.stderr).to.match(/cannot serve metrics on 127\.0\.0\.1:\d+ \(EADDRINUSE\): choose another --metrics address/);
    expect(busy.stderr.trim().split('\n')).to.have.length(1);
  });
});
