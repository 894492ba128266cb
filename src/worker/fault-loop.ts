// The fault loop: one per worker thread, serving any number of VMs through
// synchronous koffi calls (async calls cost a thread-pool hop, 15-40 µs).
// epoll waits on every VM's uffd and socket plus a control eventfd; the WASM
// core turns each batch of uffd_msg into ready ioctl structs; this loop only
// issues them and handles the errors.
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { EventFd, readInto, closeFd } from '../../native/fd.js';
import { Epoll, EPOLL } from '../../native/epoll.js';
import { UFFDIO, type IoctlFn } from '../../native/uffd.js';
import { E, addressOf } from '../../native/libc.js';
import { schedYield } from '../../native/sched.js';
import { pidfdSignal, SIGKILL } from '../../native/pidfd.js';
import type { Core } from '../core/wasm-core.js';
import { readFaultCounts } from '../vm/vm-table.js';
import { HUGE_PAGE } from '../handshake/regions.js';
import { chunkFailureText } from '../compressed/chunk-error.js';
import type { VmAssignment, ToWorker, FromWorker, VmStats, EndReason } from './messages.js';
import { WORKER_STAT as S, LATENCY_BOUNDS_S, READ_BOUNDS, bucketOf } from './worker-stats.js';
import { fenceWords, enterRead, leaveRead, beginDemand, endDemand, type FenceWords } from '../vm/fence.js';
import { feedPush, ring, ringAfter } from '../prefetch/fault-feed.js';
import { Recorder } from '../trace/recorder.js';
import { usSince } from '../trace/clock.js';
import { RECORD, SOURCE, sourceWord, type SourceTier } from '../trace/trace-file.js';
import { RemovedMirror } from '../state/removed-mirror.js';
import { viewOf } from '../../native/mmap.js';
import { ZeroRanges } from './zero-ranges.js';
import { ParkedFaults, type ParkedFault } from './parked-faults.js';

/** After this many yields with EAGAIN still pending, sleep in epoll_wait instead of spinning. */
const EAGAIN_YIELDS = 32;

const now = performance.now.bind(performance);
/** What issuing an action came to: installed, found installed (EEXIST, woken), deferred (EAGAIN), the VM ended, or parked until its chunk lands. */
const DONE = 0;
const AGAIN = 1;
const GONE = 2;
const EXISTED = 3;
const PARKED = 4;

interface ServedVm {
  a: VmAssignment;
  slot: number;
  pending: number;
  deferred: boolean;
  yields: number;
  round: number;
  reads: number;
  messages: number;
  eagain: number;
  eexist: number;
  /** Faults whose page had left the uffd's ranges by the time it was resolved (ENOENT): woken only. */
  notRegistered: number;
  started: number;
  lastFault: number;
  ended: boolean;
  fence: FenceWords | null;
  rec: Recorder | null;
  /** Faults fed to the prefetch policy since the prefetch worker was last rung. */
  unrung: number;
  /** Mirrors its removes into its state record (--state-dir). */
  mirror: RemovedMirror | null;
  /** All-zero ranges to take out of the uffd (zero-ranges.ts), or null. */
  zero: ZeroRanges | null;
  /** Faults that waited for their chunk to be fetched from a bucket: how many, and their waits (ms) in all and at most. */
  fetchWaits: number;
  fetchWaitMs: number;
  fetchWaitMaxMs: number;
  /** Recording: pages whose fault waited for a GET and is queued again, with the wait (ms), for the trace's source. */
  fetchedPages: Map<number, number> | null;
}

/** epoll tags: 0 is the control eventfd; a VM in slot s has 2s+2 (its uffd) and 2s+3 (its socket, or for a VM taken over its pidfd). */
const CONTROL_TAG = 0;

