// Real processes for end-to-end tests: the snapfault CLI and the Firecracker
// simulator (test/fc-sim/fc_sim.c), each in its own process, as in production.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { SNAPFAULT, FC_SIM } from './paths.js';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

// Every process a test starts dies with the test run, even when a failing test left it waiting.
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export class Proc {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  private waiters: Array<() => void> = [];

  constructor(cmd: string, args: string[], env?: NodeJS.ProcessEnv, cwd?: string) {
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, cwd });
    this.child.stdout?.on('data', (d: Buffer) => {
      this.stdout += d.toString();
      this.notify();
    });
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      this.notify();
    });
    live.add(this.child);
    this.exited = new Promise((resolve) => this.child.on('close', (code, signal) => {
      live.delete(this.child);
      resolve({ code, signal });
    }));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Neither exited nor killed by a signal yet. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once stderr matches `re`; rejects after `ms`. */
  async waitForStderr(re: RegExp, ms = 10_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = this.stderr.match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in stderr:\n${this.stderr}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  async waitExit(ms = 30_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`process did not exit within ${ms} ms; stderr:\n${this.stderr}`)), ms);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    this.child.kill(signal);
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Starts `snapfault ARGS` (in `opts.cwd`, if given) and waits until it listens. */
export async function startSnapfault(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Proc> {
  const p = new Proc(SNAPFAULT, args, opts.env, opts.cwd);
  await Promise.race([
    p.waitForStderr(/listening on /),
    p.exited.then((e) => {
      throw new Error(`snapfault exited early (${e.code ?? e.signal}): ${p.stderr}`);
    }),
  ]);
  return p;
}

export interface SimResult extends Exit {
  json: SimReport | null;
  stderr: string;
}

export interface SimReport {
  touches: number;
  elapsed_ns: number;
  faults_per_sec: number;
  p50_ns: number;
  p99_ns: number;
  mismatches: number;
  zero_checked: number;
  since_handshake_ns: number;
}

/** Starts the Firecracker simulator; resolve `.result` for its report. */
export function startSim(args: string[]): { proc: Proc; result: Promise<SimResult> } {
  if (!existsSync(FC_SIM)) throw new Error(`${FC_SIM} is missing: run npm run build`);
  const proc = new Proc(FC_SIM, ['--timeout-ms', '60000', ...args]);
  const result = proc.exited.then((e) => {
    const line = proc.stdout.trim().split('\n').pop() ?? '';
    let json: SimReport | null = null;
    try {
      json = line ? (JSON.parse(line) as SimReport) : null;
    } catch {
      json = null;
    }
    return { ...e, json, stderr: proc.stderr };
  });
  return { proc, result };
}

export function runSim(args: string[]): Promise<SimResult> {
  return startSim(args).result;
}
