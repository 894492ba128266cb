// Every file snapfault writes goes through here. Before any work the path is
// checked: its folder exists and is writable, it is not a folder, not one of
// the command's inputs (compared by device and inode, so another spelling, a
// symbolic or a hard link is caught), and not an existing file of another kind
// unless the user said --force. The file is then written beside its final name
// and renamed over it once complete: a reader never sees half a file, and a
// command that fails or is interrupted leaves what was there before.
import { statSync, accessSync, openSync, readSync, writeSync, ftruncateSync, closeSync, fsyncSync, renameSync, unlinkSync, constants as fsc, type Stats } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { OutputError } from './errors.js';

export interface OutputKind {
  /** What the command writes, as messages name it: "a snapfault trace". */
  readonly name: string;
  /**
   * Whether an existing file is of this kind, judged by its first bytes: then
   * writing over it is what the user means. Null for a kind without a header
   * (a raw memory file): replacing any existing file then needs --force.
   */
  readonly recognise: ((head: Buffer) => boolean) | null;
  /** A file name to suggest when the output given is a folder. */
  readonly suggestedName: string;
}

export interface OutputInput {
  path: string;
  /** What it is to the command, as messages name it: "the memory file to pack". */
  what: string;
}

export interface OutputRequest {
  /** The option that named the path, for messages: '-o' or '--record'. */
  option: string;
  path: string;
  kind: OutputKind;
  /** Never written over, whatever --force says. */
  inputs?: readonly OutputInput[];
  /** --force: an existing file of another kind may be replaced. */
  force?: boolean;
}

const HEAD_BYTES = 512;

/** Returns when `req.path` may be written; otherwise throws an OutputError naming the problem and what to do. */
export function checkOutput(req: OutputRequest): void {
  const { path, kind } = req;
  const fail = outputFailure(req.option, path);
  // Elsewhere '-' means standard output, which no command writes to: not a file named '-' either.
  if (path === '-') fail('standard output is not supported: give the path of a file to write');
  checkOutputFolder(req.option, path);
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    const code = errorCode(e);
    if (code === 'ENOENT') return; // nothing there (or a dangling link, which the rename replaces)
    return fail(code === 'ELOOP' ? 'is a symbolic link that loops: remove it or choose another path' : `cannot be looked at (${code}): check the path`);
  }
  if (st.isDirectory()) fail(`is a folder: give the path of a file to write, e.g. ${join(path, kind.suggestedName)}`);
  for (const input of req.inputs ?? []) {
    const i = statOrNull(input.path);
    if (i !== null && i.dev === st.dev && i.ino === st.ino) {
      fail(`is ${input.path === path ? '' : 'the same file as '}${input.what} (${input.path}): choose another path`);
    }
  }
  if (!st.isFile()) fail('exists and is not a regular file: choose another path');
  // An empty file holds nothing to lose (mktemp makes them).
  if (st.size === 0 || req.force) return;
  if (kind.recognise === null) fail(`exists (${kind.name} has no header to recognise it by): give --force to replace it, or choose another path`);
  else if (!kind.recognise(firstBytes(path))) fail(`exists and is not ${kind.name}: give --force to replace it, or choose another path`);
}

/** The folder part of the checks: it exists, is a folder, and may be written. */
export function checkOutputFolder(option: string, path: string): void {
  const fail = outputFailure(option, path);
  const dir = dirname(path);
  let st: Stats;
  try {
    st = statSync(dir);
  } catch (e) {
    const code = errorCode(e);
    if (code === 'ENOENT') fail(`the folder ${dir} does not exist: create it first`);
    if (code === 'ENOTDIR') fail(`${dir} is not a folder: check the path`);
    if (code === 'EACCES') fail(`the folder ${dir} cannot be reached (permission denied): choose another folder`);
    return fail(`the folder ${dir} cannot be used (${code}): check the path`);
  }
  if (!st.isDirectory()) fail(`${dir} is not a folder: check the path`);
  try {
    accessSync(dir, fsc.W_OK | fsc.X_OK);
  } catch {
    fail(`the folder ${dir} is not writable: choose another folder`);
  }
}

// Temporaries not yet renamed: removed if the process ends or is interrupted first.
const pending = new Set<string>();
const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function removePending(): void {
  for (const t of pending) {
    try {
      unlinkSync(t);
    } catch {
      /* gone already */
    }
  }
  pending.clear();
}

process.on('exit', removePending);