export class FaultLoop {
  private readonly slots: Array<ServedVm | null> = [];
  private readonly epoll = new Epoll(64);
  private stopping = false;
  private round = 0;
  /** Some VM has zero ranges queued. */
  private zeroPending = false;
  /** VMs with deferred faults, and how many of them asked to sleep rather than yield. */
  private deferred = 0;
  private sleepers = 0;
  private endedCount = 0;
  private readonly base: number;
  private i32: Int32Array;
  private dv: DataView;
  private readonly drainBuf = Buffer.alloc(4096);
  private readonly drainAddr = addressOf(this.drainBuf);
  private readonly L: Core['layout'];
  private readonly activityIndex: number;
  private readonly st: Float64Array;
  /** Faults waiting for a chunk from a bucket, and the chunks landed whose faults did not all fit their VM's queue yet. */
  private readonly parked = new ParkedFaults();
  private readonly landing: string[] = [];
  private batch = 0;
  /** The actions of the batch being issued that were parked: not told to the trace or the policy until they are served. */
  private readonly parkedActs = new Set<number>();
  /** Chunks found damaged in the disk cache and fetched again already. */
  private readonly refetched = new Set<string>();
  /** Recording: where each action of the batch being issued took its bytes from (a SOURCE), by its place in the batch. */
  private sources = new Uint8Array(256);

  constructor(
    private readonly core: Core,
    private readonly control: EventFd,
    private readonly port: MessagePort,
    private readonly send: (m: FromWorker) => void,
    activity: number,
    private readonly scratch: number,
    private readonly scratchBytes: number,
    private readonly staging: number,
    stats: number,
    private readonly owner: number,
    /** The ioctl faults are resolved with: the native one (tests pass one that injects faults). */
    private readonly ioctl: IoctlFn,
  ) {
    this.activityIndex = activity >> 2;
    this.st = new Float64Array(core.memory.buffer, stats, S.SIZE);
    this.L = core.layout;
    this.base = addressOf(new Uint8Array(core.memory.buffer));
    this.i32 = new Int32Array(core.memory.buffer);
    this.dv = new DataView(core.memory.buffer);
    this.epoll.add(control.fd, EPOLL.IN, CONTROL_TAG);
  }

  /** Runs until told to stop; returns after every VM has been released. */
  run(): void {
    const ep = this.epoll;
    while (!this.stopping) {
      // Deferred work (EAGAIN) is retried at once after a yield, or after 1 ms
      // once yielding has not let the madvise caller finish.
      // Zero ranges still to map (zeropage mode, a slice a turn) only poll.
      const timeout = this.deferred === 0 ? (this.zeroPending || this.landing.length > 0 ? 0 : -1) : this.sleepers > 0 ? 1 : 0;
      this.sleepers = 0;
      const n = ep.wait(timeout);
      if (n < 0 && n !== -E.EINTR) throw new Error(`epoll_wait failed: errno ${-n}`);
      const round = ++this.round;
      for (let i = 0; i < n; i++) {
        const tag = ep.tagOf(i);
        if (tag === CONTROL_TAG) {
          this.takeControl();
          continue;
        }
        const vm = this.slots[(tag >> 1) - 1];
        if (!vm || vm.ended) continue;
        const events = ep.eventsOf(i);
        if ((tag & 1) === 0) {
          if ((events & EPOLL.IN) !== 0) {
            vm.round = round;
            this.serve(vm);
          } else if ((events & (EPOLL.ERR | EPOLL.HUP)) !== 0) {
            this.end(vm, 'fatal', 'the userfaultfd reported an error condition');
          }
        } else {
          this.checkConnection(vm);
        }
      }
      if (this.deferred > 0) {
        for (const vm of this.slots) if (vm && vm.deferred && !vm.ended && vm.round !== round) this.serve(vm);
      }
      if (this.landing.length > 0) this.deliver(this.landing.splice(0), null);
      if (this.zeroPending) this.zeroWork();
      if (this.endedCount > 0) this.sweep();
    }
    for (const vm of this.slots) if (vm && !vm.ended) this.end(vm, 'shutdown', 'the handler is shutting down');
    this.sweep();
    closeFd(this.epoll.fd);
  }

