// The queue of chunks the prefetch fetches from a bucket ahead of the guest
// (src/store/prefetch-fetches.ts), with seams standing for the bucket: in
// the order asked, GETs in flight bounded, a chunk a fault took fetched no
// more here, and queued chunks stored right after the one whose turn it is
// taken into its GET, whatever their place in the queue.
import { expect } from 'chai';
import { PrefetchFetches } from '../../src/store/prefetch-fetches.js';

interface Get {
  run: number[];
  finish: (error?: string | null) => void;
}

/** Seams: chunks in one pack in `packed` order follow each other; GETs stay open until finished by the test. */
function bucket(packed: number[], cached = new Set<number>()): { q: PrefetchFetches; gets: Get[]; landed: Array<[number, string | null]> } {
  const gets: Get[] = [];
  const landed: Array<[number, string | null]> = [];
  const next = new Map(packed.slice(0, -1).map((c, i) => [c, packed[i + 1]]));
  const q = new PrefetchFetches(2, {
    fetch: (_snap, run) => {
      let finish!: (error?: string | null) => void;
      const done = new Promise<string | null>((r) => (finish = (error = null) => r(error)));
      gets.push({ run: [...run], finish });
      return run.map(() => done);
    },
    extend: (_snap, run) => (run.length < 3 ? next.get(run[run.length - 1]) ?? -1 : -1),
    cached: (_snap, chunk) => cached.has(chunk),
    landed: (_snap, chunk, error) => void landed.push([chunk, error]),
  });
  return { q, gets, landed };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('prefetch fetches from a bucket', () => {
  it('asks in order, at most `concurrency` GETs at once; the first GETs alone, then a run of queued neighbours is one GET', async () => {
    const { q, gets, landed } = bucket([10, 11, 12, 13]);
    q.wantAll(1, [11, 5, 10, 6, 12, 7, 8]);
    // The first two GETs (the concurrency) go alone: what is needed first comes soonest.
    expect(gets.map((g) => g.run)).to.deep.equal([[11], [5]]);
    gets[1].finish();
    await tick();
    // 10 is next: 11 after it is under way already, so it goes alone.
    expect(gets.map((g) => g.run)).to.deep.equal([[11], [5], [10]]);
    gets[0].finish();
    await tick();
    expect(gets.map((g) => g.run).slice(3)).to.deep.equal([[6]]);
    gets[2].finish();
    await tick();
    // 12's turn after 6: 13 is not queued, so alone; 7 next.
    expect(gets.map((g) => g.run).slice(4)).to.deep.equal([[12]]);
    expect(landed.map(([c]) => c)).to.have.members([5, 11, 10]);
    expect(q.started).to.equal(5);
  });

  it('after the first GETs, a chunk\'s turn takes its queued neighbours wherever they are in the queue', async () => {
    const { q, gets } = bucket([20, 21, 22, 23]);
    q.wantAll(1, [1, 2, 21, 9, 22, 20]);
    gets[0].finish();
    gets[1].finish();
    await tick();
    // 21 takes 22 (queued later, stored right after); 9 alone.
    expect(gets.map((g) => g.run).slice(2)).to.deep.equal([[21, 22], [9]]);
    gets[2].finish();
    await tick();
    expect(gets.map((g) => g.run).slice(4)).to.deep.equal([[20]]); // 21 after it is done already
  });

  it('a chunk a fault took is not fetched here, nor joined to a run; a cached one lands at once', async () => {
    const { q, gets, landed } = bucket([20, 21, 22], new Set([30]));
    q.want(1, 40); // holds one of the two GETs
    q.want(1, 41); // and the other
    q.want(1, 30);
    q.want(1, 20);
    q.want(1, 21);
    q.demand(1, 21); // a fault needs 21: fetched for it, outside this queue
    gets[0].finish();
    await tick();
    // 30 was cached: landed without a GET; 20 goes alone (21 is the fault's).
    expect(landed.map(([c]) => c)).to.include(30);
    expect(gets.map((g) => g.run)).to.deep.equal([[40], [41], [20]]);
    expect(q.started).to.equal(3);
  });

  it('a chunk asked twice is fetched once; closed, nothing more starts and nothing lands', async () => {
    const { q, gets, landed } = bucket([]);
    q.want(1, 1);
    q.want(1, 1);
    q.want(1, 2);
    q.want(1, 3);
    expect(gets.map((g) => g.run)).to.deep.equal([[1], [2]]);
    q.close();
    gets[0].finish('gone');
    await tick();
    expect(gets.length).to.equal(2);
    expect(landed).to.deep.equal([]);
  });
});
