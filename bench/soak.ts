// The long soak: one `snapfault serve` (raw or compressed snapshot) meets, for
// SOAK_MINUTES, a stream of simulated Firecrackers: healthy ones checking
// every byte (with and without balloons), ones dying mid-restore, ones sending
// malformed handshakes. Fails on the first wrong byte, a healthy VM not
// served, or fds/memory of the handler growing.
//   node build/bench/soak.js [raw|compressed]      (after npm run build)
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { Proc, startSim } from '../test/helpers/processes.js';
import { SNAPFAULT } from '../test/helpers/paths.js';
import { makeImage, prng } from '../test/helpers/images.js';
import { pack } from '../src/compressed/pack.js';
import { tmpPath } from './harness.js';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 10);
const CONCURRENT = Number(process.env.SOAK_VMS ?? 4);
const MiB = 1 << 20;

const rss = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
const fds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

async function main(): Promise<number> {
  const kind = process.argv[2] === 'compressed' ? 'compressed' : 'raw';
  const mem = tmpPath('soak.img');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(mem, makeImage(64 * MiB, { seed: 'soak' }));
  let served = mem;
  if (kind === 'compressed') {
    served = tmpPath('soak.sfz');
    await pack(mem, served);
  }
  const bad = tmpPath('bad.json');
  writeFileSync(bad, '[{"base_host_virt_addr":140000000000001,"size":4096,"offset":0}]');
  const sock = tmpPath('soak.sock');
  const h = new Proc(SNAPFAULT, ['serve', '--socket', sock, '--mem', served, '--workers', '2', '--log-level', 'warn']);
  for (let i = 0; i < 2000 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 5));
  const end = Date.now() + MINUTES * 60_000;
  const counts = { healthy: 0, dying: 0, malformed: 0 };
  let n = 0;
  let baseline: { rss: number; fds: number } | null = null;
  const worker = async (): Promise<void> => {
    while (Date.now() < end) {
      const dice = prng(`soak-${n++}`, 8);
      const base = ['--socket', sock, '--mem', mem, '--seed', String(n), '--timeout-ms', '120000'];
      const roll = dice[0] % 10;
      if (roll < 6) {
        const args = [...base, '--verify', '--pattern', ['random', 'seq', 'hot'][dice[1] % 3], '--threads', String(1 + (dice[2] % 2))];
        if (dice[3] % 2) args.push('--balloon', `${dice[4] % 32}M:1M`, '--balloon-mode', ['before', 'after', 'concurrent'][dice[5] % 3]);
        const r = await startSim(args).result;
        if (r.code !== 0 || r.json?.mismatches !== 0) throw new Error(`a healthy VM failed (${r.code ?? r.signal}): ${r.stderr}\n${h.stderr}`);
        counts.healthy++;
      } else if (roll < 9) {
        const r = await startSim([...base, '--pattern', 'random', '--die-after', String(1 + dice[6] * 30)]).result;
        if (r.signal !== 'SIGKILL') throw new Error(`a dying VM did not die: ${r.stderr}`);
        counts.dying++;
      } else {
        const r = await startSim([...base, '--raw-handshake', bad, '--touches', '1']).result;
        if (r.signal !== 'SIGKILL') throw new Error(`a malformed handshake was not refused: ${r.stderr}`);
        counts.malformed++;
      }
      if (h.child.exitCode !== null) throw new Error(`the handler exited: ${h.stderr}`);
    }
  };
  // First a quiet pass sets the baseline, then the soak proper.
  const first = await startSim(['--socket', sock, '--mem', mem, '--verify']).result;
  if (first.code !== 0) throw new Error(`warm-up failed: ${first.stderr}`);
  await new Promise((r) => setTimeout(r, 500));
  baseline = { rss: rss(h.pid), fds: fds(h.pid) };
  await Promise.all(Array.from({ length: CONCURRENT }, worker));
  await new Promise((r) => setTimeout(r, 1000));
  const after = { rss: rss(h.pid), fds: fds(h.pid) };
  h.kill('SIGTERM');
  await h.waitExit(30_000);
  process.stdout.write(`soak (${kind}, ${MINUTES} min, ${CONCURRENT} at a time): ${counts.healthy} healthy VMs served and checked, ` +
    `${counts.dying} died mid-restore, ${counts.malformed} malformed handshakes refused; handler fds ${baseline.fds} -> ${after.fds}, ` +
    `RSS ${(baseline.rss / MiB).toFixed(0)} -> ${(after.rss / MiB).toFixed(0)} MiB\n`);
  if (after.fds !== baseline.fds) throw new Error(`the handler's fds grew from ${baseline.fds} to ${after.fds}`);
  if (after.rss > baseline.rss + 64 * MiB) throw new Error(`the handler's memory grew by ${((after.rss - baseline.rss) / MiB).toFixed(0)} MiB`);
  return 0;
}

main().then((c) => process.exit(c), (e: Error) => {
  process.stderr.write(`soak failed: ${e.message}\n`);
  process.exit(1);
});