  private takeControl(): void {
    this.control.drain();
    for (;;) {
      const m = receiveMessageOnPort(this.port);
      if (!m) return;
      const msg = m.message as ToWorker;
      if (msg.type === 'stop') this.stopping = true;
      else if (msg.type === 'add') this.add(msg.vm);
      else if (msg.type === 'fetched') this.deliver([ParkedFaults.key(msg.snap, msg.chunk)], msg.error);
      else this.zeroesKnown(msg.bitmap);
    }
  }

  /** A zero-page scan is over: the VMs restored from that file may have longer zero runs now. */
  private zeroesKnown(bitmap: number): void {
    for (const vm of this.slots) {
      if (!vm?.zero || vm.ended || this.dv.getUint32(vm.a.table + this.L.VM_ZERO_BITMAP, true) !== bitmap) continue;
      vm.zero.find(this.core, vm.a.table, this.scratch, this.scratchBytes);
      if (vm.zero.pending) this.zeroPending = true;
    }
  }

  /** Takes queued zero ranges out of each VM's uffd, between batches, with none of its faults in hand, under its fence. */
  private zeroWork(): void {
    let more = false;
    for (const vm of this.slots) {
      const z = vm?.zero;
      if (!vm || !z || vm.ended || !z.pending) continue;
      if (vm.pending > 0) {
        more = true;
        continue;
      }
      if (vm.fence) enterRead(this.i32, vm.fence);
      let r;
      try {
        r = z.work(this.core, vm.a.uffd, vm.a.table);
      } finally {
        if (vm.fence) leaveRead(this.i32, vm.fence);
      }
      if (z.warning) {
        this.send({ type: 'warning', id: vm.a.id, message: z.warning });
        z.warning = null;
      }
      if (r === 'more') more = true;
      // 'gone': Firecracker exited; its socket's end-of-file ends the VM.
    }
    this.zeroPending = more;
  }

  private add(a: VmAssignment): void {
    if (this.i32.buffer.byteLength !== this.core.memory.buffer.byteLength) {
      // The main thread grew the shared memory: refresh the views.
      this.i32 = new Int32Array(this.core.memory.buffer);
      this.dv = new DataView(this.core.memory.buffer);
    }
    let slot = this.slots.indexOf(null);
    if (slot < 0) slot = this.slots.push(null) - 1;
    const t = now();
    const vm: ServedVm = {
      a, slot, pending: 0, deferred: false, yields: 0, round: 0, reads: 0, messages: 0, eagain: 0, eexist: 0, notRegistered: 0,
      started: t, lastFault: t, ended: false, fence: a.fenced ? fenceWords(this.L, a.table) : null, rec: a.record ? new Recorder() : null,
      unrung: 0, mirror: a.mirror ? new RemovedMirror(this.core, a.table, a.mirror, (addr, length) => viewOf({ addr, length })) : null,
      zero: a.zeroRanges === 'off' ? null : new ZeroRanges(a.zeroRanges),
      fetchWaits: 0, fetchWaitMs: 0, fetchWaitMaxMs: 0, fetchedPages: a.record && a.fetched ? new Map() : null,
    };
    if (a.record && this.sources.length < a.capacity) this.sources = new Uint8Array(a.capacity);
    this.slots[slot] = vm;
    // Before the first read: what is known zero now leaves the uffd before any of its faults is read.
    if (vm.zero) {
      vm.zero.find(this.core, a.table, this.scratch, this.scratchBytes);
      if (vm.zero.pending) {
        this.zeroPending = true;
        this.zeroWork();
      }
    }
    this.epoll.add(a.uffd, EPOLL.IN, 2 * slot + 2);
    // A VM taken over has no socket: its pidfd becomes readable when Firecracker exits.
    if (a.conn >= 0) this.epoll.add(a.conn, EPOLL.IN | EPOLL.RDHUP, 2 * slot + 3);
    else this.epoll.add(a.pidfd, EPOLL.IN, 2 * slot + 3);
  }

