// Counters and histograms each fault worker keeps in shared memory (one
// Float64Array block per worker, one writer), read by the main thread when
// metrics are scraped: no messages on the fault path.
export const WORKER_STAT = {
  EAGAIN: 0,
  EEXIST: 1,
  READS: 2,
  MESSAGES: 3,
  LATENCY_SUM_S: 4,
  LATENCY_COUNT: 5,
  /** Faults whose page was in no registered range any more when resolved (ENOENT): woken only. */
  NOT_REGISTERED: 6,
  /** Faults by handling time, one slot per bound in LATENCY_BOUNDS_S plus +Inf. */
  LATENCY_BUCKETS: 8,
  /** Reads by messages returned, one slot per bound in READ_BOUNDS plus +Inf. */
  READ_BUCKETS: 32,
  SIZE: 48,
} as const;

/** Seconds: from reading a fault to its page being installed, inside the handler. */
export const LATENCY_BOUNDS_S = [2e-6, 5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3, 0.1, 1];
export const READ_BOUNDS = [1, 2, 4, 8, 16, 32, 64];

export const WORKER_STATS_BYTES = WORKER_STAT.SIZE * 8;

/** Index of the first bound >= v (the +Inf slot when none). */
export function bucketOf(bounds: readonly number[], v: number): number {
  let i = 0;
  while (i < bounds.length && v > bounds[i]) i++;
  return i;
}
