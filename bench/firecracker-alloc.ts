// The real Firecracker (the kit), a guest allocating fresh memory after its
// restore: PUT /snapshot/load, then "alloc N" on its console (the guest maps,
// touches and checks N MiB; test/helpers/fc-alloc.sh). Fresh guest memory is
// zero in the snapshot: the C handler copies it page by page, snapfault maps
// it with UFFDIO_ZEROPAGE on demand, maps the zero ranges ahead, or takes
// them out of the userfaultfd. Rounds rotate through the handlers; medians.
import { SNAPFAULT } from '../test/helpers/paths.js';
import { kitProblem, kitCHandler, KitSnapshot, restoreAndAlloc, type Alloc } from '../test/helpers/firecracker.js';
import { median } from './harness.js';

const ROUNDS = Number(process.env.BENCH_FC_ROUNDS ?? 3);
/** The guest fills ~2.5 MiB/s here (its own page clearing, emulated): a few MiB show the handler's share. */
const ALLOC_MIB = Number(process.env.BENCH_FC_ALLOC_MIB ?? 8);

export interface AllocRow {
  mode: string;
  pinned: boolean;
  loadMs: number;
  allocMs: number;
  loadVsC: number;
  allocVsC: number;
}

export async function benchFirecrackerAlloc(): Promise<AllocRow[] | null> {
  if (kitProblem()) return null;
  const snap = new KitSnapshot(64, 256);
  await snap.ensure();
  const modes: Array<[string, string[]]> = [
    ['C handler, on demand', [kitCHandler()]],
    ['snapfault, zero pages on demand (--zero-ranges off)', [SNAPFAULT, '--zero-ranges', 'off']],
    ['snapfault, zero ranges mapped after the handshake (zeropage)', [SNAPFAULT, '--zero-ranges', 'zeropage']],
    ['snapfault, zero ranges unregistered (unregister)', [SNAPFAULT, '--zero-ranges', 'unregister']],
  ];
  const rows: AllocRow[] = [];
  for (const pinned of [true, false]) {
    const samples = modes.map(() => [] as Alloc[]);
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < modes.length; k++) {
        const i = (k + round) % modes.length;
        const r = await restoreAndAlloc(snap, modes[i][1], ALLOC_MIB, { cpu: pinned ? 0 : undefined });
        if (!r.pass) throw new Error(`${modes[i][0]}: alloc after the restore failed:\n${r.output}`);
        samples[i].push(r);
      }
    }
    const cLoad = median(samples[0].map((r) => r.loadMs));
    const cAlloc = median(samples[0].map((r) => r.allocUs));
    modes.forEach(([mode], i) => {
      const loadMs = median(samples[i].map((r) => r.loadMs));
      const allocUs = median(samples[i].map((r) => r.allocUs));
      rows.push({ mode, pinned, loadMs, allocMs: allocUs / 1000, loadVsC: loadMs / cLoad, allocVsC: allocUs / cAlloc });
    });
  }
  process.stdout.write(`## Real Firecracker: alloc ${ALLOC_MIB} MiB after the restore (${ROUNDS} rounds, medians)\n\n`);
  process.stdout.write('| handler | pinned | PUT /snapshot/load | vs C | guest alloc time | vs C |\n|---|---|---:|---:|---:|---:|\n');
  for (const r of rows) {
    process.stdout.write(`| ${r.mode} | ${r.pinned ? 'yes' : 'no'} | ${r.loadMs.toFixed(1)} ms | ${r.loadVsC.toFixed(2)}x | ${r.allocMs.toFixed(0)} ms | ${r.allocVsC.toFixed(2)}x |\n`);
  }
  process.stdout.write('\n');
  return rows;
}