  /**
   * Serves the VM's queued faults with demand first: the prefetch worker
   * holds back from the wake-up to the last ioctl (src/vm/fence.ts).
   */
  private serve(vm: ServedVm): void {
    const f = vm.fence;
    if (!f) return this.serveQueued(vm);
    beginDemand(this.i32, f);
    try {
      this.serveQueued(vm);
    } finally {
      endDemand(this.i32, f);
    }
  }

  /** Reads every queued event of the VM, plans them in the core, issues the ioctls. */
  private serveQueued(vm: ServedVm): void {
    const a = vm.a;
    const L = this.L;
    const msgSize = L.MSG_SIZE;
    for (;;) {
      // One read takes everything queued (removes included) up to the buffer's
      // capacity, so a batch is planned whole; a full buffer means read again.
      // With a prefetch worker, the read and the marking of its removes
      // (plan) happen inside the fence (src/vm/fence.ts).
      const room = a.capacity - vm.pending;
      let full = false;
      let r = -E.EAGAIN;
      let count = 0;
      let started = 0;
      if (vm.fence) enterRead(this.i32, vm.fence);
      try {
        if (room > 0) r = readInto(a.uffd, this.base + a.msgs + vm.pending * msgSize, room * msgSize);
        const fresh = vm.pending;
        if (r > 0) {
          vm.pending += r / msgSize;
          full = r === room * msgSize;
        }
        if (vm.pending > 0) {
          started = now();
          this.batch++;
          this.parkedActs.clear();
          count = this.core.fn.plan(a.table, a.msgs, vm.pending, a.actions);
          // Before any ioctl of the batch: a successor must know these pages were removed (src/state/removed-mirror.ts).
          if (vm.mirror && r > 0) vm.mirror.record(this.i32, this.dv, a.msgs, fresh, vm.pending);
        }
      } finally {
        if (vm.fence) leaveRead(this.i32, vm.fence);
      }
      if (r > 0) {
        vm.reads++;
        vm.messages += r / msgSize;
        const st = this.st;
        st[S.READS]++;
        st[S.MESSAGES] += r / msgSize;
        st[S.READ_BUCKETS + bucketOf(READ_BOUNDS, r / msgSize)]++;
      } else if (r === 0) {
        return this.end(vm, 'exited', 'the userfaultfd closed');
      } else if (r !== -E.EAGAIN && r !== -E.EINTR) {
        return this.end(vm, 'fatal', `reading the userfaultfd failed (errno ${-r})`);
      }
      if (vm.pending === 0) {
        this.setDeferred(vm, false);
        return;
      }
      let done = vm.pending;
      let issued = count;
      for (let k = 0; k < count; k++) {
        const act = a.actions + k * L.ACTION_STRIDE;
        const kind = this.i32[(act + L.ACTION_KIND) >> 2];
        if (kind === L.KIND_UNMAPPED) {
          const addr = this.dv.getBigUint64(act + L.ACTION_IOCTL, true);
          return this.fatal(vm, `the guest touched 0x${addr.toString(16)}, outside every region of the handshake or past the end of the snapshot`);
        }
        const loadsBefore = vm.rec ? this.core.fn.chunkLoadsHere() : 0;
        const res = kind === L.KIND_CHUNK ? this.fillFromChunk(vm, act)
          : kind === L.KIND_ASSEMBLE ? this.assembleHuge(vm, act)
            : this.issueAndSettle(vm, act);
        if (vm.rec) this.sources[k] = this.sourceOf(vm, kind, loadsBefore);
        if (res === DONE) continue;
        if (res === GONE) return;
        if (res === PARKED) {
          // Out of this batch until its chunk lands; the others go on.
          this.core.fn.unmarkPlanned(a.table, a.actions, k, k + 1);
          continue;
        }
        // EAGAIN: a REMOVE is queued or in progress (mmap_changing): keep this
        // fault and every fault after it, read the queue, and retry after a yield.
        vm.eagain++;
        this.st[S.EAGAIN]++;
        done = this.i32[(act + L.ACTION_MSG_INDEX) >> 2];
        this.core.fn.unmarkPlanned(a.table, a.actions, k, count);
        if (this.parked.size > 0) this.parked.dropKept(vm.slot, this.batch, done);
        issued = k;
        break;
      }
      if (issued > 0 && (a.feed !== 0 || vm.rec)) this.tell(vm, issued);
      if (count > 0) {
        const t = now();
        vm.lastFault = t;
        this.i32[this.activityIndex]++;
        // Every fault of the batch waited for the whole batch.
        const seconds = (t - started) / 1000;
        const st = this.st;
        st[S.LATENCY_SUM_S] += seconds * count;
        st[S.LATENCY_COUNT] += count;
        st[S.LATENCY_BUCKETS + bucketOf(LATENCY_BOUNDS_S, seconds)] += count;
      }
      if (done < vm.pending) {
        vm.pending = this.core.fn.keepFaults(a.msgs, done, vm.pending);
        if (!vm.deferred) vm.yields = 0;
        this.setDeferred(vm, true);
        vm.yields++;
        if (vm.yields >= EAGAIN_YIELDS) this.sleepers++;
        schedYield();
        return;
      }
      vm.pending = 0;
      this.setDeferred(vm, false);
      if (!full) return;
    }
  }

