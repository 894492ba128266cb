// The command line: `snapfault [options] <socket> <memory-file>` (the drop-in
// form Firecracker's tests use) and `snapfault serve --socket --mem` (a
// long-running handler for many VMs).
import { availableParallelism } from 'node:os';
import { readFileSync, lstatSync } from 'node:fs';
import { dirname } from 'node:path';
import { StandbyStopped } from './state/standby.js';
import { SnapfaultServer, type ServerOptions } from './server.js';
import { SnapfaultError, UsageError } from './errors.js';
import { createLogger, isLogLevel, isLogFormat, defaultLogFormat, type LogLevel } from './log.js';
import type { FatalPolicy } from './worker/messages.js';
import { TOOLS, type Tool } from './compressed/commands.js';
import { MetricsEndpoint, parseMetricsAddress, type MetricsAddress } from './metrics.js';
import { parsePrefetch, type PrefetchSpec } from './prefetch/policy-spec.js';
import { traceTool, reportTool } from './trace/commands.js';
import { serveUntilStopped, StopSignals, DEFAULT_DRAIN_TIMEOUT_S, MAX_DRAIN_TIMEOUT_S } from './drain.js';
import { TRACE_OUTPUT } from './trace/trace-file.js';
import { parseTool, intOption, octalOption, choiceOption, nearest, type ToolValues } from './tool-args.js';
import { checkOutput, checkOutputFolder, type OutputInput } from './output-file.js';
import { storeTool, storeOption } from './store/commands.js';
import { FolderStore } from './store/folder-store.js';
import { isS3Location } from './store/s3-location.js';
import { remoteOptions, refuseRemoteOnly } from './store/remote-options.js';

/** Exit codes, documented in the README. */
export const EXIT = {
  OK: 0,
  /** The served VM failed: handshake refused or a fatal fault error. (verify: a fault found.) */
  VM_FAILED: 1,
  /** Bad command line, unusable input, or the command could not do its work (the handler could not start). */
  USAGE: 2,
} as const;

/** The commands besides the drop-in form; `serve` and `help` are handled here. */
const COMMANDS: Record<string, Tool> = { ...TOOLS, trace: traceTool, report: reportTool, store: storeTool };
const COMMAND_NAMES = ['serve', 'pack', 'unpack', 'inspect', 'verify', 'trace', 'report', 'store', 'help'];

