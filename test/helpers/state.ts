// A state directory's socket keeper (src/state/socket-keeper.ts) outlives a
// handler that is SIGKILLed, by design: tests that end that way stop it, so
// no `sleep` is left behind.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Proc } from './processes.js';

/** The end of a takeover test, however it went: handlers still running are SIGKILLed, and the directory's keeper stopped. */
export function killLeftOver(handlers: readonly Proc[], stateDir: string): void {
  for (const h of handlers) if (h.running) h.kill('SIGKILL');
  stopKeeper(stateDir);
}

export function stopKeeper(stateDir: string): void {
  let pid = 0;
  try {
    pid = Number(/^(\d+) /.exec(readFileSync(join(stateDir, 'keeper'), 'latin1'))?.[1] ?? 0);
  } catch {
    return;
  }
  try {
    // Only our own keeper: a `sleep infinity` whose pid the record names.
    if (pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'latin1') === 'sleep\0infinity\0') process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}
