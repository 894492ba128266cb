// Every error a user can meet, as a typed class whose message says what went
// wrong and what to do. The CLI prints `message` as one line, never a stack.

export class SnapfaultError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Wrong command-line usage. */
export class UsageError extends SnapfaultError {}

export class BuildMissingError extends SnapfaultError {
  constructor(path: string, why = 'it is missing') {
    super(`the WebAssembly core ${path} cannot be used: ${why}; run \`npm run build\``);
  }
}

export class OutOfCoreMemoryError extends SnapfaultError {
  constructor(bytes: number) {
    super(`the shared WebAssembly memory cannot grow to ${bytes} bytes (limit 2 GiB): serve fewer or smaller VMs per handler`);
  }
}

/** A snapshot memory file that cannot be served. */
export class SnapshotError extends SnapfaultError {
  constructor(readonly path: string, problem: string) {
    super(`snapshot ${path}: ${problem}`);
  }
}

export type HandshakeReason =
  | 'timeout' | 'closed' | 'too_large' | 'no_fd' | 'bad_fd' | 'json' | 'shape' | 'page_size'
  | 'alignment' | 'overlap' | 'bounds' | 'too_many_regions' | 'peer' | 'uid';

/** A Firecracker connection whose handshake was refused. */
export class HandshakeError extends SnapfaultError {
  constructor(
    readonly reason: HandshakeReason,
    problem: string,
    /** The peer sent not a byte: a liveness probe, say, rather than a Firecracker whose handshake went wrong. */
    readonly silent = false,
  ) {
    super(`handshake refused: ${problem}`);
  }
}

/** A compressed snapshot of a format version this snapfault does not read: not damaged, only unreadable here. */
export class SnapshotVersionError extends SnapshotError {}

/** An output path a command will not write as given; found before any work is done. */
export class OutputError extends SnapfaultError {}

/** The socket path cannot be used. */
export class SocketError extends SnapfaultError {}

/** A trace file that cannot be read, written or used. */
export class TraceError extends SnapfaultError {}

/** A prefetch policy that cannot be loaded, or that failed while running. */
export class PolicyError extends SnapfaultError {}

/** A snapshot store (src/store/) that cannot be used as asked: a missing store or snapshot, a name in use, damage. */
export class StoreError extends SnapfaultError {
  constructor(readonly store: string, problem: string) {
    super(`store ${store}: ${problem}`);
  }
}

/** A state directory (--state-dir) that cannot be used, or a record in it that cannot be read. */
export class StateError extends SnapfaultError {}

/** A state record written by a newer snapfault: not damaged, only unreadable here. */
export class StateVersionError extends StateError {}