const SERVE_OPTIONS = `Options:
  --store DIR               serve a snapshot of this store (default: $SNAPFAULT_STORE): the
                            memory-file argument (--mem) is then the snapshot's name
  --store s3://BUCKET/PREFIX  a store in a bucket: chunks fetched on demand into --cache-dir
  --cache-dir DIR           its local disk cache, shared by the handlers of this host
  --cache-size SIZE         the disk cache's bound, least recently read chunks evicted (default 10G)
  --fetch-timeout SECONDS   how long a fault waits for its chunk before --on-fatal (default 30)
  --fetch-concurrency N     GETs at once fetching ahead for --prefetch (default 16); a fault's
                            own chunk never waits behind them
  --fetch-readahead KIB     on demand, where the guest reads on from one chunk into the next,
                            fetch this much memory after it ahead (default 1024; 0: off)
  --fetch-hedge auto|off|MS  a GET unanswered past the recent p99 (auto; 500 ms until 20 GETs
                            have answered) or past MS gets a second one beside it, at most 5%
                            of GETs; the first answer wins (default auto)
  --follow SECONDS          look the snapshot's name up in the bucket again this often (default 10;
                            0: never): put again, it serves the VMs that come next
  --s3-endpoint URL         an S3-compatible store's endpoint (default: $AWS_ENDPOINT_URL, else AWS)
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
  --zero-ranges MODE        guest memory that is zero in the snapshot, in runs of 2 MiB or more:
                            unregister (default: taken out of the userfaultfd after the handshake;
                            the guest's touches there never reach the handler), zeropage (mapped
                            with UFFDIO_ZEROPAGE after the handshake) or off (served on demand)
  --cache-mib N             decoded-chunk cache of each compressed snapshot (default 64)
  --fill-around on|off      compressed snapshots: install a decoded chunk's other missing pages
                            with the faulting one (default on; off while recording)
  --prefetch POLICY         install pages before the guest asks (docs/prefetch.md):
                              none (default), readahead (grows a window on sequential faults),
                              replay:TRACE (the recorded working set, from the handshake on),
                              all or all:TRACE (all of memory, the working set first),
                              ./NAME.wasm (your own policy module)
  --record TRACE            record each restore's faults, prefetches and removals to TRACE
                            (serve: put {pid} in the path, it becomes Firecracker's pid);
                            it replaces an existing trace or empty file, never the memory file
  --force                   --record may replace an existing file that is not a trace
  --metrics HOST:PORT       serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free port)
  --drain-timeout SECONDS   on SIGTERM or SIGINT: remove the socket, keep serving the connected VMs
                            until they exit, at most this long, then exit 0 (default ${DEFAULT_DRAIN_TIMEOUT_S};
                            0: at once); VMs still connected then, or at a second signal, are released
                            and can no longer fault pages in
  --state-dir DIR           record every VM served in DIR (e.g. /run/snapfault), and at start take
                            over the VMs a handler that died recorded there (see Crashes and upgrades)
  --takeover                with --state-dir: ask the snapfault running on DIR to hand its VMs
                            over, take them and its socket, and serve on (an upgrade)
  --standby                 serve, with --state-dir: while another snapfault owns DIR, start fully and
                            wait; the moment it exits (a crash), take its VMs and socket over
  --log-level LEVEL         debug, info (default), warn, error or silent
  --log-format json|text    JSON lines (default when stderr is not a terminal) or readable lines
  -h, --help                this help`;

const MAIN_HELP = `snapfault: serves Firecracker snapshot restores over userfaultfd

Usage:
  snapfault [options] <socket> <memory-file>
      Drop-in handler: creates <socket>, serves the one Firecracker that connects
      (PUT /snapshot/load with mem_backend {backend_type: "Uffd", backend_path: <socket>}),
      exits 0 when that Firecracker has gone, 1 if serving it failed. Connections
      that close without sending anything (a probe) are not its Firecracker.
      SIGTERM or SIGINT before it connects: exits 0; after: waits for it as serve does.
  snapfault serve --socket PATH --mem FILE [options]
      Long-running handler: serves every Firecracker that connects, at once or one
      after another, until SIGTERM or SIGINT; then it drains (--drain-timeout).
  snapfault pack <memory-file> -o <file> [--chunk-kib N] [--workers N] [--force]
  snapfault unpack <file> -o <memory-file> [--force]
  snapfault inspect <file> [--json]
  snapfault verify <file> [--against <memory-file>]
      Compressed snapshots: every serving command takes one wherever it takes a
      memory file (told apart by its header). See snapfault pack --help.
  snapfault store put|ls|inspect|verify|rm|gc|flatten ... --store DIR
      Snapshots that share what they have in common: a content-addressed store of
      chunks, with layered (Diff) snapshots. See snapfault store --help.
  snapfault trace show <trace> [--against <trace>] [--json]
  snapfault trace merge <trace>... -o <trace> [--mode union|intersection] [--min-runs N] [--force]
      Recorded restores (--record): what they touched; working sets for replay.
  snapfault report <trace> -o <file.svg> [--force]
      A picture of a recorded restore: heat map of memory, timeline of faults.
  snapfault help [command]
      This help, or a command's.

Every file written appears only once complete; none is written over one of the
command's inputs, and an existing file of another kind only with --force.

${SERVE_OPTIONS}
  --version                 print the version

Exit codes: 0 success; 1 the served VM failed (handshake refused, fatal fault error),
or verify found a fault; 2 bad usage, unusable input, or the handler could not start.`;

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
  force: { type: 'boolean' },
  'on-fatal': { type: 'string' },
  'socket-mode': { type: 'string' },
  'handshake-timeout-ms': { type: 'string' },
  'zero-scan': { type: 'string' },
  'zero-ranges': { type: 'string' },
  'log-level': { type: 'string' },
  'cache-mib': { type: 'string' },
  'cache-dir': { type: 'string', path: true },
  'cache-size': { type: 'string' },
  'fetch-timeout': { type: 'string' },
  'fetch-concurrency': { type: 'string' },
  'fetch-readahead': { type: 'string' },
  'fetch-hedge': { type: 'string' },
  follow: { type: 'string' },
  's3-endpoint': { type: 'string' },
  'allow-uid': { type: 'string', multiple: true },
  metrics: { type: 'string' },
  'drain-timeout': { type: 'string' },
  'log-format': { type: 'string' },
  'fill-around': { type: 'string' },
  prefetch: { type: 'string', path: true },
  record: { type: 'string', path: true },
  version: { type: 'boolean' },
  socket: { type: 'string', path: true },
  mem: { type: 'string', path: true },
  store: { type: 'string', path: true },
  'state-dir': { type: 'string', path: true },
  takeover: { type: 'boolean' },
  standby: { type: 'boolean' },
} as const;

