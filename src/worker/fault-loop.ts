// The fault loop: one per worker thread, serving any number of VMs through
// synchronous koffi calls (async calls cost a thread-pool hop, 15-40 µs).
// poll(2) waits on every VM's uffd and socket plus a control eventfd; the WASM
// core turns each batch of uffd_msg into ready ioctl structs; this loop only
// issues them and handles the errors.
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { PollSet, POLL, EventFd, readInto, closeFd } from '../../native/fd.js';
import { ioctlRaw, UFFDIO } from '../../native/uffd.js';
import { E, addressOf } from '../../native/libc.js';
import { schedYield } from '../../native/sched.js';
import { pidfdSignal, SIGKILL } from '../../native/pidfd.js';
import type { Core } from '../core/wasm-core.js';
import type { VmAssignment, ToWorker, FromWorker, VmStats, EndReason } from './messages.js';

/** After this many yields with EAGAIN still pending, sleep in poll instead of spinning. */
const EAGAIN_YIELDS = 32;

interface ServedVm {
  a: VmAssignment;
  pending: number;
  deferred: boolean;
  yields: number;
  reads: number;
  messages: number;
  eagain: number;
  eexist: number;
  started: number;
  lastFault: number;
  uffdSlot: number;
  connSlot: number;
  ended: boolean;
}

export class FaultLoop {
  private readonly vms: ServedVm[] = [];
  private readonly poll = new PollSet(16);
  private dirty = true;
  private stopping = false;
  private readonly base: number;
  private i32: Int32Array;
  private dv: DataView;
  private readonly drainBuf = Buffer.alloc(4096);
  private readonly drainAddr = addressOf(this.drainBuf);
  private readonly L: Core['layout'];

  constructor(
    private readonly core: Core,
    private readonly control: EventFd,
    private readonly port: MessagePort,
    private readonly send: (m: FromWorker) => void,
  ) {
    this.L = core.layout;
    this.base = addressOf(new Uint8Array(core.memory.buffer));
    this.i32 = new Int32Array(core.memory.buffer);
    this.dv = new DataView(core.memory.buffer);
  }

  /** Runs until told to stop; returns after every VM has been released. */
  run(): void {
    while (!this.stopping) {
      if (this.dirty) this.rebuildPollSet();
      let timeout = -1;
      if (this.vms.some((v) => v.deferred)) timeout = this.vms.some((v) => v.deferred && v.yields >= EAGAIN_YIELDS) ? 1 : 0;
      const n = this.poll.wait(timeout);
      if (n < 0 && n !== -E.EINTR) throw new Error(`poll failed: errno ${-n}`);
      if (this.poll.revents(0) !== 0) this.takeControl();
      for (let i = 0; i < this.vms.length; i++) {
        const vm = this.vms[i];
        if (vm.ended) continue;
        const ur = vm.uffdSlot >= 0 ? this.poll.revents(vm.uffdSlot) : 0;
        if ((ur & POLL.IN) !== 0 || vm.deferred) this.serve(vm);
        else if ((ur & (POLL.ERR | POLL.HUP | POLL.NVAL)) !== 0) this.end(vm, 'fatal', 'the userfaultfd reported an error condition');
        if (!vm.ended && vm.connSlot >= 0 && this.poll.revents(vm.connSlot) !== 0) this.checkConnection(vm);
      }
      if (this.vms.some((v) => v.ended)) this.sweep();
    }
    for (const vm of this.vms) if (!vm.ended) this.end(vm, 'shutdown', 'the handler is shutting down');
    this.sweep();
  }

  private rebuildPollSet(): void {
    this.poll.clear();
    this.poll.add(this.control.fd, POLL.IN);
    for (const vm of this.vms) {
      vm.uffdSlot = this.poll.add(vm.a.uffd, POLL.IN);
      vm.connSlot = this.poll.add(vm.a.conn, POLL.IN | POLL.RDHUP);
    }
    this.dirty = false;
  }

  private takeControl(): void {
    this.control.drain();
    for (;;) {
      const m = receiveMessageOnPort(this.port);
      if (!m) return;
      const msg = m.message as ToWorker;
      if (msg.type === 'stop') this.stopping = true;
      else if (msg.type === 'add') this.add(msg.vm);
    }
  }

  private add(a: VmAssignment): void {
    if (this.i32.buffer.byteLength !== this.core.memory.buffer.byteLength) {
      // The main thread grew the shared memory: refresh the views.
      this.i32 = new Int32Array(this.core.memory.buffer);
      this.dv = new DataView(this.core.memory.buffer);
    }
    const now = performance.now();
    this.vms.push({
      a, pending: 0, deferred: false, yields: 0, reads: 0, messages: 0, eagain: 0, eexist: 0,
      started: now, lastFault: now, uffdSlot: -1, connSlot: -1, ended: false,
    });
    this.dirty = true;
  }

