// An example prefetch policy for snapfault, in AssemblyScript: on every fault
// it fetches the other pages of the aligned 64 KiB block around the faulting
// page that are not in yet (guests often touch neighbours together).
//
// Build it (one command, from the repository):   npm run example:policy
// or anywhere with AssemblyScript:
//   npx asc fault-around.ts -o fault-around.wasm --runtime stub -O3 --noAssert
// (its own memory: not the shared one of the repository's asconfig.json)
// Use it:   snapfault --prefetch ./build/examples/fault-around.wasm <socket> <memory-file>
//
// The interface (docs/prefetch.md): pages are snapshot pages of 4 KiB
// (file offset / 4096). snapfault calls sf_init once per VM, then sf_fault
// for each page the guest faults on, and sf_idle when it has time to spare.
// Each returns how many ranges (first page, page count: two u32) it wrote
// at the address sf_init returned, at most 64. Do not allocate: use static
// memory (memory.data) so a call costs no garbage collection.

/** snapfault's answer: 1 if the page is in the VM already (or going in). */
@external("env", "sf_present")
declare function present(page: u32): u32;

const BLOCK: u32 = 16; // pages: 64 KiB
const ranges = memory.data(64 * 8, 8);
let pages: u32 = 0;

export function sf_abi_version(): u32 {
  return 1;
}

export function sf_init(snapshotPages: u32): usize {
  pages = snapshotPages;
  return ranges;
}

export function sf_fault(page: u32, timeUs: u32): u32 {
  const first = page - page % BLOCK;
  const last = first + BLOCK < pages ? first + BLOCK : pages;
  // Ask only for runs of pages still missing: fewer, larger copies.
  let n: u32 = 0;
  let runStart: u32 = 0xffffffff;
  for (let p = first; p <= last; p++) {
    const missing = p < last && p != page && present(p) == 0;
    if (missing && runStart == 0xffffffff) runStart = p;
    if (!missing && runStart != 0xffffffff) {
      store<u32>(ranges + <usize>n * 8, runStart);
      store<u32>(ranges + <usize>n * 8 + 4, p - runStart);
      n++;
      runStart = 0xffffffff;
    }
  }
  return n;
}

/** Nothing to do in the background: this policy only reacts to faults. */
export function sf_idle(): u32 {
  return 0;
}