type Values = ToolValues<typeof optionSpec>;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function drainOption(values: Values): number {
  return intOption(values['drain-timeout'], '--drain-timeout', { def: DEFAULT_DRAIN_TIMEOUT_S, min: 0, max: MAX_DRAIN_TIMEOUT_S });
}

function metricsOption(values: Values): MetricsAddress | null {
  return values.metrics === undefined ? null : parseMetricsAddress(values.metrics);
}

function onOff(v: string | undefined, option: string): boolean {
  return choiceOption(v, option, ['on', 'off'], 'on') === 'on';
}

/** The files a prefetch policy reads: --record never writes over them. */
function prefetchInputs(p: PrefetchSpec): OutputInput[] {
  if ((p.kind === 'replay' || p.kind === 'all') && p.trace !== null) return [{ path: p.trace, what: 'the trace being replayed' }];
  if (p.kind === 'module') return [{ path: p.path, what: 'the prefetch policy module' }];
  return [];
}

/**
 * --record's checks: at start (drop-in: the path itself; serve: the folder of
 * the {pid} pattern), and a function the server calls before each trace is
 * written, since the file there may have changed meanwhile.
 */
function recordChecks(values: Values, record: string, memPath: string, prefetch: PrefetchSpec, once: boolean): (path: string) => void {
  if (!once && !record.includes('{pid}')) {
    throw new UsageError(`--record ${record}: serve records one trace per VM; put {pid} in the path, e.g. traces/vm-{pid}.trace`);
  }
  if (dirname(record).includes('{pid}')) throw new UsageError(`--record ${record}: put {pid} in the file name; the folder must exist before`);
  const inputs = [...(memPath ? [{ path: memPath, what: 'the memory file being served' }] : []), ...prefetchInputs(prefetch)];
  const check = (path: string): void => checkOutput({ option: '--record', path, kind: TRACE_OUTPUT, inputs, force: values.force });
  // Fail now, not when the first VM ends and its trace cannot be written.
  if (once) check(record);
  else checkOutputFolder('--record', record);
  return check;
}

