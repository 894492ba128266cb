// VM records (src/state/vm-record.ts): what one handler writes, the next one
// reads back; and the fault worker's mirror of REMOVEs (removed-mirror.ts)
// holds exactly the pages the core marked removed, for random removes over
// 4 KiB and 2 MiB regions, so that a successor loads the same bitmaps.
import { expect } from 'chai';
import { compileCore, createSharedMemory, instantiateCore, type Core } from '../../src/core/wasm-core.js';
import { Arena } from '../../src/core/arena.js';
import { writeVmTable } from '../../src/vm/vm-table.js';
import { LAYOUT, UFFD_EVENT } from '../../native/uffd_abi.js';
import { VmRecord, type VmIdentity } from '../../src/state/vm-record.js';
import { RemovedMirror } from '../../src/state/removed-mirror.js';
import { mirrorTarget, loadRemoved } from '../../src/state/recorded-vm.js';
import { viewOf } from '../../native/mmap.js';
import { TempDir } from '../helpers/images.js';

const KiB4 = 4096;
const MiB2 = 2 * 1024 * 1024;

describe('VM records and the removed-pages mirror', () => {
  const tmp = new TempDir();
  let core: Core;
  let arena: Arena;
  after(() => tmp.remove());
  beforeEach(() => {
    core = instantiateCore(compileCore(), createSharedMemory());
    arena = new Arena(core.memory);
  });

  const regions = [
    { base: 0x7f0000000000n, size: 1000n * BigInt(KiB4), offset: 0n, pageSize: KiB4 },
    { base: 0x7f1000000000n, size: 40n * BigInt(MiB2), offset: 1000n * BigInt(KiB4), pageSize: MiB2 },
    { base: 0x7f2000000000n, size: 77n * BigInt(KiB4), offset: 1000n * BigInt(KiB4) + 40n * BigInt(MiB2), pageSize: KiB4 },
  ];
  const identity = (pid: number): VmIdentity => ({
    pid, startTime: 123456789n, uffdDev: 14, uffdIno: 987654321n, handshakeMs: 1764500000123.5,
    snapshotPath: '/srv/snapshots/vm1/mem', snapshotIdentity: '2049:131:84213760:1764500000000.25', regions,
  });

  it('reads back what was written, with empty bitmaps', () => {
    const written = VmRecord.create(tmp.path, identity(4242));
    written.close(false);
    const read = VmRecord.open(written.path);
    expect(read.identity).to.deep.equal(identity(4242));
    for (let i = 0; i < regions.length; i++) expect(read.words(i).every((w) => w === 0)).to.equal(true);
    read.close(true);
  });

  it('the mirror of random removes equals the core\'s removed bitmaps, and a successor loads them back', () => {
    const total = regions.reduce((s, r) => s + r.size, 0n);
    const table = writeVmTable(core, arena, regions, { size: total, srcBase: 0x10000000, zeroBitmap: 0 }, 0x20000000).table;
    const record = VmRecord.create(tmp.path, identity(4343));
    const mirror = new RemovedMirror(core, table, mirrorTarget(record), (addr, length) => viewOf({ addr, length }));
    const count = 64;
    const msgs = arena.alloc(count * LAYOUT.uffd_msg.size);
    const actions = arena.alloc(count * core.layout.ACTION_STRIDE);
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let batch = 0; batch < 20; batch++) {
      const dv = new DataView(core.memory.buffer);
      for (let i = 0; i < count; i++) {
        const r = regions[rnd(regions.length)];
        // Any bytes, page-aligned or not, sometimes past the region's end: the core rounds outwards and clips.
        const start = r.base + BigInt(rnd(Number(r.size)));
        const end = start + BigInt(1 + rnd(r.pageSize * 5));
        const o = msgs + i * LAYOUT.uffd_msg.size;
        dv.setUint8(o, UFFD_EVENT.REMOVE);
        dv.setBigUint64(o + LAYOUT.uffd_msg.remove_start, start, true);
        dv.setBigUint64(o + LAYOUT.uffd_msg.remove_end, end, true);
      }
      core.fn.plan(table, msgs, count, actions);
      mirror.record(new Int32Array(core.memory.buffer), new DataView(core.memory.buffer), msgs, 0, count);
    }
    const dv = new DataView(core.memory.buffer);
    regions.forEach((_, i) => {
      const at = dv.getUint32(table + core.layout.VM_REGIONS + i * core.layout.REGION_STRIDE + core.layout.REGION_REMOVED, true);
      const words = record.words(i);
      expect([...words], `region ${i}`).to.deep.equal([...new Uint32Array(core.memory.buffer, at, words.length)]);
      expect(words.some((w) => w !== 0)).to.equal(true);
    });
    record.close(false);
    // A successor: the record opened anew, loaded into a fresh table.
    const again = VmRecord.open(record.path);
    const t2 = writeVmTable(core, arena, regions, { size: total, srcBase: 0x10000000, zeroBitmap: 0 }, 0x20000000).table;
    expect(loadRemoved(core, t2, again)).to.be.above(0);
    for (const r of regions) {
      for (let k = 0; k < 50; k++) {
        const addr = r.base + BigInt(rnd(Number(r.size)));
        expect(core.fn.isRemoved(t2, addr), `0x${addr.toString(16)}`).to.equal(core.fn.isRemoved(table, addr));
      }
    }
    again.close(true);
  });
});
