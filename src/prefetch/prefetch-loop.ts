// The prefetch worker's loop: for every VM it serves, feed the demand faults
// to the policy, take the ranges it wants, and install them with DONTWAKE
// copies, in batches of at most PREFETCH_MAX_PAGES pages, each batch under
// the VM's fence.
// Demand goes first: a copy waits while the fault worker reads, and each VM
// gets a bounded share per round. A failure here never touches the guest's
// bytes: prefetching for that VM stops and its faults are served on demand.
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { UFFDIO, type IoctlFn } from '../../native/uffd.js';
import { closeFd } from '../../native/fd.js';
import { E, addressOf } from '../../native/libc.js';
import { LoadWatch } from '../vm/firecracker-load.js';
import type { Core } from '../core/wasm-core.js';
import { fenceWords, tryEnterCopy, leaveCopy, waitForRead, demandWaiting, type FenceWords } from '../vm/fence.js';
import { feedDrain, sleepUntilRung, doorbellCount, feedPending, adaptRing, policyCall } from './fault-feed.js';
import { RangeQueue } from './range-queue.js';
import { AwaitedChunks } from './awaited-chunks.js';
import { instantiatePolicy, type PrefetchPolicy } from './policies.js';
import type { PreparedPolicy } from './policy-spec.js';
import { Recorder } from '../trace/recorder.js';
import { epochMs, usSince } from '../trace/clock.js';
import { RECORD, SOURCE, sourceWord, type SourceTier } from '../trace/trace-file.js';
import { chunkFailureText } from '../compressed/chunk-error.js';
import { PolicyError } from '../errors.js';
import type { PrefetchAssignment, ToPrefetcher, FromPrefetcher } from './messages.js';

/**
 * Pages per fence hold (a batch of up to 16 runs): the longest a demand read
 * waits behind prefetch copies, ~16 x 3 µs for scattered 4 KiB pages.
 */
export const PREFETCH_MAX_PAGES = 16;
/** Bytes installed for one VM before the next VM gets its turn. */
const ROUND_BYTES = 1 << 20;
const URGENT_RANGES = 1024;
/** Sleeps of an idle prefetch worker: after EAGAIN, with fault feeds to look at, with nothing at all. */
const RETRY_MS = 1;
const FEED_POLL_MS = 10;
const IDLE_MS = 1000;
const BACKGROUND_RANGES = 256;

interface Cursor {
  first: number;
  count: number;
}

interface PrefetchVm {
  a: PrefetchAssignment;
  fence: FenceWords;
  policy: PrefetchPolicy | null;
  urgent: RangeQueue;
  background: RangeQueue;
  /** Ranges whose chunk is on its way from a bucket (a.fetched): done once it lands, before anything newer. */
  awaited: AwaitedChunks;
  cur: Cursor;
  /** The current range was put aside until its chunk landed from the bucket (a trace's source for its copies). */
  curFetched: boolean;
  /** The policy has nothing more to give until the next fault. */
  exhausted: boolean;
  retryAt: number;
  /** Nothing is issued while Firecracker is still loading (src/vm/firecracker-load.ts). */
  load: LoadWatch;
  stopped: boolean;
  rec: Recorder | null;
}

export interface PrefetchBuffers {
  scratch: number;
  scratchBytes: number;
  staging: number;
  step: number;
  doorbell: number;
}

const now = epochMs;

export class PrefetchLoop {
  private readonly vms = new Map<number, PrefetchVm>();
  private stopping = false;
  private i32: Int32Array;
  private dv: DataView;
  private readonly base: number;
  private readonly L: Core['layout'];
  /** Set by issue() when a batch stopped short and its cursor was rewound. */
  private halted = false;
  /** Recording: the source of the copies the current step plans (set in step, read in issue). */
  private copySource: SourceTier = SOURCE.FILE;

  constructor(
    private readonly core: Core,
    private readonly port: MessagePort,
    private readonly send: (m: FromPrefetcher) => void,
    private readonly policy: PreparedPolicy,
    private readonly b: PrefetchBuffers,
    /** The ioctl copies go through: the native one (tests pass one that injects faults). */
    private readonly ioctl: IoctlFn,
  ) {
    this.L = core.layout;
    this.base = addressOf(new Uint8Array(core.memory.buffer));
    this.i32 = new Int32Array(core.memory.buffer);
    this.dv = new DataView(core.memory.buffer);
    this.dv.setBigUint64(b.step + this.L.STEP_STAGING, BigInt(this.base + b.staging), true);
  }

