// The real Firecracker kit (../shared/firecracker, or $SNAPFAULT_FC_KIT): a
// snapshot made once per build and kept under build/fc/, and restores through
// any handler with the kit's run-restore.sh, whose guest checks every byte.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, mkdirSync } from 'node:fs';
import { join, isAbsolute } from 'node:path';
import { ROOT } from './paths.js';

/** A handler command for the kit, which appends `<socket> <memory file>`: a shell script, its socket as "$1". */
export const sh = (script: string): string[] => ['sh', '-c', script, 'sh'];
/** `s` quoted for that shell. */
export const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export const KIT = process.env.SNAPFAULT_FC_KIT ?? join(ROOT, '..', 'shared', 'firecracker');
const WORK = join(ROOT, 'build', 'fc');
/** Why real-Firecracker tests cannot run here, or null when they can. */
export function kitProblem(): string | null {
  if (!existsSync(join(KIT, 'run-restore.sh'))) return `the Firecracker kit is not at ${KIT} (set SNAPFAULT_FC_KIT)`;
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return '/dev/kvm is missing or not usable (run as root on a machine with KVM)';
  }
  return null;
}

/**
 * Skips the calling suite (saying why) when the kit or /dev/kvm is missing;
 * under CI, which has both, a missing one fails instead: never a silent skip.
 */
export function requireKit(suite: Mocha.Context): void {
  const problem = kitProblem();
  if (!problem) return;
  if (process.env.CI) throw new Error(`real Firecracker tests cannot run: ${problem}`);
  console.log(`    real Firecracker: SKIPPED: ${problem}`);
  suite.skip();
}

export interface KitRun {
  code: number | null;
  /** Everything the script printed (its log on stderr, RESULT on stdout). */
  output: string;
}

/** The alloc driver beside this file (test/helpers/fc-alloc.sh): the kit has no script for "alloc N" alone. */
const ALLOC_SCRIPT = join(ROOT, 'test', 'helpers', 'fc-alloc.sh');
/** A restore with Firecracker's File backend, no handler (test/helpers/fc-file-restore.sh): the floor a handler is measured against. */
const FILE_RESTORE_SCRIPT = join(ROOT, 'test', 'helpers', 'fc-file-restore.sh');

