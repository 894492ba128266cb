// What the main thread and the fault workers say to each other.
import type { FaultCounts } from '../vm/vm-table.js';
import type { MirrorTarget } from '../state/removed-mirror.js';
import type { ZeroRangeWork } from './zero-ranges.js';

export type FatalPolicy = 'kill-peer' | 'disconnect';

/** A VM handed to a fault worker: its fds now belong to that worker. */
export interface VmAssignment {
  id: number;
  /** Firecracker's pid (SO_PEERCRED), for messages. */
  peerPid: number;
  uffd: number;
  /** Its connection; -1 for a VM taken over from another handler, whose end shows on the pidfd instead. */
  conn: number;
  /** A pidfd of the peer, opened at accept, so a kill can never hit a reused pid. -1 if none. */
  pidfd: number;
  /** Offset of the VM table in shared memory. */
  table: number;
  /** Offsets of the VM's uffd_msg buffer and action buffer, and their capacity in messages. */
  msgs: number;
  actions: number;
  capacity: number;
  onFatal: FatalPolicy;
  /** Compressed snapshots: the snapshot descriptor, and the VM's buffer for fill-around copies. 0 for raw files. */
  snap: number;
  fill: number;
  /** A prefetch worker copies into this VM: read the uffd through the fence. */
  fenced: boolean;
  /** The VM's fault feed for a reactive prefetch policy, or 0. */
  feed: number;
  /** The prefetch worker's doorbell (rung when it sleeps and faults were fed), or 0. */
  doorbell: number;
  /** Unix time of the handshake, ms: trace times count from it. */
  t0: number;
  /** Record every fault for the trace (--record). */
  record: boolean;
  /** Its record in the state directory: every REMOVE read is mirrored there (--state-dir), or null. */
  mirror: MirrorTarget | null;
  /** What to do with the VM's all-zero ranges (zero-ranges.ts). */
  zeroRanges: ZeroRangeWork | 'off';
  /** Its snapshot's chunks come from a bucket through a disk cache: a fault on one not cached yet is parked while it is fetched. */
  fetched: boolean;
}

export type ToWorker =
  | { type: 'add'; vm: VmAssignment }
  /** The zero-page scan of the file whose zero bitmap is at `bitmap` is over. */
  | { type: 'zeroes'; bitmap: number }
  /** Chunk `chunk` of the snapshot descriptor `snap` is in the disk cache now, or (error: one line naming it) could not be fetched. */
  | { type: 'fetched'; snap: number; chunk: number; error: string | null }
  | { type: 'stop' };

/** A VM's counters when it ends: the core's, and the fault loop's own. */
export interface VmStats extends FaultCounts {
  reads: number;
  messages: number;
  eagain: number;
  eexist: number;
  /** Faults whose page had left the uffd's ranges when resolved (ENOENT): woken, the kernel's to fill. */
  notRegistered: number;
  /** All-zero ranges taken out of the uffd (or mapped ahead, zeropage mode), and their bytes. */
  zeroRanges: number;
  zeroRangeBytes: number;
  /** ms from assignment to the last resolved fault. */
  lastFaultMs: number;
  servedMs: number;
  /** Served from a bucket: faults that waited for their chunk to be fetched, and their waits (ms) in all and at most. */
  fetchWaits: number;
  fetchWaitMs: number;
  fetchWaitMaxMs: number;
}

export type EndReason = 'exited' | 'fatal' | 'shutdown';

export type FromWorker =
  | { type: 'ready' }
  /** The loop has ended (after every VM's 'ended'): the thread touches no VM any more. */
  | { type: 'stopped' }
  | { type: 'ended'; id: number; reason: EndReason; message: string; killed: boolean; stats: VmStats; records: Uint32Array | null }
  | { type: 'warning'; id: number; message: string }
  /** Faults of VM `id` wait for chunk `chunk` of the snapshot descriptor `snap`: fetch it into the disk cache (`discard`: the cached one is damaged). */
  | { type: 'fetch'; id: number; snap: number; chunk: number; discard: boolean };
