// The chunks a prefetch policy will read, in the order it reads them: the
// ranges' pages mapped to their chunks through the snapshot's page index
// (zero pages need none), each chunk once; `all` then adds the chunks of
// every other page in snapshot order. What the network prefetch fetches first.
import type { Core } from '../core/wasm-core.js';

export function prefetchChunkOrder(core: Core, snap: number, ranges: Uint32Array, all: boolean): number[] {
  const L = core.layout;
  const dv = new DataView(core.memory.buffer);
  const pages = dv.getUint32(snap + L.SNAP_PAGES, true);
  const index = dv.getUint32(snap + L.SNAP_INDEX, true);
  const ppc = dv.getUint32(snap + L.SNAP_PAGES_PER_CHUNK, true);
  const chunks = dv.getUint32(snap + L.SNAP_CHUNKS, true);
  const zero = L.PAGE_ZERO >>> 0; // a u32 the core exports as an i32
  const seen = new Uint8Array(chunks);
  const order: number[] = [];
  const add = (c: number): void => {
    if (c < chunks && !seen[c]) {
      seen[c] = 1;
      order.push(c);
    }
  };
  const walk = (first: number, count: number): void => {
    const end = Math.min(pages, first + count);
    for (let p = first; p < end; p++) {
      const k = dv.getUint32(index + p * 4, true);
      if (k !== zero) add(Math.floor(k / ppc));
    }
  };
  for (let i = 0; i + 1 < ranges.length; i += 2) walk(ranges[i], ranges[i + 1]);
  // Through the pages, not the chunk table: a chain's table may hold chunks no page uses.
  if (all) walk(0, pages);
  return order;
}