/** Runs one of the kit's scripts, or (a path) a script of ours that sources the kit's common.sh. */
function runKit(script: string, args: string[], snapdir: string, env: NodeJS.ProcessEnv, timeoutMs: number, cpu: number | null = null): Promise<KitRun> {
  mkdirSync(WORK, { recursive: true });
  const path = isAbsolute(script) ? script : join(KIT, script);
  return new Promise((resolve) => {
    // Pinned: the script's children (the handler, Firecracker and its vCPU thread) inherit the CPU.
    const [cmd, argv] = cpu === null ? [path, args] : ['taskset', ['-c', String(cpu), path, ...args]];
    const child = spawn(cmd, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, KIT, FC_WORK: join(WORK, 'work'), SNAPDIR: snapdir, KEEP_RUNS: '0', ...env },
      detached: true, // its own process group: a timeout ends Firecracker and the handler with it
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      output += `\n(test: ${script} ran over ${timeoutMs} ms; killed)`;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

export interface Restore extends KitRun {
  pass: boolean;
  /** PUT /snapshot/load with resume_vm, as the kit measured it. */
  loadMs: number;
  /** From the load request until the guest verified its whole buffer. */
  verifiedMs: number;
}

/** A snapshot of the kit's guest: `guestMib` of checked buffer in a `vmMib` VM, kept under build/fc. */
export class KitSnapshot {
  readonly dir: string;
  readonly mem: string;

  /** `dir`: where it is kept (default build/fc/snapshot-<guestMib>-<vmMib>). */
  constructor(readonly guestMib: number, readonly vmMib: number, dir?: string) {
    this.dir = dir ?? join(WORK, `snapshot-${guestMib}-${vmMib}`);
    this.mem = join(this.dir, 'mem');
  }

  /** Makes the snapshot with the kit unless build/fc holds it already (45-70 s). */
  async ensure(): Promise<void> {
    const ready = ['vmstate', 'mem', 'expected.txt', 'info.txt'].every((f) => existsSync(join(this.dir, f)));
    if (ready && readFileSync(join(this.dir, 'info.txt'), 'utf8').includes('balloon=1')) return;
    const r = await runKit('make-snapshot.sh', [String(this.guestMib), String(this.vmMib)], this.dir, { BALLOON: '1' }, 300_000);
    if (r.code !== 0) throw new Error(`make-snapshot.sh failed (exit ${r.code}):\n${r.output}`);
  }

  /**
   * Restores it into a fresh Firecracker served by `handler` (the kit appends
   * `<socket> <memory file>`) and waits for the guest's verdict. `env`: the
   * kit's knobs (BALLOON_MIB, ROUNDS, UFFD_PREFAULT for its C handler, ...);
   * `cpu`: run all of it on that one CPU.
   */
  async restore(handler: string[], env: NodeJS.ProcessEnv = {}, opts: { timeoutMs?: number; cpu?: number } = {}): Promise<Restore> {
    const r = await runKit('run-restore.sh', handler, this.dir, { HANDLER_EXIT_TIMEOUT: '5', ...env }, opts.timeoutMs ?? 120_000, opts.cpu ?? null);
    const m = r.output.match(/RESULT: (PASS|FAIL)\s+restore\(snapshot\/load\+resume\)=([\d.]+)ms.*load->first verified checksum=(\d+)ms/);
    return { ...r, pass: r.code === 0 && m?.[1] === 'PASS', loadMs: m ? Number(m[2]) : NaN, verifiedMs: m ? Number(m[3]) : NaN };
  }
}

/** Restores `snap` with the File memory backend (Firecracker maps the memory file; no handler) and waits for the guest's check. */
export async function restoreFromFile(snap: KitSnapshot, opts: { cpu?: number; timeoutMs?: number } = {}): Promise<Restore> {
  const r = await runKit(FILE_RESTORE_SCRIPT, [], snap.dir, {}, opts.timeoutMs ?? 120_000, opts.cpu ?? null);
  const m = r.output.match(/RESULT: (PASS|FAIL) restore\(snapshot\/load\+resume\)=([\d.]+)ms load->first verified checksum=(\d+)ms/);
  return { ...r, pass: r.code === 0 && m?.[1] === 'PASS', loadMs: m ? Number(m[2]) : NaN, verifiedMs: m ? Number(m[3]) : NaN };
}

export interface Alloc extends KitRun {
  pass: boolean;
  loadMs: number;
  /** The guest's own time to map, touch and check its fresh memory. */
  allocUs: number;
}

/**
 * Restores `snap` through `handler`, then has the guest allocate and touch
 * `mib` MiB of fresh memory and check it reads zero (test/helpers/fc-alloc.sh).
 */
export async function restoreAndAlloc(snap: KitSnapshot, handler: string[], mib: number, opts: { cpu?: number; timeoutMs?: number } = {}): Promise<Alloc> {
  const r = await runKit(ALLOC_SCRIPT, handler, snap.dir, { ALLOC_MIB: String(mib) }, opts.timeoutMs ?? 180_000, opts.cpu ?? null);
  const m = r.output.match(/RESULT: (PASS|FAIL) load=([\d.]+) alloc_us=(\d+)/);
  return { ...r, pass: r.code === 0 && m?.[1] === 'PASS', loadMs: m ? Number(m[2]) : NaN, allocUs: m ? Number(m[3]) : NaN };
}

/**
 * A Full snapshot and a Diff snapshot taken after it in the same boot (with
 * track_dirty_pages), made by test/helpers/make-diff-snapshot.sh with the
 * kit's Firecracker and guest, kept under build/fc/<name>/{base,diff}. Between
 * the two the guest ran one `check` (its round counter, in the Diff's pages,
 * makes its next check say round=2) and `alloc allocMib`.
 */
export class KitDiffSnapshots {
  readonly dir: string;
  readonly base: KitSnapshot;
  readonly diff: KitSnapshot;

  constructor(readonly guestMib: number, readonly vmMib: number, readonly allocMib: number, name = `diff-${guestMib}-${vmMib}`) {
    this.dir = join(WORK, name);
    this.base = new KitSnapshot(guestMib, vmMib, join(this.dir, 'base'));
    this.diff = new KitSnapshot(guestMib, vmMib, join(this.dir, 'diff'));
  }

  /** Makes both with one boot unless build/fc holds them already (~45 s). */
  async ensure(): Promise<void> {
    const files = (s: KitSnapshot): boolean => ['vmstate', 'mem', 'expected.txt', 'info.txt'].every((f) => existsSync(join(s.dir, f)));
    if (files(this.base) && files(this.diff) && readFileSync(join(this.diff.dir, 'info.txt'), 'utf8').includes(`after=check, alloc ${this.allocMib}\n`)) return;
    const script = join(ROOT, 'test', 'helpers', 'make-diff-snapshot.sh');
    const r = await runKit(script, [this.base.dir, this.diff.dir, String(this.guestMib), String(this.vmMib), String(this.allocMib)], this.dir, {}, 300_000);
    if (r.code !== 0) throw new Error(`make-diff-snapshot.sh failed (exit ${r.code}):\n${r.output}`);
  }
}

/** The kit's minimal C handler, built into build/fc (the reference the bench compares with). */
export function kitCHandler(): string {
  const out = join(WORK, 'uffd_handler');
  if (!existsSync(out)) {
    mkdirSync(WORK, { recursive: true });
    const r = spawnSync('gcc', ['-O2', '-o', out, join(KIT, 'handler', 'uffd_handler.c')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`building the kit's C handler failed: ${r.stderr}`);
  }
  return out;
}
