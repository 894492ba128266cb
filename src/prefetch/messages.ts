// What the main thread and the prefetch worker say to each other.

/** A VM handed to the prefetch worker. Its uffd is a duplicate the worker closes itself. */
export interface PrefetchAssignment {
  id: number;
  peerPid: number;
  uffd: number;
  table: number;
  /** Compressed snapshot descriptor, or 0. */
  snap: number;
  /** The VM's fault feed (reactive policies), or 0. */
  feed: number;
  /** Pages (4 KiB) in the snapshot's memory. */
  pages: number;
  /** Unix time of the handshake, ms (performance.timeOrigin + now()). */
  t0: number;
  record: boolean;
}

export type ToPrefetcher =
  | { type: 'add'; vm: PrefetchAssignment }
  | { type: 'release'; id: number }
  | { type: 'stop' };

export type FromPrefetcher =
  | { type: 'ready' }
  | { type: 'released'; id: number; records: Uint32Array | null }
  | { type: 'warning'; id: number; message: string };