  /**
   * A fault on a compressed snapshot's stored page: take its chunk from the
   * shared cache (decoding it on a miss), then issue the copies the core
   * planned: the faulting page, then the chunk's other missing pages.
   */
  private fillFromChunk(vm: ServedVm, act: number): number {
    const a = vm.a;
    const L = this.L;
    const fn = this.core.fn;
    const k = Number(this.dv.getBigUint64(act + L.ACTION_IOCTL + L.UFFDIO_COPY_SRC, true));
    const ppc = this.dv.getUint32(a.snap + L.SNAP_PAGES_PER_CHUNK, true);
    const chunk = Math.floor(k / ppc);
    const slot = fn.chunkAcquire(a.table, a.snap, chunk, this.scratch, this.scratchBytes, this.owner);
    if (slot < 0) return this.chunkFailed(vm, chunk, slot, act);
    try {
      const n = fn.fillFromChunk(a.table, a.snap, slot, act, a.fill);
      return this.issueCopies(vm, a.fill, n);
    } finally {
      fn.chunkRelease(a.snap, slot);
    }
  }

  /** A 2 MiB page of a compressed snapshot: assembled in the worker's staging buffer, then copied whole. */
  private assembleHuge(vm: ServedVm, act: number): number {
    const a = vm.a;
    const L = this.L;
    const firstPage = this.dv.getBigUint64(act + L.ACTION_IOCTL + L.UFFDIO_COPY_SRC, true);
    const rc = this.core.fn.assembleHuge(a.table, a.snap, firstPage, this.staging, this.scratch, this.scratchBytes, this.owner);
    if (rc < 0) return this.chunkFailed(vm, this.dv.getUint32(this.staging, true), rc, act);
    this.core.fn.copyAssembled(act, BigInt(this.base + this.staging), BigInt(HUGE_PAGE));
    return this.issueCopies(vm, act, 1);
  }

  /** Where an action of `kind` took its bytes from, given the chunks this thread had loaded before it. */
  private sourceOf(vm: ServedVm, kind: number, loadsBefore: number): SourceTier {
    const L = this.L;
    if (kind === L.KIND_COPY) return SOURCE.FILE;
    if (kind !== L.KIND_CHUNK && kind !== L.KIND_ASSEMBLE) return SOURCE.NONE;
    if (this.core.fn.chunkLoadsHere() === loadsBefore) return SOURCE.MEMORY;
    return vm.a.fetched ? SOURCE.DISK : SOURCE.LOCAL;
  }