  run(): void {
    while (!this.stopping) {
      // Read before taking messages: a ring after this point ends the sleep below.
      const seen = doorbellCount(this.i32, this.b.doorbell);
      this.takeControl();
      let busy = false;
      let sleepMs = IDLE_MS;
      for (const vm of this.vms.values()) {
        if (this.service(vm)) busy = true;
        else if (vm.retryAt > 0) sleepMs = Math.min(sleepMs, RETRY_MS);
        // Fault workers ring only after a few faults: look at the feeds now and then for the rest.
        else if (vm.a.feed !== 0 && !vm.stopped) sleepMs = Math.min(sleepMs, FEED_POLL_MS);
      }
      if (!busy && !this.stopping) sleepUntilRung(this.i32, this.b.doorbell, seen, sleepMs, () => !this.hasWork());
    }
    for (const vm of this.vms.values()) closeFd(vm.a.uffd);
  }

  private hasWork(): boolean {
    const t = now();
    for (const vm of this.vms.values()) {
      // A VM backing off after EAGAIN has no work yet: spinning would keep the madvise caller off the CPU.
      if (vm.stopped || vm.retryAt > t) continue;
      if (vm.cur.count > 0 || vm.urgent.length > 0 || vm.awaited.ready || vm.background.length > 0 || !vm.exhausted) return true;
      if (vm.a.feed && feedPending(this.i32, vm.a.feed)) return true;
    }
    return false;
  }

  private takeControl(): void {
    for (;;) {
      const m = receiveMessageOnPort(this.port);
      if (!m) return;
      const msg = m.message as ToPrefetcher;
      if (msg.type === 'stop') this.stopping = true;
      else if (msg.type === 'add') this.add(msg.vm);
      else if (msg.type === 'landed') this.landed(msg.snap, msg.chunk, msg.ok);
      else this.release(msg.id);
    }
  }

  private add(a: PrefetchAssignment): void {
    if (this.i32.buffer.byteLength !== this.core.memory.buffer.byteLength) {
      this.i32 = new Int32Array(this.core.memory.buffer);
      this.dv = new DataView(this.core.memory.buffer);
    }
    const vm: PrefetchVm = {
      a, fence: fenceWords(this.L, a.table), policy: null, urgent: new RangeQueue(URGENT_RANGES), background: new RangeQueue(BACKGROUND_RANGES), awaited: new AwaitedChunks(),
      cur: { first: 0, count: 0 }, curFetched: false, exhausted: false, retryAt: 0, stopped: false, rec: a.record ? new Recorder() : null,
      load: new LoadWatch(a.peerPid, now()),
    };
    this.vms.set(a.id, vm);
    try {
      vm.policy = instantiatePolicy(this.policy, a.pages, (page) => this.core.fn.isPagePresent(a.table, page >>> 0));
    } catch (e) {
      this.stop(vm, e instanceof PolicyError ? e.message : `prefetch policy ${this.policy.name} failed to start: ${(e as Error).message}`);
    }
  }

  /** A chunk some ranges waited for has landed (or could not be fetched: its ranges are dropped, its faults deal with it). */
  private landed(snap: number, chunk: number, ok: boolean): void {
    for (const vm of this.vms.values()) if (vm.a.snap === snap) vm.awaited.settle(chunk, ok);
  }

  private release(id: number): void {
    const vm = this.vms.get(id);
    if (!vm) return this.send({ type: 'released', id, records: null });
    this.vms.delete(id);
    closeFd(vm.a.uffd);
    const records = vm.rec ? vm.rec.take() : null;
    this.send({ type: 'released', id, records });
  }

  /** Stops prefetching for a VM (its faults go on being served on demand); `why` is logged. */
  private stop(vm: PrefetchVm, why: string | null): void {
    if (vm.stopped) return;
    vm.stopped = true;
    if (why) this.send({ type: 'warning', id: vm.a.id, message: `prefetch stopped: ${why}; faults are served on demand` });
  }

