// The command line: `snapfault [options] <socket> <memory-file>` (the drop-in
// form Firecracker's tests use) and `snapfault serve --socket --mem` (a
// long-running handler for many VMs).
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { readFileSync, accessSync, constants as fsc } from 'node:fs';
import { dirname } from 'node:path';
import { SnapfaultServer, type ServerOptions } from './server.js';
import { SnapfaultError, UsageError } from './errors.js';
import { createLogger, isLogLevel, isLogFormat, defaultLogFormat, type LogLevel } from './log.js';
import type { FatalPolicy } from './worker/messages.js';
import { TOOLS } from './compressed/commands.js';
import { MetricsEndpoint, parseMetricsAddress, type MetricsAddress } from './metrics.js';
import { parsePrefetch } from './prefetch/policy-spec.js';
import { traceTool, reportTool } from './trace/commands.js';
import { serveUntilStopped, StopSignals, DEFAULT_DRAIN_TIMEOUT_S, MAX_DRAIN_TIMEOUT_S } from './drain.js';

/** Exit codes, documented in the README. */
export const EXIT = {
  OK: 0,
  /** The served VM failed: handshake refused or a fatal fault error. */
  VM_FAILED: 1,
  /** Bad command line, or the handler could not start (snapshot, socket). */
  USAGE: 2,
} as const;

const SERVE_OPTIONS = `Options:
  --workers N               fault worker threads (default: 1 drop-in, ${Math.min(availableParallelism(), 4)} serve)
  --on-fatal POLICY         on a fatal error for a VM: kill-peer (default; kills that Firecracker,
                            since a guest whose pages cannot be served is frozen) or disconnect
                            (stop serving it, log it, leave the decision to the operator)
  --socket-mode MODE        octal mode of the socket file (default 0600)
  --allow-uid UID[,UID...]  peer uids allowed besides the handler's own (a jailed Firecracker);
                            any other uid's connection is refused and logged
  --handshake-timeout-ms N  refuse a connection that sends no mapping message in time (default 5000)
  --zero-scan on|off        find all-zero snapshot pages in the background, at idle priority,
                            and map them with UFFDIO_ZEROPAGE (default on; raw memory files)
  --cache-mib N             decoded-chunk cache of each compressed snapshot (default 64)
  --fill-around on|off      compressed snapshots: install a decoded chunk's other missing pages
                            with the faulting one (default on; off while recording)
  --prefetch POLICY         install pages before the guest asks (docs/prefetch.md):
                              none (default), readahead (grows a window on sequential faults),
                              replay:TRACE (the recorded working set, from the handshake on),
                              all or all:TRACE (all of memory, the working set first),
                              ./NAME.wasm (your own policy module)
  --record TRACE            record each restore's faults, prefetches and removals to TRACE
                            (serve: put {pid} in the path, it becomes Firecracker's pid)
  --metrics HOST:PORT       serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free port)
  --drain-timeout SECONDS   on SIGTERM or SIGINT: remove the socket, keep serving the connected VMs
                            until they exit, at most this long, then exit 0 (default ${DEFAULT_DRAIN_TIMEOUT_S};
                            0: at once); VMs still connected then, or at a second signal, are released
                            and can no longer fault pages in
  --log-level LEVEL         debug, info (default), warn, error or silent
  --log-format json|text    JSON lines (default when stderr is not a terminal) or readable lines
  -h, --help                this help`;

const MAIN_HELP = `snapfault: serves Firecracker snapshot restores over userfaultfd

Usage:
  snapfault [options] <socket> <memory-file>
      Drop-in handler: creates <socket>, serves the one Firecracker that connects
      (PUT /snapshot/load with mem_backend {backend_type: "Uffd", backend_path: <socket>}),
      exits 0 when that Firecracker has gone, non-zero if serving it failed.
      SIGTERM or SIGINT before it connects: exits 0; after: waits for it as serve does.
  snapfault serve --socket PATH --mem FILE [options]
      Long-running handler: serves every Firecracker that connects, at once or one
      after another, until SIGTERM or SIGINT; then it drains (--drain-timeout).
  snapfault pack <memory-file> -o <file> [--chunk-kib N] [--workers N]
  snapfault unpack <file> -o <memory-file>
  snapfault inspect <file> [--json]
  snapfault verify <file> [--against <memory-file>]
      Compressed snapshots: every serving command takes one wherever it takes a
      memory file (told apart by its header). See snapfault pack --help.
  snapfault trace show <trace> [--against <trace>] [--json]
  snapfault trace merge <trace>... -o <trace> [--mode union|intersection] [--min-runs N]
      Recorded restores (--record): what they touched; working sets for replay.
  snapfault report <trace> -o <file.svg>
      A picture of a recorded restore: heat map of memory, timeline of faults.

${SERVE_OPTIONS}
  --version                 print the version

Exit codes: 0 success; 1 the served VM failed (handshake refused, fatal fault error);
2 bad usage or the handler could not start (snapshot or socket unusable).`;

