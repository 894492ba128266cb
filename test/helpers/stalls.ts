// Reads the simulated Firecrackers report as stalled, measured against moments in a test.
/**
 * The longest any read waited after a moment in `starts` (a handler started,
 * or killed with a standby waiting): for each stall, from max(its start, the
 * last such moment before its end) to its end. Stalls are the simulator's
 * [start, end] in CLOCK_MONOTONIC ns, as process.hrtime.
 */
export function longestWaitAfter(stalls: Array<[number, number]>, starts: bigint[]): number {
  let worst = 0;
  for (const [s, e] of stalls) {
    let last = -1n;
    for (const t of starts) if (t <= BigInt(e) && t > last) last = t;
    if (last < 0n) continue;
    const from = BigInt(s) > last ? BigInt(s) : last;
    worst = Math.max(worst, Number(BigInt(e) - from) / 1e6);
  }
  return worst;
}