  /** Reads every queued event of the VM, plans them in the core, issues the ioctls. */
  private serve(vm: ServedVm): void {
    const a = vm.a;
    const L = this.L;
    const msgSize = L.MSG_SIZE;
    for (;;) {
      // Read all that is queued (removes included) before acting on any of it.
      while (vm.pending < a.capacity) {
        const r = readInto(a.uffd, this.base + a.msgs + vm.pending * msgSize, (a.capacity - vm.pending) * msgSize);
        if (r > 0) {
          vm.reads++;
          vm.messages += r / msgSize;
          vm.pending += r / msgSize;
          continue;
        }
        if (r === -E.EAGAIN || r === -E.EINTR) break;
        if (r === 0) return this.end(vm, 'exited', 'the userfaultfd closed');
        return this.end(vm, 'fatal', `reading the userfaultfd failed (errno ${-r})`);
      }
      if (vm.pending === 0) {
        vm.deferred = false;
        return;
      }
      const count = this.core.fn.plan(a.table, a.msgs, vm.pending, a.actions);
      let done = vm.pending;
      for (let k = 0; k < count; k++) {
        const act = a.actions + k * L.ACTION_STRIDE;
        const kind = this.i32[(act + L.ACTION_KIND) >> 2];
        if (kind === L.KIND_UNMAPPED) {
          const addr = this.dv.getBigUint64(act + L.ACTION_IOCTL, true);
          return this.fatal(vm, `the guest touched 0x${addr.toString(16)}, outside every region of the handshake or past the end of the snapshot`);
        }
        const rc = ioctlRaw(a.uffd, kind === L.KIND_COPY ? UFFDIO.COPY : UFFDIO.ZEROPAGE, this.base + act + L.ACTION_IOCTL);
        if (rc >= 0) continue;
        if (rc === -E.EEXIST) {
          // Filled already (by a racing fault or a prefetch): make sure nobody still sleeps on it.
          vm.eexist++;
          ioctlRaw(a.uffd, UFFDIO.WAKE, this.base + act + L.ACTION_WAKE);
          continue;
        }
        if (rc === -E.EAGAIN) {
          // A REMOVE is queued or in progress (mmap_changing): keep this fault
          // and everything after it, read the queue, and retry after a yield.
          vm.eagain++;
          done = this.i32[(act + L.ACTION_MSG_INDEX) >> 2];
          break;
        }
        if (rc === -E.ESRCH || rc === -E.ENOENT) return this.end(vm, 'exited', 'Firecracker exited');
        const dst = this.dv.getBigUint64(act + L.ACTION_IOCTL, true);
        const why = rc === -E.EFAULT
          ? 'the snapshot bytes could not be read (was the memory file truncated while serving?)'
          : `errno ${-rc}`;
        return this.fatal(vm, `resolving the fault at 0x${dst.toString(16)} failed: ${why}`);
      }
      if (count > 0) vm.lastFault = performance.now();
      if (done < vm.pending) {
        const keep = vm.pending - done;
        new Uint8Array(this.core.memory.buffer).copyWithin(a.msgs, a.msgs + done * msgSize, a.msgs + vm.pending * msgSize);
        vm.pending = keep;
        if (!vm.deferred) vm.yields = 0;
        vm.deferred = true;
        vm.yields++;
        schedYield();
        return;
      }
      vm.pending = 0;
      vm.deferred = false;
      vm.yields = 0;
    }
  }

  private checkConnection(vm: ServedVm): void {
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
    const a = vm.a;
    closeFd(a.uffd);
    closeFd(a.conn);
    closeFd(a.pidfd);
    const L = this.L;
    const u64 = (off: number): number => Number(this.dv.getBigUint64(a.table + off, true));
    const stats: VmStats = {
      copies: u64(L.VM_STAT_COPY),
      zeropages: u64(L.VM_STAT_ZERO),
      removedZero: u64(L.VM_STAT_REMOVED_ZERO),
      bytes: u64(L.VM_STAT_BYTES),
      removeEvents: u64(L.VM_STAT_REMOVE_EVENTS),
      otherEvents: u64(L.VM_STAT_OTHER_EVENTS),
      reads: vm.reads,
      messages: vm.messages,
      eagain: vm.eagain,
      eexist: vm.eexist,
      lastFaultMs: vm.lastFault - vm.started,
      servedMs: performance.now() - vm.started,
    };
    this.send({ type: 'ended', id: a.id, reason, message, killed, stats });
  }

  private sweep(): void {
    for (let i = this.vms.length - 1; i >= 0; i--) if (this.vms[i].ended) this.vms.splice(i, 1);
    this.dirty = true;
  }
}
