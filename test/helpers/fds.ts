// Open file descriptors of a process, for tests that check nothing leaks:
// fds open and close on their own schedule (a VM's uffd is closed by its
// worker thread, a thread's own fds when it exits), so a test waits for the
// count to come back to its baseline rather than reading it once.
import { readdirSync, readlinkSync } from 'node:fs';

/** fd number → what it refers to (readlink of /proc/PID/fd/N). */
export function fdTable(pid: number | 'self' = 'self'): Map<number, string> {
  const dir = `/proc/${pid}/fd`;
  const table = new Map<number, string>();
  for (const name of readdirSync(dir)) {
    try {
      table.set(Number(name), readlinkSync(`${dir}/${name}`));
    } catch {
      // Closed since the listing: readdirSync's own fd of /proc/self/fd, or one going away now.
    }
  }
  return table;
}

/**
 * Resolves once the process has exactly as many fds as `baseline` again;
 * rejects after `ms` naming the fds opened (and closed) since the baseline.
 */
export async function fdsBackTo(baseline: ReadonlyMap<number, string>, pid: number | 'self' = 'self', ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const now = fdTable(pid);
    if (now.size === baseline.size) return;
    if (Date.now() > deadline) throw new Error(`${now.size} fds open, ${baseline.size} at the baseline, after waiting ${ms} ms; ${fdDiff(baseline, now)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** What changed between two fd tables, for a failure message. */
export function fdDiff(before: ReadonlyMap<number, string>, after: ReadonlyMap<number, string>): string {
  const list = (a: ReadonlyMap<number, string>, b: ReadonlyMap<number, string>): string =>
    [...a].filter(([fd, target]) => b.get(fd) !== target).map(([fd, target]) => `${fd} -> ${target}`).join(', ') || 'none';
  return `left over: ${list(after, before)}; closed: ${list(before, after)}`;
}
