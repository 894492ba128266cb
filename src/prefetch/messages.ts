// What the main thread and the prefetch worker say to each other.
import type { VmAssignment } from '../worker/messages.js';

/**
 * A VM handed to the prefetch worker: what its fault worker gets, but `uffd`
 * is a duplicate the prefetch worker closes itself.
 */
export type PrefetchAssignment = Pick<VmAssignment, 'id' | 'peerPid' | 'uffd' | 'table' | 'snap' | 'feed' | 't0' | 'record' | 'fetched'> & {
  /** Pages (4 KiB) in the snapshot's memory. */
  pages: number;
};

export type ToPrefetcher =
  | { type: 'add'; vm: PrefetchAssignment }
  | { type: 'release'; id: number }
  /** Chunk `chunk` of snapshot `snap` (served from a bucket) is in the disk cache now (`ok`), or could not be fetched. */
  | { type: 'landed'; snap: number; chunk: number; ok: boolean }
  | { type: 'stop' };

export type FromPrefetcher =
  | { type: 'ready' }
  | { type: 'released'; id: number; records: Uint32Array | null }
  | { type: 'warning'; id: number; message: string }
  /** A range waits for chunk `chunk` of `snap`, not in the disk cache: fetch it (after any fault's chunk). */
  | { type: 'need'; snap: number; chunk: number };
