// The time base of traces. Each thread's performance.now() counts from its
// own start, so every thread stamps records in Unix ms instead, from one place.

/** Unix time in ms, with performance.now()'s resolution. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Whole µs since `t0` (an epochMs() value): a record's time. */
export function usSince(t0: number): number {
  return Math.round((epochMs() - t0) * 1000);
}