function onSignal(sig: NodeJS.Signals): void {
  removePending();
  unwatchSignals();
  // Nobody else handles it: end the way the signal would have ended the process.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

function watchSignals(): void {
  if (pending.size === 1) for (const s of SIGNALS) process.on(s, onSignal);
}

function unwatchSignals(): void {
  if (pending.size === 0) for (const s of SIGNALS) process.off(s, onSignal);
}

/** A file being written beside its final name; `commit` renames it over that name. */
export class AtomicFile {
  private open = true;

  private constructor(readonly path: string, readonly temp: string, readonly fd: number, private readonly option: string) {}

  /** Creates the temporary beside `path`: a new file (never one found there, nor a link), hidden from listings. */
  static create(path: string, option = '-o'): AtomicFile {
    const temp = join(dirname(path), `.${basename(path).slice(0, 200)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
    // Pending (and signals watched) before the file exists: a signal arriving in between would
    // otherwise end the process with the default action and leave the file behind.
    pending.add(temp);
    watchSignals();
    let fd: number;
    try {
      fd = openSync(temp, 'wx', 0o666);
    } catch (e) {
      pending.delete(temp);
      unwatchSignals();
      throw writeError(option, path, e);
    }
    return new AtomicFile(path, temp, fd, option);
  }

  /** Writes all of `data` at `position` (or where the last write ended). */
  write(data: Uint8Array, position?: number): void {
    try {
      for (let done = 0; done < data.length; ) {
        done += writeSync(this.fd, data, done, data.length - done, position === undefined ? null : position + done);
      }
    } catch (e) {
      throw writeError(this.option, this.path, e);
    }
  }

  truncate(size: number): void {
    try {
      ftruncateSync(this.fd, size);
    } catch (e) {
      throw writeError(this.option, this.path, e);
    }
  }

  /** Makes it the file at `path`: flushed to disk, then renamed over whatever was there. */
  commit(): void {
    try {
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.open = false;
      renameSync(this.temp, this.path);
    } catch (e) {
      this.discard();
      throw writeError(this.option, this.path, e);
    }
    pending.delete(this.temp);
    unwatchSignals();
    syncFolder(dirname(this.path));
  }

  /** Removes the temporary; what was at `path` stays as it was. Never throws. */
  discard(): void {
    if (this.open) {
      this.open = false;
      try {
        closeSync(this.fd);
      } catch {
        /* closed */
      }
    }
    if (!pending.delete(this.temp)) return;
    try {
      unlinkSync(this.temp);
    } catch {
      /* gone */
    }
    unwatchSignals();
  }
}

/** Writes `data` to `path` atomically (see AtomicFile). */
export function writeFileAtomic(path: string, data: Uint8Array | string, option = '-o'): void {
  const f = AtomicFile.create(path, option);
  try {
    f.write(typeof data === 'string' ? Buffer.from(data) : data, 0);
    f.commit();
  } catch (e) {
    f.discard();
    throw e;
  }
}

function outputFailure(option: string, path: string): (problem: string) => never {
  return (problem) => {
    throw new OutputError(`${option} ${path}: ${problem}`);
  };
}

function writeError(option: string, path: string, e: unknown): OutputError {
  if (e instanceof OutputError) return e;
  const code = errorCode(e);
  const dir = dirname(path);
  const problem =
    code === 'ENOENT' ? `the folder ${dir} does not exist: create it first`
    : code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? `the folder ${dir} is not writable: choose another folder`
    : code === 'ENOSPC' || code === 'EDQUOT' ? `no space left where ${dir} is: free some or choose another folder`
    : code === 'ENAMETOOLONG' ? 'the name is too long: choose a shorter one'
    : code === 'EISDIR' ? 'is a folder: give the path of a file to write'
    : `cannot be written (${code}): check the path and the disk`;
  return new OutputError(`${option} ${path}: ${problem}`);
}

function syncFolder(dir: string): void {
  // The rename is durable once the folder's entry is on disk; a filesystem that cannot say so is no reason to fail.
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* best effort */
  }
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function firstBytes(path: string): Buffer {
  const b = Buffer.alloc(HEAD_BYTES);
  let fd = -1;
  try {
    fd = openSync(path, 'r');
    return b.subarray(0, readSync(fd, b, 0, HEAD_BYTES, 0));
  } catch {
    return b.subarray(0, 0); // unreadable: not recognisably of any kind
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

function errorCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? String(e);
}