const SERVE_HELP = `Usage: snapfault serve --socket PATH --mem FILE [options]

Serves every Firecracker that connects to PATH from the memory file FILE until
SIGTERM or SIGINT. One VM's failure never disturbs the others. The first signal
removes the socket and drains: the VMs connected are served until they exit or
--drain-timeout passes; a second signal stops at once.

  --socket PATH             unix socket to create (Firecracker's mem_backend.backend_path)
  --mem FILE                the snapshot's memory file
${SERVE_OPTIONS}`;

const optionSpec = {
  workers: { type: 'string' },
  'on-fatal': { type: 'string' },
  'socket-mode': { type: 'string' },
  'handshake-timeout-ms': { type: 'string' },
  'zero-scan': { type: 'string' },
  'log-level': { type: 'string' },
  'cache-mib': { type: 'string' },
  'allow-uid': { type: 'string', multiple: true },
  metrics: { type: 'string' },
  'drain-timeout': { type: 'string' },
  'log-format': { type: 'string' },
  'fill-around': { type: 'string' },
  prefetch: { type: 'string' },
  record: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  socket: { type: 'string' },
  mem: { type: 'string' },
} as const;

function intOption(v: string | undefined, name: string, def: number, min: number, max: number, radix = 10): number {
  if (v === undefined) return def;
  const n = radix === 8 ? Number.parseInt(v, 8) : Number(v);
  if (!/^[0-9]+$/.test(v) || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} ${v}: expected ${radix === 8 ? 'an octal mode' : 'a whole number'} from ${radix === 8 ? min.toString(8) : min} to ${radix === 8 ? max.toString(8) : max}`);
  }
  return n;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function drainOption(values: Parsed['values']): number {
  return intOption(values['drain-timeout'], 'drain-timeout', DEFAULT_DRAIN_TIMEOUT_S, 0, MAX_DRAIN_TIMEOUT_S);
}

function metricsOption(values: Parsed['values']): MetricsAddress | null {
  return values.metrics === undefined ? null : parseMetricsAddress(values.metrics);
}

function onOff(v: string | undefined, name: string): boolean {
  if (v === undefined || v === 'on') return true;
  if (v === 'off') return false;
  throw new UsageError(`--${name} ${v}: expected on or off`);
}

type Parsed = ReturnType<typeof parseArgs<{ options: typeof optionSpec; allowPositionals: true }>>;

function serverOptions(values: Parsed['values'], socketPath: string, memPath: string, once: boolean): ServerOptions {
  const onFatal = values['on-fatal'] ?? 'kill-peer';
  if (onFatal !== 'kill-peer' && onFatal !== 'disconnect') throw new UsageError(`--on-fatal ${onFatal}: expected kill-peer or disconnect`);
  const level = values['log-level'] ?? 'info';
  if (!isLogLevel(level)) throw new UsageError(`--log-level ${level}: expected debug, info, warn, error or silent`);
  const format = values['log-format'] ?? defaultLogFormat();
  if (!isLogFormat(format)) throw new UsageError(`--log-format ${format}: expected json or text`);
  const zeroScan = onOff(values['zero-scan'], 'zero-scan');
  const fillAround = onOff(values['fill-around'], 'fill-around');
  const record = values.record ?? null;
  if (record !== null && !once && !record.includes('{pid}')) {
    throw new UsageError(`--record ${record}: serve records one trace per VM; put {pid} in the path, e.g. traces/vm-{pid}.trace`);
  }
  if (record !== null) {
    // Fail now, not when the first VM ends and its trace cannot be written.
    const dir = dirname(record);
    try {
      accessSync(dir, fsc.W_OK);
    } catch {
      throw new UsageError(`--record ${record}: the folder ${dir} does not exist or is not writable; create it first`);
    }
  }
  return {
    prefetch: parsePrefetch(values.prefetch ?? 'none'),
    record,
    socketPath,
    memPath,
    once,
    workers: intOption(values.workers, 'workers', once ? 1 : Math.min(availableParallelism(), 4), 1, 64),
    onFatal: onFatal as FatalPolicy,
    socketMode: intOption(values['socket-mode'], 'socket-mode', 0o600, 0, 0o777, 8),
    allowUids: (values['allow-uid'] ?? []).flatMap((v) => v.split(',')).map((u) => intOption(u, 'allow-uid', 0, 0, 2 ** 32 - 2)),
    handshakeTimeoutMs: intOption(values['handshake-timeout-ms'], 'handshake-timeout-ms', 5000, 1, 3_600_000),
    zeroScan,
    fillAround,
    cacheMiB: intOption(values['cache-mib'], 'cache-mib', 64, 1, 1024),
    log: createLogger(level as LogLevel, format),
  };
}

async function serve(opts: ServerOptions, metricsAt: MetricsAddress | null, drainTimeoutS: number): Promise<number> {
  const signals = new StopSignals(opts.log);
  try {
    const metrics = metricsAt ? await MetricsEndpoint.listen(metricsAt) : null;
    let server: SnapfaultServer;
    try {
      server = await SnapfaultServer.start(opts);
    } catch (e) {
      await metrics?.close();
      throw e;
    }
    if (metrics) {
      metrics.attach(server);
      opts.log.info(`metrics on ${metrics.url}`, { event: 'metrics', url: metrics.url });
    }
    await serveUntilStopped(server, signals, { drainTimeoutS, once: opts.once, log: opts.log }, async () => {
      await Promise.all([server.stop(), metrics?.close()]);
    });
    // The drop-in form answers for its one VM: none (stopped before it came), exited, or released by a stop is success.
    const outcome = server.outcomes[0];
    return !opts.once || !outcome || outcome.reason === 'exited' || outcome.reason === 'shutdown' ? EXIT.OK : EXIT.VM_FAILED;
  } finally {
    signals.dispose();
  }
}

/** What a caller of run() may set beside the command line: seams for tests that inject faults. */
export type RunSeams = Pick<ServerOptions, 'prefetchWorker'>;

/** Runs the command line; returns the exit code. Errors are one line on stderr. */
export async function run(argv: string[], seams: RunSeams = {}): Promise<number> {
  try {
    const tool = argv[0] === 'trace' ? traceTool : argv[0] === 'report' ? reportTool : TOOLS[argv[0]];
    if (tool) return await tool(argv.slice(1));
    const isServe = argv[0] === 'serve';
    let parsed: Parsed;
    try {
      parsed = parseArgs({ args: isServe ? argv.slice(1) : argv, options: optionSpec, allowPositionals: true, strict: true });
    } catch (e) {
      throw new UsageError(`${(e as Error).message.split('\n')[0]}; see snapfault --help`);
    }
    const { values, positionals } = parsed;
    if (values.version) {
      process.stdout.write(`snapfault ${version()}\n`);
      return EXIT.OK;
    }
    if (values.help) {
      process.stdout.write(`${isServe ? SERVE_HELP : MAIN_HELP}\n`);
      return EXIT.OK;
    }
    if (isServe) {
      if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}; see snapfault serve --help`);
      if (!values.socket || !values.mem) throw new UsageError('serve needs --socket PATH and --mem FILE; see snapfault serve --help');
      return await serve({ ...serverOptions(values, values.socket, values.mem, false), ...seams }, metricsOption(values), drainOption(values));
    }
    if (values.socket || values.mem) throw new UsageError('--socket and --mem belong to `snapfault serve`; the drop-in form takes <socket> <memory-file>');
    if (positionals.length !== 2) {
      throw new UsageError(positionals.length === 0 ? 'missing <socket> and <memory-file>; see snapfault --help' : `expected <socket> <memory-file>, got ${positionals.length} argument(s); see snapfault --help`);
    }
    return await serve({ ...serverOptions(values, positionals[0], positionals[1], true), ...seams }, metricsOption(values), drainOption(values));
  } catch (e) {
    if (e instanceof SnapfaultError) {
      process.stderr.write(`snapfault: ${e.message}\n`);
      return EXIT.USAGE;
    }
    process.stderr.write(`snapfault: internal error: ${(e as Error).message} (please report it)\n`);
    return EXIT.VM_FAILED;
  }
}
