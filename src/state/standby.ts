// --standby: a handler started completely (core, workers, snapshot) beside the
// one that owns the state directory, waiting for that owner to exit. Its exit
// shows on a pidfd at once, so the standby takes the VMs over without paying
// Node's start (about a quarter of a second) while the guests wait. A handover
// announced by a snapfault started with --takeover is left to it.
import { StateDir, type StateOwner } from './state-dir.js';
import { processStartTime } from './firecracker-process.js';
import { pidfdOpen } from '../../native/pidfd.js';
import { waitReadable, closeFd } from '../../native/fd.js';

/** How long one wait on the owner's pidfd holds a thread-pool thread: the loop asks again. */
const OWNER_WAIT_MS = 250;
/** While nobody can be named (the owner's pid not written yet, or a successor taking over). */
const RETRY_MS = 2;

/** A standby told to stop (a signal) before its owner exited. */
export class StandbyStopped extends Error {
  constructor() {
    super('stopped while standing by');
    this.name = 'StandbyStopped';
  }
}

export interface StandbyWatch {
  /** Called once per owner waited for (the first, then each successor of an upgrade). */
  onOwner: (owner: StateOwner) => void;
  /** Resolves when the standby should stop waiting. */
  stop: Promise<unknown>;
}

/** Waits until the owner of `dir` is gone, then takes the directory. */
export async function standBy(dir: string, watch: StandbyWatch): Promise<StateDir> {
  let stopped = false;
  const stopping = watch.stop.then(() => {
    stopped = true;
  });
  let watched: string | null = null;
  for (;;) {
    if (stopped) throw new StandbyStopped();
    // An upgrade in progress: the directory is the successor's, not ours.
    const successor = StateDir.liveSuccessor(dir);
    const got = successor ? null : StateDir.take(dir);
    if (got instanceof StateDir) {
      // Announced between the look and the take: give it back; the successor polls for it.
      if (StateDir.liveSuccessor(dir) === null) return got;
      got.release();
    }
    const owner = got && !(got instanceof StateDir) ? got.owner : null;
    const key = owner ? `${owner.pid} ${owner.startTime}` : null;
    if (owner && key !== watched) {
      watched = key;
      watch.onOwner(owner);
    }
    await Promise.race([ownerExit(owner), stopping]);
  }
}

/** Resolves when `owner` exits, or after a short while when it cannot be watched. */
async function ownerExit(owner: StateOwner | null): Promise<void> {
  if (!owner) return sleep(RETRY_MS);
  let pidfd = -1;
  try {
    pidfd = pidfdOpen(owner.pid);
  } catch {
    return; // exited already
  }
  try {
    // Opened, then checked: the pidfd is the recorded process, not a later one with its pid.
    if (processStartTime(owner.pid) !== owner.startTime) return sleep(RETRY_MS);
    await waitReadable(pidfd, OWNER_WAIT_MS);
  } finally {
    closeFd(pidfd);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
