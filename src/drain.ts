// How a serving handler stops. The first SIGTERM or SIGINT stops accepting
// and drains: the VMs connected go on being served until they exit or the
// drain timeout passes, because a VM released early can never fault a page
// in again (an upgrade or a restart must not freeze guests). A second signal
// during the drain stops at once, releasing them, as an operator who insists
// expects.
import type { SnapfaultServer } from './server.js';
import type { Logger } from './log.js';

export interface DrainOptions {
  /** Seconds to wait for connected VMs after the first signal; 0: stop at once. */
  drainTimeoutS: number;
  /** The drop-in form: it also ends, without a signal, when its one VM does. */
  once: boolean;
  log: Logger;
}

/** The default of --drain-timeout: long enough for a restore to finish, short enough for a host shutdown. */
export const DEFAULT_DRAIN_TIMEOUT_S = 300;
/** setTimeout's limit is 2^31 - 1 ms (24.8 days): a week stays well below it. */
export const MAX_DRAIN_TIMEOUT_S = 7 * 86_400;

/**
 * SIGTERM and SIGINT, caught from before the handler starts (so that one
 * arriving once it says it listens never kills it outright) until dispose().
 */
export class StopSignals {
  private count = 0;
  private onFirst: (sig: NodeJS.Signals) => void = () => undefined;
  private onSecond: () => void = () => undefined;
  /** The first signal. */
  readonly first = new Promise<NodeJS.Signals>((r) => (this.onFirst = r));
  /** A second one: stop at once. */
  readonly second = new Promise<'signal'>((r) => (this.onSecond = () => r('signal')));
  private onHandover: () => void = () => undefined;
  /** SIGUSR2 from a snapfault started with --takeover on our state directory: hand the VMs over to it. */
  readonly handover = new Promise<'handover'>((r) => (this.onHandover = () => r('handover')));
  private readonly handoverHandler = (): void => this.onHandover();
  private readonly handler = (sig: NodeJS.Signals): void => {
    this.count++;
    if (this.count === 1) return this.onFirst(sig);
    if (this.count === 2) this.log.warn(`${sig} again: stopping now`, { event: 'signal', signal: sig });
    this.onSecond();
  };

  /** `handover`: listen for SIGUSR2 (a handler with a state directory). */
  constructor(private readonly log: Logger, handover = false) {
    process.on('SIGTERM', this.handler);
    process.on('SIGINT', this.handler);
    if (handover) process.on('SIGUSR2', this.handoverHandler);
  }

  dispose(): void {
    process.off('SIGTERM', this.handler);
    process.off('SIGINT', this.handler);
    process.off('SIGUSR2', this.handoverHandler);
  }
}

/**
 * Waits until this run should end (a signal, a crashed fault worker; with
 * `once`, also the one VM's end), drains after a signal, then calls `stopAll`
 * (which releases what is left). Says whether the run ended by a crash.
 */
export async function serveUntilStopped(server: SnapfaultServer, signals: StopSignals, { drainTimeoutS, once, log }: DrainOptions,
  stopAll: () => Promise<void>): Promise<'stopped' | 'crashed'> {
  const crashed = server.crashed.then(() => 'crashed' as const);
  const sig = await Promise.race([signals.first, crashed, signals.handover, ...(once ? [server.firstOutcome.then(() => null)] : [])]);
  if (sig === 'handover') {
    // No drain: the successor is ready and waits for the state directory; every VM's record stays for it.
    const vms = server.connectedPids;
    log.info(`handing over: a snapfault started with --takeover asked for this state directory; stopping at once and leaving ` +
      `${vms.length} VM(s) to it${vms.length ? ` (pid ${vms.join(', ')})` : ''}`, { event: 'handover', vms });
  } else if (sig !== null && sig !== 'crashed') {
    // A successor asking for the VMs (--takeover) ends a drain as a second signal would, leaving them recorded for it.
    await drain(server, sig, drainTimeoutS, log, Promise.race([signals.second, signals.handover.then(() => 'signal' as const)]));
  }
  if (sig === 'handover') await server.handOver();
  await stopAll();
  return sig === 'crashed' ? 'crashed' : 'stopped';
}

async function drain(server: SnapfaultServer, sig: NodeJS.Signals, timeoutS: number, log: Logger, second: Promise<'signal'>): Promise<void> {
  if (timeoutS === 0 || server.idle) {
    log.info(`${sig}: stopping`, { event: 'signal', signal: sig });
    return;
  }
  const t0 = Date.now();
  // First the socket goes (drain() removes it at once), then the line that says so.
  const drained = server.drain(timeoutS * 1000).then((idle) => (idle ? 'drained' : 'timeout'));
  const vms = server.connectedPids;
  const what = vms.length > 0 ? `the ${vms.length} VM(s) connected (pid ${vms.join(', ')})` : 'the connection(s) whose handshake is under way';
  log.info(`${sig}: stopped accepting (socket removed); serving ${what} until they exit, at most ${timeoutS} s; ` +
    'SIGTERM or SIGINT again stops at once and releases them', { event: 'draining', signal: sig, vms, timeoutS });
  const how = await Promise.race([drained, second]);
  const ms = Date.now() - t0;
  if (how === 'drained') log.info(`drained: every VM exited within ${(ms / 1000).toFixed(1)} s; stopping`, { event: 'drained', ms });
  // Which VMs are released is said by stop(), for this case and a second signal alike.
  else if (how === 'timeout') log.warn(`the drain timeout of ${timeoutS} s passed; stopping`, { event: 'drain_timeout', timeoutS });
}
