// The built-in `readahead` prefetch policy, a policy module like any user's
// (docs/prefetch.md): it finds sequential runs of faults and keeps a window
// of pages ahead of each, doubling the window on every fault that continues
// the run, up to 2 MiB, as the kernel's readahead does. Random faults start
// streams that never grow, so they cost no prefetch.
// Build: npm run build:policies (assembly/policies/asconfig.json: --runtime stub, its own memory)

const ABI_VERSION: u32 = 1;
const MAX_RANGES: u32 = 64;
/** Concurrent sequential streams tracked (vCPUs, interleaved readers). */
const STREAMS: u32 = 8;
/** Pages fetched ahead after the second fault of a run, and at most. */
const FIRST_WINDOW: u32 = 16;
const MAX_WINDOW: u32 = 512;

// Static memory, no allocator: ranges out, then per-stream state.
const ranges = memory.data(<i32>(MAX_RANGES * 8), 8);
const last = memory.data(<i32>(STREAMS * 4), 4); // last fault page of the stream
const end = memory.data(<i32>(STREAMS * 4), 4); // first page not yet asked for
const window = memory.data(<i32>(STREAMS * 4), 4); // current window, 0: slot unused
const used = memory.data(<i32>(STREAMS * 4), 4); // clock of the last fault, for replacement
let pages: u32 = 0;
let clock: u32 = 0;

@inline function at(base: usize, s: u32): usize {
  return base + <usize>s * 4;
}

export function sf_abi_version(): u32 {
  return ABI_VERSION;
}

export function sf_init(snapshotPages: u32): usize {
  pages = snapshotPages;
  memory.fill(window, 0, STREAMS * 4);
  memory.fill(used, 0, STREAMS * 4);
  return ranges;
}

export function sf_fault(page: u32, timeUs: u32): u32 {
  clock++;
  let victim: u32 = 0;
  for (let s: u32 = 0; s < STREAMS; s++) {
    const w = load<u32>(at(window, s));
    if (w != 0 && page > load<u32>(at(last, s)) && page <= load<u32>(at(end, s))) return advance(s, page, w);
    if (load<u32>(at(used, s)) < load<u32>(at(used, victim))) victim = s;
  }
  // Not a continuation: a new stream, which asks for nothing until a second fault follows it.
  store<u32>(at(last, victim), page);
  store<u32>(at(end, victim), page + 1);
  store<u32>(at(window, victim), FIRST_WINDOW / 2);
  store<u32>(at(used, victim), clock);
  return 0;
}

/** A fault that continues stream s: grow its window, and keep at least one window asked for ahead. */
function advance(s: u32, page: u32, w: u32): u32 {
  const grown = w * 2 < MAX_WINDOW ? w * 2 : MAX_WINDOW;
  store<u32>(at(window, s), grown);
  store<u32>(at(last, s), page);
  store<u32>(at(used, s), clock);
  const e = load<u32>(at(end, s));
  if (e > page && e - page > grown) return 0; // far enough ahead already
  const from = e > page + 1 ? e : page + 1;
  if (from >= pages) return 0;
  const to = from + grown < pages ? from + grown : pages;
  store<u32>(at(end, s), to);
  store<u32>(ranges, from);
  store<u32>(ranges + 4, to - from);
  return 1;
}