function serverOptions(values: Values, socketPath: string, memPath: string, once: boolean): ServerOptions {
  const onFatal: FatalPolicy = choiceOption(values['on-fatal'], '--on-fatal', ['kill-peer', 'disconnect'], 'kill-peer');
  const level = values['log-level'] ?? 'info';
  if (!isLogLevel(level)) throw new UsageError(`--log-level must be debug, info, warn, error or silent, got ${level}`);
  const format = values['log-format'] ?? defaultLogFormat();
  if (!isLogFormat(format)) throw new UsageError(`--log-format must be json or text, got ${format}`);
  const zeroScan = onOff(values['zero-scan'], '--zero-scan');
  const fillAround = onOff(values['fill-around'], '--fill-around');
  const prefetch = parsePrefetch(values.prefetch ?? 'none');
  const record = values.record ?? null;
  const storePath = storeOption(values.store);
  const remote = storePath !== null && isS3Location(storePath) ? remoteOptions(values, storePath) : null;
  if (!remote) refuseRemoteOnly(values);
  if (storePath !== null && memPath.includes('/')) {
    const from = values.store !== undefined ? '--store' : 'SNAPFAULT_STORE';
    throw new UsageError(`${memPath} looks like a path, but ${from} makes it a snapshot's name in the store ${storePath}: give a name (snapfault store ls), or ${from === '--store' ? 'leave out --store' : 'unset SNAPFAULT_STORE'} to serve a memory file`);
  }
  const store = storePath === null || remote ? null : FolderStore.open(storePath);
  // A name in a store is no file --record could write over.
  const checkRecordPath = record === null ? undefined : recordChecks(values, record, storePath !== null ? '' : memPath, prefetch, once);
  if (values.takeover && !values['state-dir']) throw new UsageError('--takeover needs --state-dir DIR: the directory the running snapfault records its VMs in');
  if (values.standby && !values['state-dir']) throw new UsageError('--standby needs --state-dir DIR: the directory the running snapfault records its VMs in');
  if (values.standby && once) {
    throw new UsageError('--standby belongs to `snapfault serve`: a drop-in handler ends with its one Firecracker, and a standby would then wait on its socket for good');
  }
  if (values.standby && values.takeover) {
    throw new UsageError('--standby waits for the owner of the state directory to exit, --takeover asks it to hand over now: choose one');
  }
  return {
    store,
    remote,
    prefetch,
    record,
    checkRecordPath,
    socketPath,
    memPath,
    once,
    workers: intOption(values.workers, '--workers', { def: once ? 1 : Math.min(availableParallelism(), 4), min: 1, max: 64 }),
    onFatal,
    socketMode: octalOption(values['socket-mode'], '--socket-mode', { def: 0o600, min: 0, max: 0o777 }),
    allowUids: (values['allow-uid'] ?? []).flatMap((v) => v.split(',')).map((u) => intOption(u, '--allow-uid', { def: 0, min: 0, max: 2 ** 32 - 2 })),
    handshakeTimeoutMs: intOption(values['handshake-timeout-ms'], '--handshake-timeout-ms', { def: 5000, min: 1, max: 3_600_000 }),
    zeroScan,
    zeroRanges: choiceOption(values['zero-ranges'], '--zero-ranges', ['unregister', 'zeropage', 'off'], 'unregister'),
    fillAround,
    cacheMiB: intOption(values['cache-mib'], '--cache-mib', { def: 64, min: 1, max: 1024 }),
    stateDir: values['state-dir'] ?? null,
    takeover: values.takeover ?? false,
    standby: values.standby ?? false,
    log: createLogger(level as LogLevel, format),
  };
}

async function serve(opts: ServerOptions, metricsAt: MetricsAddress | null, drainTimeoutS: number): Promise<number> {
  const signals = new StopSignals(opts.log, opts.stateDir !== null && opts.stateDir !== undefined);
  try {
    const metrics = metricsAt ? await MetricsEndpoint.listen(metricsAt) : null;
    let server: SnapfaultServer;
    try {
      const onStandingBy = (): void => {
        if (!metrics) return;
        metrics.standingBy();
        opts.log.info(`metrics on ${metrics.url} (standing by)`, { event: 'metrics', url: metrics.url, standby: true });
      };
      server = await SnapfaultServer.start({ ...opts, standbyStop: signals.first, onStandingBy });
    } catch (e) {
      await metrics?.close();
      if (!(e instanceof StandbyStopped)) throw e;
      opts.log.info('stopped while standing by: the VMs stay with the snapfault that owns the state directory', { event: 'standby_stopped' });
      return EXIT.OK;
    }
    if (metrics) {
      metrics.attach(server);
      opts.log.info(`metrics on ${metrics.url}`, { event: 'metrics', url: metrics.url });
    }
    const how = await serveUntilStopped(server, signals, { drainTimeoutS, once: opts.once, log: opts.log }, async () => {
      await Promise.all([server.stop(), metrics?.close()]);
    });
    // A fault worker crashed: its VMs were frozen, so the run failed, whichever form.
    if (how === 'crashed') return EXIT.VM_FAILED;
    // The drop-in form answers for its one VM: none (stopped before it came), exited, or released by a stop is success.
    const outcome = server.outcomes[0];
    return !opts.once || !outcome || outcome.reason === 'exited' || outcome.reason === 'shutdown' ? EXIT.OK : EXIT.VM_FAILED;
  } finally {
    signals.dispose();
  }
}