  /** One VM's turn; true if it did work. */
  private service(vm: PrefetchVm): boolean {
    if (vm.stopped || !vm.policy) return false;
    const policy = vm.policy;
    try {
      if (vm.a.feed) {
        const t = usSince(vm.a.t0);
        const before = vm.urgent.length;
        policyCall(this.i32, this.b.doorbell);
        let fed: number;
        try {
          fed = feedDrain(this.i32, vm.a.feed, (page) => policy.onFault(page, t, vm.urgent));
        } finally {
          policyCall(this.i32, this.b.doorbell);
        }
        if (fed > 0) {
          vm.exhausted = false;
          adaptRing(this.i32, vm.a.feed, vm.urgent.length > before);
        }
      }
      // Looked at again after RETRY_MS: the hold ends a millisecond or so after the vCPU threads appear.
      if (vm.load.holding(now())) vm.retryAt = Math.max(vm.retryAt, now() + RETRY_MS);
      if (vm.retryAt > 0) {
        if (now() < vm.retryAt) return false;
        vm.retryAt = 0;
      }
      let budget = ROUND_BYTES;
      let did = false;
      while (budget > 0) {
        if (vm.cur.count === 0 && !this.nextRange(vm, policy)) break;
        const r = this.step(vm);
        did = true;
        if (r < 0) break;
        budget -= Math.max(r, 4096);
      }
      return did;
    } catch (e) {
      this.stop(vm, e instanceof PolicyError ? e.message : `prefetching failed (policy ${this.policy.name}): ${(e as Error).message}`);
      return false;
    }
  }

  private nextRange(vm: PrefetchVm, policy: PrefetchPolicy): boolean {
    vm.curFetched = false;
    if (vm.urgent.pop(vm.cur)) return true;
    if (vm.awaited.pop(vm.cur)) {
      vm.curFetched = true;
      return true;
    }
    if (vm.background.pop(vm.cur)) return true;
    if (vm.exhausted) return false;
    policyCall(this.i32, this.b.doorbell);
    let more: boolean;
    try {
      more = policy.idle(vm.background);
    } finally {
      policyCall(this.i32, this.b.doorbell);
    }
    if (more && vm.background.pop(vm.cur)) return true;
    vm.exhausted = true;
    return false;
  }

