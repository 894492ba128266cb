// The prefetch policies and the pieces of the prefetch worker on their own:
// readahead's windows, replay and all, the policy interface checks, the
// fault feed and the range queue.
import { expect } from 'chai';
import { preparePrefetch, parsePrefetch } from '../../src/prefetch/policy-spec.js';
import { instantiatePolicy, type PrefetchPolicy } from '../../src/prefetch/policies.js';
import { compilePolicy } from '../../src/prefetch/policy-abi.js';
import { RangeQueue } from '../../src/prefetch/range-queue.js';
import { feedPush, feedDrain, FEED_BYTES, FEED_CAPACITY, ringAfter, adaptRing, RING_DEFAULT, RING_SOON, RING_SELDOM } from '../../src/prefetch/fault-feed.js';
import { PolicyError, UsageError } from '../../src/errors.js';

const PAGES = 1 << 18;

function ranges(policy: PrefetchPolicy, faults: number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const sink = { push: (first: number, count: number) => (out.push([first, count]), true) };
  faults.forEach((p, i) => policy.onFault(p, i, sink));
  return out;
}

describe('prefetch policies', () => {
  const readahead = (): PrefetchPolicy => {
    const { policy } = preparePrefetch({ kind: 'readahead' }, BigInt(PAGES * 4096));
    return instantiatePolicy(policy, PAGES, () => 0);
  };

  it('--prefetch parses every documented form and refuses the rest', () => {
    expect(parsePrefetch('none')).to.deep.equal({ kind: 'none' });
    expect(parsePrefetch('all')).to.deep.equal({ kind: 'all', trace: null });
    expect(parsePrefetch('all:t.trace')).to.deep.equal({ kind: 'all', trace: 't.trace' });
    expect(parsePrefetch('replay:a/b.trace')).to.deep.equal({ kind: 'replay', trace: 'a/b.trace' });
    expect(parsePrefetch('./p.wasm')).to.deep.equal({ kind: 'module', path: './p.wasm' });
    for (const bad of ['replay:', 'fast', '']) expect(() => parsePrefetch(bad)).to.throw(UsageError);
  });

  it('readahead: the second sequential fault asks for a window, later ones double it up to 2 MiB, always ahead', () => {
    const r = readahead();
    const faults = [100, 101];
    let out = ranges(r, faults);
    expect(out).to.deep.equal([[102, 16]]);
    // The guest goes on through the window: the next fault comes at its end.
    let at = 118;
    const windows: number[] = [];
    for (let i = 0; i < 8; i++) {
      out = ranges(r, [at]);
      expect(out).to.have.length(1);
      expect(out[0][0]).to.equal(at + 1 > 118 ? out[0][0] : at + 1);
      windows.push(out[0][1]);
      at = out[0][0] + out[0][1];
    }
    expect(windows).to.deep.equal([32, 64, 128, 256, 512, 512, 512, 512]);
  });

  it('readahead: random faults ask for nothing; two interleaved streams are both followed', () => {
    const r = readahead();
    expect(ranges(r, [5000, 17, 90000, 3, 123456, 777])).to.deep.equal([]);
    const out = ranges(r, [1000, 50000, 1001, 50001]);
    expect(out).to.deep.equal([[1002, 16], [50002, 16]]);
  });

  it('readahead: a fault inside a window already asked for asks only when the lead runs short', () => {
    const r = readahead();
    ranges(r, [0, 1]); // asked [2, 18)
    expect(ranges(r, [5])).to.deep.equal([[18, 32]]); // lead 13 <= window 32: one more window
    expect(ranges(r, [6])).to.deep.equal([[50, 64]]);
    expect(ranges(r, [7, 8, 9])).to.deep.equal([[114, 128], [242, 256], [498, 512]]);
    expect(ranges(r, [10])).to.deep.equal([]); // lead 1000 > 512: far enough ahead
  });

  it('replay hands out the trace ranges in order, then nothing; all then sweeps every page', () => {
    const list = Uint32Array.from([7, 2, 1, 1, 40, 3]);
    const drain = (p: PrefetchPolicy): Array<[number, number]> => {
      const out: Array<[number, number]> = [];
      const sink = { push: (f: number, c: number) => (out.push([f, c]), true) };
      for (let i = 0; i < 100 && p.idle(sink); i++);
      return out;
    };
    expect(drain(instantiatePolicy({ kind: 'replay', name: 'r', ranges: list }, 1000, () => 0))).to.deep.equal([[7, 2], [1, 1], [40, 3]]);
    const all = drain(instantiatePolicy({ kind: 'all', name: 'a', ranges: list }, 1000, () => 0));
    expect(all.slice(0, 3)).to.deep.equal([[7, 2], [1, 1], [40, 3]]);
    expect(all.slice(3)).to.deep.equal([[0, 512], [512, 488]]);
  });

  it('a module is checked when loaded: exports, imports', () => {
    expect(() => compilePolicy(new Uint8Array([1, 2, 3]), 'x.wasm')).to.throw(PolicyError, /not a valid WebAssembly module/);
    // (module (import "wasi" "fd_write" (func)) (memory (export "memory") 1))
    const importsWasi = Uint8Array.from([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 2, 17, 1, 4, 119, 97, 115, 105, 8, 102, 100, 95, 119, 114, 105, 116, 101, 0, 0,
      5, 3, 1, 0, 1, 7, 10, 1, 6, 109, 101, 109, 111, 114, 121, 2, 0]);
    expect(() => compilePolicy(importsWasi, 'y.wasm')).to.throw(PolicyError, /does not export the function sf_abi_version/);
  });

  it('the fault feed hands pages over in order and drops them when full (never blocks the fault worker)', () => {
    const m = new Int32Array(new SharedArrayBuffer(FEED_BYTES + 64));
    const feed = 64;
    for (let i = 0; i < FEED_CAPACITY; i++) expect(feedPush(m, feed, i)).to.equal(true);
    expect(feedPush(m, feed, 99)).to.equal(false);
    const got: number[] = [];
    expect(feedDrain(m, feed, (p) => got.push(p))).to.equal(FEED_CAPACITY);
    expect(got[0]).to.equal(0);
    expect(got[FEED_CAPACITY - 1]).to.equal(FEED_CAPACITY - 1);
    expect(feedPush(m, feed, 0xfffffffe)).to.equal(true);
    feedDrain(m, feed, (p) => expect(p).to.equal(0xfffffffe));
  });

  it('the policy sets how often the fault worker rings: soon while it asks for pages, seldom while it does not', () => {
    const m = new Int32Array(new SharedArrayBuffer(FEED_BYTES + 64));
    expect(ringAfter(m, 64)).to.equal(RING_DEFAULT);
    adaptRing(m, 64, true);
    expect(ringAfter(m, 64)).to.equal(RING_SOON);
    const seen: number[] = [];
    for (let i = 0; i < 9; i++) {
      adaptRing(m, 64, false);
      seen.push(ringAfter(m, 64));
    }
    expect(seen).to.deep.equal([4, 8, 16, 32, 64, 128, 256, 256, 256]);
    expect(RING_SELDOM).to.equal(256);
    adaptRing(m, 64, true);
    expect(ringAfter(m, 64)).to.equal(RING_SOON);
  });

  it('the range queue is a bounded FIFO', () => {
    const q = new RangeQueue(2);
    expect(q.push(1, 2)).to.equal(true);
    expect(q.push(3, 4)).to.equal(true);
    expect(q.push(5, 6)).to.equal(false);
    const c = { first: 0, count: 0 };
    expect(q.pop(c)).to.equal(true);
    expect(c).to.deep.equal({ first: 1, count: 2 });
    expect(q.push(5, 6)).to.equal(true);
    expect(q.pop(c) && q.pop(c)).to.equal(true);
    expect(c).to.deep.equal({ first: 5, count: 6 });
    expect(q.pop(c)).to.equal(false);
  });
});