  /** Feeds the first `n` actions' pages to the prefetch policy and to the trace. */
  private tell(vm: ServedVm, n: number): void {
    const a = vm.a;
    const L = this.L;
    const tUs = vm.rec ? usSince(a.t0) : 0;
    for (let k = 0; k < n; k++) {
      const act = a.actions + k * L.ACTION_STRIDE;
      if (this.parkedActs.has(act)) continue;
      const page = this.i32[(act + L.ACTION_FILE_PAGE) >> 2] >>> 0;
      const kind = this.i32[(act + L.ACTION_KIND) >> 2];
      if (a.feed !== 0 && feedPush(this.i32, a.feed, page)) vm.unrung++;
      if (vm.rec) {
        const late = this.i32[(act + L.ACTION_LATE) >> 2] !== 0;
        const what = late ? RECORD.FAULT_LATE : kind === L.KIND_ZEROPAGE ? RECORD.FAULT_ZERO : RECORD.FAULT_COPY;
        let source = (what === RECORD.FAULT_COPY ? this.sources[k] : SOURCE.NONE) as SourceTier;
        let waitedMs = 0;
        const fetched = vm.fetchedPages?.get(page);
        if (fetched !== undefined) {
          vm.fetchedPages!.delete(page);
          // Its fault waited for the GET, whatever installed the page in the end.
          source = SOURCE.BUCKET;
          waitedMs = fetched;
        }
        vm.rec.push(page, this.i32[(act + L.ACTION_PAGES) >> 2], tUs, what, source === SOURCE.NONE ? 0 : sourceWord(source, waitedMs));
      }
    }
    // Waking the prefetch worker for every fault would cost more than the
    // fault; how often to ring is the policy's to say (fault-feed.ts).
    if (a.feed !== 0 && vm.unrung >= ringAfter(this.i32, a.feed)) {
      ring(this.i32, a.doorbell);
      vm.unrung = 0;
    }
  }

  /**
   * Issues the ioctl of one planned action: DONE (installed), EXISTED (the
   * page was there already: its waiters are woken), AGAIN (EAGAIN), or GONE
   * (the VM has ended).
   */
  private issue(vm: ServedVm, act: number): number {
    const a = vm.a;
    const L = this.L;
    const request = this.i32[(act + L.ACTION_KIND) >> 2] === L.KIND_COPY ? UFFDIO.COPY : UFFDIO.ZEROPAGE;
    const rc = this.ioctl(a.uffd, request, this.base + act + L.ACTION_IOCTL);
    if (rc >= 0) return DONE;
    if (rc === -E.EEXIST) {
      // Installed already (prefetch, fill-around, a racing fault): make sure nobody still sleeps on it.
      vm.eexist++;
      this.st[S.EEXIST]++;
      return this.wakeWaiters(vm, act);
    }
    if (rc === -E.EAGAIN) return AGAIN;
    if (rc === -E.ENOENT) {
      // The page is in no range registered with the uffd any more (a zero range taken out while its
      // fault was on its way in, native/uffd.ts `unregister`; the previous handler's, after a takeover):
      // the kernel's to fill, once the thread is woken. Firecracker's exit is ESRCH, or its socket's end-of-file.
      vm.notRegistered++;
      this.st[S.NOT_REGISTERED]++;
      return this.wakeWaiters(vm, act);
    }
    return this.ioctlFailed(vm, act, rc, 'resolving the fault');
  }

  /** Wakes the threads waiting on the action's page, which is there (or not ours) already: EXISTED, or GONE. */
  private wakeWaiters(vm: ServedVm, act: number): number {
    const woke = this.ioctl(vm.a.uffd, UFFDIO.WAKE, this.base + act + this.L.ACTION_WAKE);
    if (woke >= 0) return EXISTED;
    return this.ioctlFailed(vm, act, woke, 'waking the threads waiting');
  }