  /**
   * Plans and issues the next copy of the VM's current range: the bytes
   * installed (0: the range held nothing to do), or -1 to give up the turn.
   */
  private step(vm: PrefetchVm): number {
    const fn = this.core.fn;
    const L = this.L;
    const { step, staging, scratch, scratchBytes } = this.b;
    const a = vm.a;
    let chunk = -1;
    let slot = -1;
    let staged = -1;
    // Where the copies planned next take their bytes from (a trace's source): a plain file until a chunk is taken.
    this.copySource = SOURCE.FILE;
    try {
      for (;;) {
        if (!tryEnterCopy(this.i32, vm.fence)) {
          // Never wait holding a cache slot: the fault being served may need that very chunk.
          if (slot >= 0) fn.chunkRelease(a.snap, slot);
          slot = -1;
          waitForRead(this.i32, vm.fence);
          return -1;
        }
        let kind: number;
        let arg: number;
        try {
          fn.prefetchPlan(a.table, a.snap, vm.cur.first, vm.cur.count, chunk, slot, staged, PREFETCH_MAX_PAGES, step);
          kind = this.i32[(step + L.STEP_KIND) >> 2];
          arg = this.dv.getUint32(step + L.STEP_ARG, true);
          const consumed = this.dv.getUint32(step + L.STEP_CONSUMED, true);
          vm.cur.first += consumed;
          vm.cur.count -= consumed;
          if (kind === L.STEP_NONE) return 0;
          if (kind === L.STEP_ACTIONS) return this.issueBatch(vm);
        } finally {
          leaveCopy(this.i32, vm.fence);
        }
        // Decoding and assembling happen outside the fence: they take long.
        if (kind === L.STEP_NEED_CHUNK) {
          if (slot >= 0) fn.chunkRelease(a.snap, slot);
          const loadsBefore = vm.rec ? fn.chunkLoadsHere() : 0;
          slot = fn.chunkAcquire(0, a.snap, arg, scratch, scratchBytes, L.OWNER_PREFETCH);
          if (vm.rec) this.copySource = this.chunkSource(vm, loadsBefore);
          if (slot === L.CHUNK_ERR_ABSENT && a.fetched) {
            slot = -1;
            return this.await(vm, arg, this.chunkSpanEnd(a.snap, arg, vm.cur.first, vm.cur.first + vm.cur.count));
          }
          if (slot < 0) {
            this.stop(vm, chunkFailureText(this.core, a.snap, arg, slot));
            return -1;
          }
          chunk = arg;
        } else {
          // Assembling acquires chunks itself: a slot still held could be the one it must evict.
          if (slot >= 0) fn.chunkRelease(a.snap, slot);
          slot = -1;
          chunk = -1;
          const loadsBefore = vm.rec ? fn.chunkLoadsHere() : 0;
          const rc = fn.assembleHuge(0, a.snap, BigInt(arg), staging, scratch, scratchBytes, L.OWNER_PREFETCH);
          if (vm.rec) this.copySource = this.chunkSource(vm, loadsBefore);
          if (rc === L.CHUNK_ERR_ABSENT && a.fetched) return this.await(vm, this.dv.getUint32(staging, true), Math.min(vm.cur.first + vm.cur.count, arg + 512));
          if (rc < 0) {
            this.stop(vm, chunkFailureText(this.core, a.snap, this.dv.getUint32(staging, true), rc));
            return -1;
          }
          staged = arg;
        }
      }
    } finally {
      if (slot >= 0) fn.chunkRelease(a.snap, slot);
    }
  }

  /** Where a chunk just taken came from: the bucket (the range waited for it), the disk cache or a local file (this thread loaded it), or memory. */
  private chunkSource(vm: PrefetchVm, loadsBefore: number): SourceTier {
    if (vm.curFetched) return SOURCE.BUCKET;
    if (this.core.fn.chunkLoadsHere() === loadsBefore) return SOURCE.MEMORY;
    return vm.a.fetched ? SOURCE.DISK : SOURCE.LOCAL;
  }

  /**
   * The current range's pages from its first up to `end` wait for `chunk`,
   * not in the disk cache: put aside (the chunk asked for, once), and the
   * range goes on after them. Returns 0: nothing installed.
   */
  private await(vm: PrefetchVm, chunk: number, end: number): number {
    const first = vm.cur.first;
    if (vm.awaited.defer(chunk, first, end - first)) this.send({ type: 'need', snap: vm.a.snap, chunk });
    vm.cur.count -= end - first;
    vm.cur.first = end;
    return 0;
  }

  /** Where the pages of `chunk` end from `first` on (zero pages in between count as its own), at most `end`. */
  private chunkSpanEnd(snap: number, chunk: number, first: number, end: number): number {
    const L = this.L;
    const dv = this.dv;
    const pages = dv.getUint32(snap + L.SNAP_PAGES, true);
    const index = dv.getUint32(snap + L.SNAP_INDEX, true);
    const ppc = dv.getUint32(snap + L.SNAP_PAGES_PER_CHUNK, true);
    const zero = L.PAGE_ZERO >>> 0; // a u32 the core exports as an i32
    let p = first + 1;
    for (; p < end && p < pages; p++) {
      const k = dv.getUint32(index + p * 4, true);
      if (k !== zero && Math.floor(k / ppc) !== chunk) return p;
    }
    return end;
  }

  /** Issues the planned batch (inside the fence): bytes installed, or -1 to give up the turn. */
  private issueBatch(vm: PrefetchVm): number {
    const L = this.L;
    const n = this.i32[(this.b.step + L.STEP_COUNT) >> 2];
    let total = 0;
    this.halted = false;
    for (let k = 0; k < n; k++) {
      const act = this.b.step + L.STEP_ACTION + k * L.ACTION_STRIDE;
      if (k > 0 && demandWaiting(this.i32, vm.fence)) {
        // Demand first: a fault is being served; the rest of the batch is planned again later.
        this.rewind(vm, this.i32[(act + L.ACTION_FILE_PAGE) >> 2] >>> 0);
        return total > 0 ? total : -1;
      }
      const r = this.issue(vm, act);
      if (r < 0) return total > 0 ? total : -1;
      total += r;
      if (this.halted) break; // the cursor went back to the first page not done
    }
    return total;
  }

