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
    core.fn.markRemoved(t, A + 3n * 4096n, A + 70n * 4096n);
    for (let p = 0n; p < 100n; p++) expect(core.fn.isRemoved(t, A + p * 4096n), `page ${p}`).to.equal(p >= 3n && p < 70n ? 1 : 0);
    core.fn.markRemoved(t, A - 4096n * 10n, A + 1n); // partial page at the start, range begins before the region
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

  describe('present pages and prefetch planning', () => {
    interface Run { kind: string; dst: bigint; src: bigint; len: bigint; mode: bigint; filePage: number; pages: number }
    interface Step extends Run { consumed: number; arg: number; runs: Run[] }
    function prefetchStep(t: number, first: number, count: number, maxPages = 16): Step {
      const L = core.layout;
      const step = arena.alloc(L.STEP_SIZE);
      core.fn.prefetchPlan(t, 0, first, count, -1, -1, -1, maxPages, step);
      const v = dv();
      const k = v.getUint32(step + L.STEP_KIND, true);
      const runs: Run[] = [];
      for (let i = 0; i < v.getUint32(step + L.STEP_COUNT, true); i++) {
        const a = step + L.STEP_ACTION + i * L.ACTION_STRIDE;
        const io = a + L.ACTION_IOCTL;
        const kind = v.getUint32(a + L.ACTION_KIND, true) === L.KIND_COPY ? 'copy' : 'zero';
        runs.push({
          kind, dst: v.getBigUint64(io, true), src: kind === 'copy' ? v.getBigUint64(io + 8, true) : 0n,
          len: kind === 'copy' ? v.getBigUint64(io + 16, true) : v.getBigUint64(io + 8, true),
          mode: kind === 'copy' ? v.getBigUint64(io + 24, true) : v.getBigUint64(io + 16, true),
          filePage: v.getUint32(a + L.ACTION_FILE_PAGE, true), pages: v.getUint32(a + L.ACTION_PAGES, true),
        });
      }
      const none: Run = { kind: k === L.STEP_NONE ? 'none' : String(k), dst: 0n, src: 0n, len: 0n, mode: 0n, filePage: 0, pages: 0 };
      return { ...(runs[0] ?? none), consumed: v.getUint32(step + L.STEP_CONSUMED, true), arg: v.getUint32(step + L.STEP_ARG, true), runs };
    }
    function done(t: number, first: number, count: number): void {
      const L = core.layout;
      const step = arena.alloc(L.STEP_SIZE);
      core.fn.prefetchPlan(t, 0, first, count, -1, -1, -1, 1 << 20, step);
      for (let i = 0; i < dv().getUint32(step + L.STEP_COUNT, true); i++) {
        const a = step + L.STEP_ACTION + i * L.ACTION_STRIDE;
        core.fn.prefetchDone(t, a, Number(dv().getBigUint64(a + L.ACTION_WAKE + 8, true)));
      }
    }

    it('plans runs of missing pages as DONTWAKE copies, at most maxPages pages a batch, split where regions are', () => {
      const t = twoRegions();
      const s = prefetchStep(t, 10, 12, 4);
      expect(s).to.include({ kind: 'copy', consumed: 4, dst: A + 10n * 4096n, src: BigInt(SRC + 10 * 4096), len: 4n * 4096n, mode: 1n, filePage: 10, pages: 4 });
      expect(s.runs).to.have.length(1);
      // Pages 14-15 end region 0; page 16 starts region 1 at B: not contiguous, so the batch holds two runs.
      const s2 = prefetchStep(t, 14, 8, 16);
      expect(s2.consumed).to.equal(8);
      expect(s2.runs.map((r) => [r.dst, r.len, r.filePage])).to.deep.equal([[A + 14n * 4096n, 2n * 4096n, 14], [B, 6n * 4096n, 16]]);
    });

    it('skips pages a fault installed, prefetch installed or the guest removed', () => {
      const t = twoRegions();
      plan(t, msgs([['fault', A + 2n * 4096n]]), 1); // demand fault: page 2 present
      core.fn.markRemoved(t, A + 5n * 4096n, A + 7n * 4096n); // pages 5, 6 removed
      done(t, 8, 2); // pages 8, 9 prefetched
      const s = prefetchStep(t, 0, 16, 16);
      expect(s.runs.map((r) => [r.filePage, r.pages])).to.deep.equal([[0, 2], [3, 2], [7, 1], [10, 6]]);
      expect(s.consumed).to.equal(16);
      expect(core.fn.isPagePresent(t, 8)).to.equal(1);
      expect(core.fn.isPagePresent(t, 5)).to.equal(0);
    });

    it('a fault on a page prefetch installed gets the real ioctl all the same (EEXIST wakes it), counted as late, not as a copy, once settled', () => {
      const t = twoRegions();
      done(t, 3, 1);
      const L = core.layout;
      const acts = arena.alloc(2 * L.ACTION_STRIDE);
      expect(core.fn.plan(t, msgs([['fault', A + 3n * 4096n + 5n]]), 1, acts)).to.equal(1);
      expect(dv().getUint32(acts + L.ACTION_KIND, true)).to.equal(L.KIND_COPY);
      expect(dv().getBigUint64(acts + L.ACTION_WAKE, true)).to.equal(A + 3n * 4096n);
      expect(dv().getUint32(acts + L.ACTION_LATE, true)).to.equal(1);
      expect(dv().getBigUint64(t + L.VM_STAT_LATE, true)).to.equal(0n); // nothing counts before it is done
      core.fn.settle(t, acts, 0);
      expect(dv().getBigUint64(t + L.VM_STAT_LATE, true)).to.equal(1n);
      expect(dv().getBigUint64(t + L.VM_STAT_COPY, true)).to.equal(0n); // counted late, not as a copy of its own
      expect(dv().getBigUint64(t + L.VM_STAT_BYTES, true)).to.equal(0n); // EEXIST copied nothing
      core.fn.markRemoved(t, A + 3n * 4096n, A + 4n * 4096n);
      expect(core.fn.isPagePresent(t, 3)).to.equal(0);
      expect(plan(t, msgs([['fault', A + 3n * 4096n]]), 1)[0].kind).to.equal('zero');
      expect(prefetchStep(t, 3, 1).kind).to.equal('none');
    });

    it('a page whose install a REMOVE zapped is installed again on its next fault, never only woken (the livelock)', () => {
      const t = twoRegions();
      // One read: a fault on page 3 and a REMOVE of it. The zeropage goes in after the
      // REMOVE was read, and the madvise then zaps it: the page is missing, its bit set.
      const first = plan(t, msgs([['fault', A + 3n * 4096n], ['remove', A + 3n * 4096n, A + 4n * 4096n]]), 2);
      expect(first.map((a) => a.kind)).to.deep.equal(['zero']);
      expect(core.fn.isPagePresent(t, 3)).to.equal(1);
      // The guest faults on it again, with no REMOVE in between: a real zeropage, not a bare wake.
      for (let i = 0; i < 3; i++) {
        const again = plan(t, msgs([['fault', A + 3n * 4096n]]), 1);
        expect(again.map((a) => [a.kind, a.dst, a.len])).to.deep.equal([['zero', A + 3n * 4096n, 4096n]]);
      }
    });

    it('keepFaults keeps only the faults after EAGAIN: the removes were applied and are not applied or counted again', () => {
      const t = twoRegions();
      const L = core.layout;
      const m = msgs([['fault', A], ['remove', A + 8n * 4096n, A + 9n * 4096n], ['fault', A + 4096n], ['remove', A, A + 4096n], ['fault', A + 2n * 4096n]]);
      const acts = arena.alloc(5 * L.ACTION_STRIDE);
      expect(core.fn.plan(t, m, 5, acts)).to.equal(3);
      expect(dv().getBigUint64(t + L.VM_STAT_REMOVE_EVENTS, true)).to.equal(2n);
      // EAGAIN on the second fault (message 2): keep messages 2.. but only the faults.
      expect(core.fn.keepFaults(m, 2, 5)).to.equal(2);
      expect(dv().getBigUint64(m + L.MSG_PF_ADDRESS, true)).to.equal(A + 4096n);
      expect(dv().getBigUint64(m + L.MSG_SIZE + L.MSG_PF_ADDRESS, true)).to.equal(A + 2n * 4096n);
      core.fn.plan(t, m, 2, acts);
      expect(dv().getBigUint64(t + L.VM_STAT_REMOVE_EVENTS, true)).to.equal(2n);
    });

    it('giveBack on a 2 MiB page clears its one bit and nothing past the bitmap', () => {
      const L = core.layout;
      const H = BigInt(HUGE);
      const t = vm([{ base: A, size: 8n * H, offset: 0n, pageSize: HUGE }]);
      const r = t + L.VM_REGIONS;
      const present = dv().getUint32(r + L.REGION_PRESENT, true);
      const sentinel = present + 4; // the 8-bit bitmap takes one u32 word: whatever follows must stay (512 bits cleared at page 2 would hit bytes 128-191)
      const after = new Uint8Array(core.memory.buffer, sentinel, 256);
      const saved = after.slice();
      after.fill(0xff);
      for (let p = 0n; p < 8n; p++) core.fn.markPresent(t, A + p * H);
      expect(dv().getUint32(present, true)).to.equal(0xff);
      core.fn.giveBack(t, A + 2n * H, H);
      expect(dv().getUint32(present, true)).to.equal(0xfb);
      core.fn.giveBack(t, A + 5n * H, 3n * H);
      expect(dv().getUint32(present, true)).to.equal(0x1b);
      expect(after.every((b) => b === 0xff)).to.equal(true);
      after.set(saved);
    });

    it('unmarkPlanned gives back the pages of actions not issued (EAGAIN), so neither side skips them', () => {
      const t = twoRegions();
      const L = core.layout;
      const acts = arena.alloc(4 * L.ACTION_STRIDE);
      expect(core.fn.plan(t, msgs([['fault', A], ['fault', A + 4096n], ['fault', A + 2n * 4096n]]), 3, acts)).to.equal(3);
      for (const p of [0, 1, 2]) expect(core.fn.isPagePresent(t, p)).to.equal(1);
      core.fn.unmarkPlanned(t, acts, 1, 3);
      expect([0, 1, 2].map((p) => core.fn.isPagePresent(t, p))).to.deep.equal([1, 0, 0]);
    });

    it('zero pages of the zero bitmap become DONTWAKE zeropage runs; a zero page costs a quarter of the batch budget', () => {
      const bitmap = arena.alloc(64);
      dv().setUint32(bitmap, 0xffffff00, true); // pages 8-31 zero
      const t = vm([{ base: A, size: 64n * 4096n, offset: 0n, pageSize: PAGE }], bitmap);
      expect(prefetchStep(t, 0, 64, 4)).to.include({ kind: 'copy', len: 4n * 4096n, consumed: 4 });
      const s = prefetchStep(t, 4, 60, 8);
      expect(s.runs.map((r) => [r.kind, r.filePage, r.pages])).to.deep.equal([['copy', 4, 4], ['zero', 8, 16]]);
      expect(s.runs[1]).to.include({ dst: A + 8n * 4096n, mode: 1n });
    });

    it('counts what prefetch installed apart from demand faults', () => {
      const t = twoRegions();
      done(t, 0, 5);
      expect(dv().getBigUint64(t + core.layout.VM_STAT_PREFETCHED, true)).to.equal(5n);
      expect(dv().getBigUint64(t + core.layout.VM_STAT_PREFETCH_BYTES, true)).to.equal(5n * 4096n);
      expect(dv().getBigUint64(t + core.layout.VM_STAT_COPY, true)).to.equal(0n);
    });
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