  /** Ends the VM after a failed ioctl: Firecracker has gone (ESRCH), or the fault cannot be served. */
  private ioctlFailed(vm: ServedVm, act: number, rc: number, what: string): number {
    if (rc === -E.ESRCH) {
      this.end(vm, 'exited', 'Firecracker exited');
      return GONE;
    }
    const dst = this.dv.getBigUint64(act + this.L.ACTION_WAKE + this.L.UFFDIO_RANGE_START, true);
    const why = rc === -E.EFAULT
      ? 'the snapshot bytes could not be read (was the memory file truncated while serving?)'
      : `errno ${-rc}`;
    this.fatal(vm, `${what} at 0x${dst.toString(16)} failed: ${why}`);
    return GONE;
  }

  /** Issues one action and counts it once it is done (settle). */
  private issueAndSettle(vm: ServedVm, act: number): number {
    const r = this.issue(vm, act);
    if (r !== DONE && r !== EXISTED) return r;
    this.core.fn.settle(vm.a.table, act, r === DONE ? 1 : 0);
    return DONE;
  }

  /**
   * Issues `n` planned copies at `acts`, the faulting page's first; on EAGAIN
   * gives back the pages of those not done. Once the faulting page is in, the
   * fault is served: fill-around cut short is not retried.
   */
  private issueCopies(vm: ServedVm, acts: number, n: number): number {
    const L = this.L;
    for (let j = 0; j < n; j++) {
      const r = this.issueAndSettle(vm, acts + j * L.ACTION_STRIDE);
      if (r === DONE) continue;
      if (r === AGAIN) {
        this.core.fn.unmarkPlanned(vm.a.table, acts, j, n);
        if (j > 0) return DONE;
      }
      return r;
    }
    return DONE;
  }

  private chunkFailed(vm: ServedVm, chunk: number, err: number, act: number): number {
    if (vm.a.fetched && err !== this.L.CHUNK_ERR_RANGE) {
      // Not in the disk cache: fetched. Damaged there: deleted and fetched again, once; what the fetcher caches
      // was checked against its name, so a second failure of the same chunk is the disk's, and fatal.
      if (err === this.L.CHUNK_ERR_ABSENT) return this.park(vm, chunk, act, false);
      const key = ParkedFaults.key(vm.a.snap, chunk);
      if (!this.refetched.has(key)) {
        this.refetched.add(key);
        return this.park(vm, chunk, act, true);
      }
    }
    this.fatal(vm, `${chunkFailureText(this.core, vm.a.snap, chunk, err)}; no byte of it was served`);
    return GONE;
  }

  /** A fault whose chunk is not in the disk cache (or is damaged there: `discard`): kept aside, the chunk asked for (once), the batch goes on. */
  private park(vm: ServedVm, chunk: number, act: number, discard: boolean): number {
    const L = this.L;
    const index = this.i32[(act + L.ACTION_MSG_INDEX) >> 2];
    const at = vm.a.msgs + index * L.MSG_SIZE;
    const msg = new Uint8Array(this.core.memory.buffer.slice(at, at + L.MSG_SIZE));
    const page = this.i32[(act + L.ACTION_FILE_PAGE) >> 2] >>> 0;
    const f: ParkedFault = { slot: vm.slot, vmId: vm.a.id, msg, batch: this.batch, index, since: now(), page };
    if (this.parked.park(ParkedFaults.key(vm.a.snap, chunk), f)) this.send({ type: 'fetch', id: vm.a.id, snap: vm.a.snap, chunk, discard });
    this.parkedActs.add(act);
    return PARKED;
  }