  /** Puts the VM's cursor back to snapshot page `from` (within the current range): nothing from there on was issued. */
  private rewind(vm: PrefetchVm, from: number): void {
    const end = vm.cur.first + vm.cur.count;
    vm.cur.first = Math.min(from, end);
    vm.cur.count = end - vm.cur.first;
  }

  /**
   * Issues one planned copy or zeropage; marks what got in. Returns the bytes
   * installed (setting `halted` when the rest of the batch must be planned
   * again), or -1 to give up the turn.
   */
  private issue(vm: PrefetchVm, act: number): number {
    const L = this.L;
    const io = act + L.ACTION_IOCTL;
    const isCopy = this.i32[(act + L.ACTION_KIND) >> 2] === L.KIND_COPY;
    const rc = this.ioctl(vm.a.uffd, isCopy ? UFFDIO.COPY : UFFDIO.ZEROPAGE, this.base + io);
    // Lengths here are at most 2 MiB: the low 32 bits of each u64/i64 say it all.
    const i32 = this.i32;
    const len = i32[(act + L.ACTION_WAKE + L.UFFDIO_RANGE_LEN) >> 2];
    const filePage = i32[(act + L.ACTION_FILE_PAGE) >> 2] >>> 0;
    const pages = i32[(act + L.ACTION_PAGES) >> 2];
    // uffdio_copy.copy / uffdio_zeropage.zeropage: bytes done, or a negative errno.
    const result = i32[(io + (isCopy ? L.UFFDIO_COPY_COPY : L.UFFDIO_ZEROPAGE_ZEROPAGE)) >> 2];
    const done = rc >= 0 ? len : Math.max(0, result);
    if (done > 0) {
      this.core.fn.prefetchDone(vm.a.table, act, done);
      vm.rec?.push(filePage, done / 4096, usSince(vm.a.t0), isCopy ? RECORD.PREFETCH_COPY : RECORD.PREFETCH_ZERO, isCopy ? sourceWord(this.copySource) : 0);
    }
    if (rc >= 0) return done;
    // Put back what was not done, from its first page.
    const end = vm.cur.first + vm.cur.count;
    const unit = pages === 512 && len === 512 * 4096 ? 512 : 1;
    let from = filePage + Math.floor(done / 4096 / unit) * unit;
    // ENOENT: that page is in no range registered with the uffd any more (taken out by a handler before a
    // takeover, say): the kernel's to fill, skipped as a page already in. Firecracker's exit is ESRCH.
    if (rc === -E.EEXIST || rc === -E.ENOENT || (rc === -E.EAGAIN && done > 0 && done < len && result > 0)) {
      if (rc === -E.EEXIST || rc === -E.ENOENT) {
        // That page is in already (a demand fault won the race), or not ours: skip it.
        this.core.fn.markPresent(vm.a.table, this.dv.getBigUint64(act + L.ACTION_WAKE + L.UFFDIO_RANGE_START, true) + BigInt(done));
        from += unit;
      }
      vm.cur.first = Math.min(from, end);
      vm.cur.count = end - vm.cur.first;
      this.halted = true;
      return done;
    }
    vm.cur.first = Math.min(from, end);
    vm.cur.count = end - vm.cur.first;
    if (rc === -E.EAGAIN) {
      // A REMOVE is queued and not read yet: the fault worker reads it first.
      vm.retryAt = now() + 1;
      return -1;
    }
    if (rc === -E.ESRCH) {
      this.stop(vm, null); // Firecracker has gone; the fault worker reports it
      return -1;
    }
    const why = rc === -E.EFAULT ? 'the snapshot bytes could not be read (was the memory file truncated?)' : `errno ${-rc}`;
    this.stop(vm, `copying ahead at snapshot page ${filePage} failed: ${why}`);
    return -1;
  }
}