/** What a caller of run() may set beside the command line: seams for tests that inject faults. */
export type RunSeams = Pick<ServerOptions, 'prefetchWorker' | 'faultWorker'>;

/**
 * A word where the drop-in form takes its socket that is most likely a
 * misspelt command: refused rather than served on a socket of that name.
 * `count` is the number of positionals (-1 before options are parsed).
 */
function refuseUnknownCommand(word: string, count: number): void {
  if (word.includes('/') || exists(word)) return; // a path: the drop-in form's socket
  const near = nearest(word, COMMAND_NAMES);
  if (near !== null) throw new UsageError(`unknown command '${word}': did you mean ${near}? (to serve on a socket of that name, write ./${word})`);
  if (count >= 0 && count !== 2 && /^[a-z][a-z-]*$/i.test(word)) {
    throw new UsageError(`unknown command '${word}'; commands: ${COMMAND_NAMES.join(', ')}; or serve one Firecracker with snapfault [options] <socket> <memory-file>`);
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** `snapfault help [command]`. */
async function help(args: string[]): Promise<number> {
  const [name] = args;
  if (name === undefined) {
    process.stdout.write(`${MAIN_HELP}\n`);
    return EXIT.OK;
  }
  if (name === 'serve') {
    process.stdout.write(`${SERVE_HELP}\n`);
    return EXIT.OK;
  }
  if (Object.hasOwn(COMMANDS, name)) return COMMANDS[name](['--help']);
  const near = nearest(name, COMMAND_NAMES);
  throw new UsageError(`help: unknown command '${name}'${near ? `: did you mean ${near}?` : `; commands: ${COMMAND_NAMES.join(', ')}`}`);
}

/** Runs the command line; returns the exit code. Errors are one line on stderr. */
export async function run(argv: string[], seams: RunSeams = {}): Promise<number> {
  try {
    const [first] = argv;
    if (first !== undefined && Object.hasOwn(COMMANDS, first)) return await COMMANDS[first](argv.slice(1));
    if (first === 'help') return await help(argv.slice(1));
    const isServe = first === 'serve';
    if (!isServe && first !== undefined && !first.startsWith('-')) refuseUnknownCommand(first, -1);
    const { values, positionals } = parseTool(isServe ? argv.slice(1) : argv, isServe ? 'serve' : '', optionSpec);
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
    if (positionals.length > 0) refuseUnknownCommand(positionals[0], positionals.length);
    if (positionals.length !== 2) {
      throw new UsageError(positionals.length === 0 ? 'missing <socket> and <memory-file>; see snapfault --help' : `expected <socket> <memory-file>, got ${positionals.length} argument(s); see snapfault --help`);
    }
    return await serve({ ...serverOptions(values, positionals[0], positionals[1], true), ...seams }, metricsOption(values), drainOption(values));
  } catch (e) {
    if (e instanceof SnapfaultError) {
      process.stderr.write(`snapfault: ${e.message}\n`);
      return EXIT.USAGE;
    }
    // A bug, not a fault found nor a VM that failed: the command could not do its work.
    process.stderr.write(`snapfault: internal error: ${(e as Error).message} (please report it)\n`);
    return EXIT.USAGE;
  }
}
