// What the main thread and the prefetch worker say to each other.
import type { VmAssignment } from '../worker/messages.js';

/**
 * A VM handed to the prefetch worker: what its fault worker gets, but `uffd`
 * is a duplicate the prefetch worker closes itself.
 */
export type PrefetchAssignment = Pick<VmAssignment, 'id' | 'peerPid' | 'uffd' | 'table' | 'snap' | 'feed' | 't0' | 'record'> & {
  /** Pages (4 KiB) in the snapshot's memory. */
  pages: number;
};

export type ToPrefetcher =
  | { type: 'add'; vm: PrefetchAssignment }
  | { type: 'release'; id: number }
  | { type: 'stop' };

export type FromPrefetcher =
  | { type: 'ready' }
  | { type: 'released'; id: number; records: Uint32Array | null }
  | { type: 'warning'; id: number; message: string };
