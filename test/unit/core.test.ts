// The WASM core on its own: page lookup, removes, fault planning, zero scan.
import { expect } from 'chai';
import { compileCore, createSharedMemory, instantiateCore, type Core } from '../../src/core/wasm-core.js';
import { Arena } from '../../src/core/arena.js';
import { writeVmTable } from '../../src/vm/vm-table.js';
import { LAYOUT, UFFD_EVENT } from '../../native/uffd_abi.js';

describe('WASM core', () => {
  let core: Core;
  let arena: Arena;
  let dv: () => DataView;
  const PAGE = 4096;
  const HUGE = 2 * 1024 * 1024;
  const A = 0x7f0000000000n;
  const B = 0x7f1000000000n;
  const SRC = 0x10000000;
  const ZERO_SRC = 0x20000000;

  beforeEach(() => {
    core = instantiateCore(compileCore(), createSharedMemory());
    arena = new Arena(core.memory);
    dv = () => new DataView(core.memory.buffer);
  });

  function vm(regions: Array<{ base: bigint; size: bigint; offset: bigint; pageSize: number }>, zeroBitmap = 0): number {
    const size = regions.reduce((s, r) => s + r.size, 0n);
    return writeVmTable(core, arena, regions, { size, srcBase: SRC, zeroBitmap }, ZERO_SRC).table;
  }

  function msgs(list: Array<['fault', bigint] | ['remove', bigint, bigint] | ['other']>): number {
    const p = arena.alloc(list.length * 32);
    list.forEach((m, i) => {
      const o = p + i * LAYOUT.uffd_msg.size;
      const v = dv();
      if (m[0] === 'fault') {
        v.setUint8(o, UFFD_EVENT.PAGEFAULT);
        v.setBigUint64(o + LAYOUT.uffd_msg.pagefault_address, m[1], true);
      } else if (m[0] === 'remove') {
        v.setUint8(o, UFFD_EVENT.REMOVE);
        v.setBigUint64(o + LAYOUT.uffd_msg.remove_start, m[1], true);
        v.setBigUint64(o + LAYOUT.uffd_msg.remove_end, m[2], true);
      } else v.setUint8(o, UFFD_EVENT.FORK);
    });
    return p;
  }

  interface Action { kind: string; msg: number; dst: bigint; src?: bigint; len: bigint; wake: [bigint, bigint] }
  function plan(table: number, m: number, count: number): Action[] {
    const L = core.layout;
    const acts = arena.alloc(count * L.ACTION_STRIDE);
    const n = core.fn.plan(table, m, count, acts);
    const out: Action[] = [];
    const v = dv();
    for (let k = 0; k < n; k++) {
      const a = acts + k * L.ACTION_STRIDE;
      const kind = v.getUint32(a + L.ACTION_KIND, true);
      const io = a + L.ACTION_IOCTL;
      const wake: [bigint, bigint] = [v.getBigUint64(a + L.ACTION_WAKE, true), v.getBigUint64(a + L.ACTION_WAKE + 8, true)];
      const msg = v.getUint32(a + L.ACTION_MSG_INDEX, true);
      if (kind === L.KIND_COPY) {
        out.push({ kind: 'copy', msg, dst: v.getBigUint64(io + LAYOUT.uffdio_copy.dst, true), src: v.getBigUint64(io + LAYOUT.uffdio_copy.src, true), len: v.getBigUint64(io + LAYOUT.uffdio_copy.len, true), wake });
        expect(v.getBigUint64(io + LAYOUT.uffdio_copy.mode, true)).to.equal(0n);
      } else if (kind === L.KIND_ZEROPAGE) {
        out.push({ kind: 'zero', msg, dst: v.getBigUint64(io + LAYOUT.uffdio_zeropage.range, true), len: v.getBigUint64(io + LAYOUT.uffdio_zeropage.range + 8, true), wake });
      } else out.push({ kind: 'unmapped', msg, dst: v.getBigUint64(io, true), len: 0n, wake });
    }
    return out;
  }

  const twoRegions = () => vm([
    { base: A, size: 16n * 4096n, offset: 0n, pageSize: PAGE },
    { base: B, size: 16n * 4096n, offset: 16n * 4096n, pageSize: PAGE },
  ]);

  it('maps faults in each region to the right file offset, rounding the address down', () => {
    const t = twoRegions();
    const acts = plan(t, msgs([['fault', A + 4096n * 3n + 123n], ['fault', B + 5n]]), 2);
    expect(acts).to.have.length(2);
    expect(acts[0]).to.include({ kind: 'copy', dst: A + 3n * 4096n, src: BigInt(SRC + 3 * 4096), len: 4096n });
    expect(acts[0].wake).to.deep.equal([A + 3n * 4096n, 4096n]);
    expect(acts[1]).to.include({ kind: 'copy', dst: B, src: BigInt(SRC + 16 * 4096), msg: 1 });
  });

  it('applies removes before the faults of the same batch, whatever their order', () => {
    const t = twoRegions();
    const acts = plan(t, msgs([['fault', A + 4096n], ['remove', A, A + 2n * 4096n], ['fault', A + 2n * 4096n]]), 3);
    expect(acts.map((a) => a.kind)).to.deep.equal(['zero', 'copy']);
    expect(core.fn.isRemoved(t, A)).to.equal(1);
    expect(core.fn.isRemoved(t, A + 2n * 4096n)).to.equal(0);
    // Removed pages stay zero in later batches too.
    expect(plan(t, msgs([['fault', A + 10n]]), 1)[0].kind).to.equal('zero');
  });

  it('a remove spanning regions and partial words marks exactly its pages', () => {
    const t = vm([{ base: A, size: 100n * 4096n, offset: 0n, pageSize: PAGE }]);
    core.fn.applyRemove(t, A + 3n * 4096n, A + 70n * 4096n);
    for (let p = 0n; p < 100n; p++) expect(core.fn.isRemoved(t, A + p * 4096n), `page ${p}`).to.equal(p >= 3n && p < 70n ? 1 : 0);
    core.fn.applyRemove(t, A - 4096n * 10n, A + 1n); // partial page at the start, range begins before the region
    expect(core.fn.isRemoved(t, A)).to.equal(1);
    expect(core.fn.isRemoved(t, A + 4096n)).to.equal(0);
  });

  it('drops repeated faults on one page within a batch, ignores other events', () => {
    const t = twoRegions();
    const acts = plan(t, msgs([['fault', A], ['other'], ['fault', A + 8n], ['fault', A + 4096n]]), 4);
    expect(acts.map((a) => a.dst)).to.deep.equal([A, A + 4096n]);
    expect(dv().getBigUint64(t + core.layout.VM_STAT_OTHER_EVENTS, true)).to.equal(1n);
  });

  it('reports a fault outside every region', () => {
    const t = twoRegions();
    const acts = plan(t, msgs([['fault', A], ['fault', A + 16n * 4096n]]), 2);
    expect(acts[1]).to.include({ kind: 'unmapped', dst: A + 16n * 4096n });
  });

  it('refuses to read past the end of the snapshot', () => {
    const t = writeVmTable(core, arena, [{ base: A, size: 16n * 4096n, offset: 0n, pageSize: PAGE }], { size: 8n * 4096n, srcBase: SRC, zeroBitmap: 0 }, 0).table;
    expect(plan(t, msgs([['fault', A + 8n * 4096n]]), 1)[0].kind).to.equal('unmapped');
    expect(plan(t, msgs([['fault', A + 7n * 4096n]]), 1)[0].kind).to.equal('copy');
  });

  it('hugetlbfs pages: whole 2 MiB copies; removed ones come from the zeroed huge page', () => {
    const t = vm([{ base: A, size: 4n * BigInt(HUGE), offset: 0n, pageSize: HUGE }]);
    const acts = plan(t, msgs([['remove', A, A + BigInt(HUGE)], ['fault', A + 5000n], ['fault', A + BigInt(HUGE) * 2n + 7n]]), 3);
    expect(acts[0]).to.include({ kind: 'copy', dst: A, src: BigInt(ZERO_SRC), len: BigInt(HUGE) });
    expect(acts[1]).to.include({ kind: 'copy', dst: A + 2n * BigInt(HUGE), src: BigInt(SRC + 2 * HUGE), len: BigInt(HUGE) });
  });

  it('zero scan marks exactly the all-zero pages, and their faults become ZEROPAGE', () => {
    const pages = 64;
    const buf = arena.alloc(pages * PAGE, 4096);
    const bytes = new Uint8Array(core.memory.buffer, buf, pages * PAGE);
    const nonZero = new Set([0, 5, 31, 32, 63]);
    for (const p of nonZero) bytes[p * PAGE + (p * 97) % PAGE] = 1; // one byte anywhere in the page
    const bitmap = arena.alloc(pages / 8);
    expect(core.fn.scanZeroPages(buf, pages * PAGE, bitmap, 0n)).to.equal(pages - nonZero.size);
    const t = vm([{ base: A, size: BigInt(pages * PAGE), offset: 0n, pageSize: PAGE }], bitmap);
    for (let p = 0; p < pages; p++) {
      const [a] = plan(t, msgs([['fault', A + BigInt(p * PAGE)]]), 1);
      expect(a.kind, `page ${p}`).to.equal(nonZero.has(p) ? 'copy' : 'zero');
    }
  });
});

describe('Arena', () => {
  it('allocates aligned, zeroed, non-overlapping blocks, reuses freed space, grows memory', () => {
    const memory = createSharedMemory();
    const arena = new Arena(memory);
    const a = arena.alloc(100);
    const b = arena.alloc(5000, 4096);
    expect(b % 4096).to.equal(0);
    expect(b).to.be.at.least(a + 100);
    new Uint8Array(memory.buffer, a, 100).fill(7);
    arena.freeBlock(a);
    const c = arena.alloc(64);
    expect(c).to.equal(a);
    expect(new Uint8Array(memory.buffer, c, 64).every((x) => x === 0)).to.equal(true);
    const before = memory.buffer.byteLength;
    const big = arena.alloc(before * 2);
    expect(memory.buffer.byteLength).to.be.above(before);
    arena.freeBlock(big);
    arena.freeBlock(b);
    arena.freeBlock(c);
    expect(arena.inUse).to.equal(0);
    expect(() => arena.freeBlock(c)).to.throw(/not allocated/);
  });
});
