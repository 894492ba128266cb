// Zero ranges: guest memory whose snapshot pages are all zero needs no
// handler at all. After the handshake, each VM's runs of known-zero pages
// (2 MiB and longer) are taken out of its userfaultfd (UFFDIO_UNREGISTER):
// the guest's first touch there is an ordinary anonymous-memory fault, zeros
// from the kernel, with no message, no wake-up and no ioctl of ours. That is
// what a guest allocating fresh memory after the restore touches.
//
// What it changes, and why it is still right:
// - A madvise (balloon, virtio-mem) on such a range sends no REMOVE: none is
//   needed, the kernel itself refills a removed page of it with zeros, which
//   is what a removed page must read as.
// - The range can no longer be copied into (ENOENT): the core marks it
//   present, so prefetch and fill-around skip it.
// - Each range can split a VMA of Firecracker's (two more at most): a VM
//   gets at most ZERO_RANGE_BUDGET ranges, the longest first, and ENOMEM
//   (vm.max_map_count reached) stops the unregistering for that VM.
// - hugetlbfs: runs are whole 2 MiB pages (the kernel refuses anything else).
// - A VM taken over ('known'): its first handler dealt with its ranges, as
//   its options said. The runs are only marked present, with no ioctl: a
//   prefetch copy into a range taken out would meet ENOENT and skip it page
//   by page, and a fault in a range still registered is served as a late
//   one (the core's page state is the new handler's own).
//
// Runs the fault worker, between batches, with none of the VM's faults in
// hand and under its fence (no prefetch copy in flight), so no planned copy
// can land in a range the moment it stops being ours.
import { unregister, zeropage } from '../../native/uffd.js';
import { E } from '../../native/libc.js';
import type { Core } from '../core/wasm-core.js';

export type ZeroRangeMode = 'unregister' | 'zeropage' | 'off';
/** What a fault worker does with a VM's zero runs: a mode, or 'known' (a VM taken over: marked present, no ioctl). */
export type ZeroRangeWork = Exclude<ZeroRangeMode, 'off'> | 'known';

/** Shorter runs are left to the fault path: a range costs VMAs, and a short one saves few faults. */
export const ZERO_RANGE_MIN_BYTES = 2 << 20;
/** Ranges per VM: at most 2 more VMAs each, far below vm.max_map_count's default 65530. */
export const ZERO_RANGE_BUDGET = 256;
/** zeropage mode: bytes mapped per turn of the fault loop, so faults are not held up long. */
const ZEROPAGE_SLICE = 8 << 20;

export type ZeroWork = 'idle' | 'more' | 'gone';

export class ZeroRanges {
  /** Ranges taken (or queued), [start, end): a later pass extends them instead of spending budget again. */
  private readonly taken: Array<[number, number]> = [];
  /** [start, end, 1 if it is a new range (0: it extends one taken before)]. */
  private readonly queue: Array<[number, number, number]> = [];
  ranges = 0;
  bytes = 0;
  stopped = false;
  warning: string | null = null;

  constructor(readonly mode: ZeroRangeWork) {}

  get pending(): boolean {
    return this.queue.length > 0 && !this.stopped;
  }

  /** Finds the VM's zero runs known so far (`out`: a scratch block for the core's uffdio_range list) and queues the new ones, longest first. */
  find(core: Core, table: number, out: number, outBytes: number): void {
    if (this.stopped) return;
    const L = core.layout;
    const n = core.fn.zeroRuns(table, BigInt(ZERO_RANGE_MIN_BYTES), out, Math.floor(outBytes / L.UFFDIO_RANGE_SIZE));
    const dv = new DataView(core.memory.buffer);
    const fresh: Array<[number, number]> = [];
    for (let k = 0; k < n; k++) {
      const o = out + k * L.UFFDIO_RANGE_SIZE;
      const start = Number(dv.getBigUint64(o + L.UFFDIO_RANGE_START, true));
      const end = start + Number(dv.getBigUint64(o + L.UFFDIO_RANGE_LEN, true));
      const t = this.taken.find(([s, e]) => start <= e && s <= end);
      if (!t) {
        fresh.push([start, end]);
        continue;
      }
      // A run found longer now that more of the file is scanned: the new parts only.
      if (start < t[0]) this.queue.push([start, t[0], 0]);
      if (end > t[1]) this.queue.push([t[1], end, 0]);
      t[0] = Math.min(t[0], start);
      t[1] = Math.max(t[1], end);
    }
    fresh.sort((a, b) => b[1] - b[0] - (a[1] - a[0]));
    for (const r of fresh.slice(0, ZERO_RANGE_BUDGET - this.taken.length)) {
      this.taken.push([r[0], r[1]]);
      this.queue.push([r[0], r[1], 1]);
    }
  }

  /** Takes queued ranges out of the uffd (all of them, or one slice of zero pages): 'more' if some are left. */
  work(core: Core, uffd: number, table: number): ZeroWork {
    while (this.pending) {
      const r = this.queue[0];
      const start = r[0];
      const end = r[1];
      if (this.mode === 'known') {
        core.fn.markUnregistered(table, BigInt(start), BigInt(end - start));
        this.queue.shift();
        continue;
      }
      if (this.mode === 'unregister') {
        const rc = unregister(uffd, start, end - start);
        if (rc === -E.ESRCH || rc === -E.ENOENT) return 'gone';
        if (rc < 0) return this.stop(rc);
        core.fn.markUnregistered(table, BigInt(start), BigInt(end - start));
        this.ranges += r[2];
        this.bytes += end - start;
        this.queue.shift();
        continue;
      }
      const len = Math.min(end - start, ZEROPAGE_SLICE);
      const rc = zeropage(uffd, start, len);
      if (rc === -E.ESRCH || rc === -E.ENOENT) return 'gone';
      // EEXIST: a page of it is in already (a fault's): skip that page. EAGAIN: a REMOVE is pending; next turn.
      if (rc < 0 && rc !== -E.EEXIST && rc !== -E.EAGAIN) return this.stop(rc);
      const done = rc > 0 ? rc : 0;
      if (done > 0) core.fn.markUnregistered(table, BigInt(start), BigInt(done));
      this.bytes += done;
      r[0] = start + done + (rc === -E.EEXIST || (rc > 0 && rc < len) ? 4096 : 0);
      if (r[0] >= end) {
        this.ranges += r[2];
        this.queue.shift();
      }
      return this.pending ? 'more' : 'idle';
    }
    return 'idle';
  }

  private stop(rc: number): ZeroWork {
    this.stopped = true;
    const why = rc === -E.ENOMEM
      ? 'the kernel refused to split guest memory further (vm.max_map_count reached?)'
      : `errno ${-rc}`;
    this.warning = `taking all-zero ranges out of the userfaultfd stopped after ${this.ranges}: ${why}; the rest is served on demand`;
    return 'idle';
  }
}
