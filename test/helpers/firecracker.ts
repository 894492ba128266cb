// The real Firecracker kit (../shared/firecracker, or $SNAPFAULT_FC_KIT): a
// snapshot made once per build and kept under build/fc/, and restores through
// any handler with the kit's run-restore.sh, whose guest checks every byte.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './paths.js';

export const KIT = process.env.SNAPFAULT_FC_KIT ?? join(ROOT, '..', 'shared', 'firecracker');
const WORK = join(ROOT, 'build', 'fc');
/** Guest buffer and VM memory of the test snapshot, MiB: small enough to restore in a second or two. */
export const GUEST_MIB = 16;
export const VM_MIB = 128;
export const SNAPDIR = join(WORK, `snapshot-${GUEST_MIB}-${VM_MIB}`);
export const SNAPSHOT_MEM = join(SNAPDIR, 'mem');

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

export interface KitRun {
  code: number | null;
  /** Everything the script printed (its log on stderr, RESULT on stdout). */
  output: string;
}

function runKit(script: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<KitRun> {
  mkdirSync(WORK, { recursive: true });
  return new Promise((resolve) => {
    const child = spawn(join(KIT, script), args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FC_WORK: join(WORK, 'work'), SNAPDIR, KEEP_RUNS: '0', ...env },
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

/** The test snapshot, made with the kit unless build/fc already holds it (about 45 s). */
export async function ensureSnapshot(): Promise<string> {
  const ready = ['vmstate', 'mem', 'expected.txt', 'info.txt'].every((f) => existsSync(join(SNAPDIR, f)));
  if (ready && readFileSync(join(SNAPDIR, 'info.txt'), 'utf8').includes('balloon=1')) return SNAPDIR;
  const r = await runKit('make-snapshot.sh', [String(GUEST_MIB), String(VM_MIB)], { BALLOON: '1' }, 300_000);
  if (r.code !== 0) throw new Error(`make-snapshot.sh failed (exit ${r.code}):\n${r.output}`);
  return SNAPDIR;
}

export interface Restore extends KitRun {
  pass: boolean;
  /** PUT /snapshot/load with resume_vm, as the kit measured it. */
  loadMs: number;
  /** From the load request until the guest verified its whole buffer. */
  verifiedMs: number;
}

/**
 * Restores the test snapshot into a fresh Firecracker served by `handler`
 * (the kit appends `<socket> <memory file>` to it) and waits for the guest's
 * verdict. `env`: the kit's knobs (BALLOON_MIB, ROUNDS, ...).
 */
export async function restore(handler: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<Restore> {
  const r = await runKit('run-restore.sh', handler, { HANDLER_EXIT_TIMEOUT: '5', ...env }, timeoutMs);
  const m = r.output.match(/RESULT: (PASS|FAIL)\s+restore\(snapshot\/load\+resume\)=([\d.]+)ms.*load->first verified checksum=(\d+)ms/);
  return { ...r, pass: r.code === 0 && m?.[1] === 'PASS', loadMs: m ? Number(m[2]) : NaN, verifiedMs: m ? Number(m[3]) : NaN };
}