  /**
   * Chunks have landed (error null) or could not be fetched: their parked
   * faults go back into their VMs' queues and are served now; a VM whose
   * chunk could not be fetched gets the --on-fatal treatment with `error`.
   */
  private deliver(keys: string[], error: string | null): void {
    const served = new Set<ServedVm>();
    for (const key of keys) {
      for (const f of this.parked.take(key)) {
        const vm = this.slots[f.slot];
        if (!vm || vm.ended || vm.a.id !== f.vmId) continue;
        if (error !== null) {
          this.fatal(vm, error);
          continue;
        }
        if (vm.pending >= vm.a.capacity) {
          // Its queue is full: this one waits for the next turn.
          if (this.parked.park(key, f)) this.landing.push(key);
          continue;
        }
        new Uint8Array(this.core.memory.buffer).set(f.msg, vm.a.msgs + vm.pending * this.L.MSG_SIZE);
        vm.pending++;
        served.add(vm);
        const waited = now() - f.since;
        vm.fetchWaits++;
        vm.fetchWaitMs += waited;
        vm.fetchWaitMaxMs = Math.max(vm.fetchWaitMaxMs, waited);
        vm.fetchedPages?.set(f.page, waited);
      }
    }
    for (const vm of served) if (!vm.ended) this.serve(vm);
  }

  private setDeferred(vm: ServedVm, on: boolean): void {
    if (vm.deferred === on) return;
    vm.deferred = on;
    this.deferred += on ? 1 : -1;
    if (!on) vm.yields = 0;
  }

  private checkConnection(vm: ServedVm): void {
    if (vm.a.conn < 0) return this.end(vm, 'exited', 'Firecracker exited');
    // Firecracker never writes after the handshake: readable means end-of-file or garbage.
    const r = readInto(vm.a.conn, this.drainAddr, this.drainBuf.length);
    if (r === 0 || (r < 0 && r !== -E.EAGAIN && r !== -E.EINTR)) {
      this.end(vm, 'exited', 'Firecracker closed the connection');
    } else if (r > 0) {
      this.send({ type: 'warning', id: vm.a.id, message: `Firecracker sent ${r} unexpected bytes after the handshake; ignored` });
    }
  }

  private fatal(vm: ServedVm, why: string): void {
    if (vm.a.onFatal === 'kill-peer' && vm.a.pidfd >= 0) {
      const killed = pidfdSignal(vm.a.pidfd, SIGKILL);
      return this.end(vm, 'fatal', why, killed);
    }
    this.end(vm, 'fatal', why);
  }

  private end(vm: ServedVm, reason: EndReason, message: string, killed = false): void {
    if (vm.ended) return;
    vm.ended = true;
    this.setDeferred(vm, false);
    this.endedCount++;
    const a = vm.a;
    // Deregister first: Firecracker holds the same open uffd, so closing ours
    // would not take it out of the interest list.
    this.epoll.remove(a.uffd);
    this.epoll.remove(a.conn >= 0 ? a.conn : a.pidfd);
    closeFd(a.uffd);
    closeFd(a.conn);
    closeFd(a.pidfd);
    const stats: VmStats = {
      ...readFaultCounts(this.core, a.table),
      reads: vm.reads,
      messages: vm.messages,
      eagain: vm.eagain,
      eexist: vm.eexist,
      notRegistered: vm.notRegistered,
      zeroRanges: vm.zero?.ranges ?? 0,
      zeroRangeBytes: vm.zero?.bytes ?? 0,
      lastFaultMs: vm.lastFault - vm.started,
      servedMs: now() - vm.started,
      fetchWaits: vm.fetchWaits,
      fetchWaitMs: vm.fetchWaitMs,
      fetchWaitMaxMs: vm.fetchWaitMaxMs,
    };
    const records = vm.rec ? vm.rec.take() : null;
    this.send({ type: 'ended', id: a.id, reason, message, killed, stats, records });
  }

  private sweep(): void {
    for (let i = 0; i < this.slots.length; i++) if (this.slots[i]?.ended) this.slots[i] = null;
    this.endedCount = 0;
  }
}
