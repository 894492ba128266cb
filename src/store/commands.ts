// `snapfault store ...`: put a memory file into a store, list, inspect,
// verify, remove, flatten its snapshots, and collect its garbage. Other tools
// script against these forms (and --json), so they stay as they are.
import { UsageError, StoreError } from '../errors.js';
import { parseTool, onePositional, intOption, nearest } from '../tool-args.js';
import { progressBar } from '../progress.js';
import { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, storedLength } from '../compressed/format.js';
import { checkSnapshotName, type Store } from './store.js';
import { openStore as openAt } from './open-store.js';
import { isS3Location } from './s3-location.js';
import { DEFAULT_PACK_BYTES } from './s3-packs.js';
import { put } from './put.js';
import { gc } from './gc.js';
import { verifySnapshot, StoreFaultError } from './verify.js';
import { flattenSnapshot } from './flatten.js';
import { readChainOf, readLayerOf, flattenChain } from './chain.js';
import { PAGE_IS_ZERO, PAGE_IN_PARENT } from './manifest.js';

type Tool = (argv: string[]) => Promise<number>;

/** The store to use: --store, else $SNAPFAULT_STORE; null when neither is set. */
export function storeOption(value: string | undefined): string | null {
  const v = value ?? process.env.SNAPFAULT_STORE;
  return v === undefined || v === '' ? null : v;
}

/**
 * A new store's chunk size. A folder: the pack's 32 KiB, measured against
 * 16-256 KiB (docs/store.md, Chunk size). A bucket: 512 KiB, since a host
 * that has never seen the snapshot fetches every chunk, and GETs, not bytes,
 * bound that restore (docs/store-s3.md, Chunk size in a bucket).
 */
const BUCKET_CHUNK_BYTES = 512 << 10;

function defaultChunkBytes(store: string | undefined): number {
  const location = storeOption(store);
  return location !== null && isS3Location(location) ? BUCKET_CHUNK_BYTES : DEFAULT_CHUNK_BYTES;
}

const HELP = `Usage: snapfault store <command> --store DIR|s3://BUCKET/PREFIX ...   (default --store: $SNAPFAULT_STORE)

A store keeps many snapshots' memory in chunks named by the SHA-256 of their
content: a chunk the store already holds is never stored twice, whichever
snapshot brought it. Serve a snapshot from it with --store DIR and its name
where a memory file goes: snapfault --store DIR <socket> <name>.

  put <memory-file> <name> [--parent <name>] [--chunk-kib N] [--pack-mib N] [--workers N]
      Adds a snapshot; prints what it added and what it reused. With --parent,
      the file is a Firecracker Diff snapshot: its holes are the parent's pages.
      --chunk-kib sets the chunk size of a new store (default ${DEFAULT_CHUNK_BYTES / 1024}; in a
      bucket ${BUCKET_CHUNK_BYTES / 1024}: a cold restore there is bound by the number of GETs).
      --pack-mib (a bucket): new chunks go into pack objects of about N MiB
      (default ${DEFAULT_PACK_BYTES >> 20}), so chunks side by side are fetched in one ranged
      GET; 0 stores each chunk as an object of its own.
  ls [--json]                      the snapshots, and what the store holds
  inspect <name> [--json]          pages (zero, own, parent's), layers, chunks
  verify <name> [--against <memory-file>]
      Reads every chunk the snapshot uses and checks it against its checksum and
      its name (and with --against, every page). Exit 1 on a fault, naming it.
  rm <name>                        removes a snapshot (refused while layers use it)
  flatten <name> <new-name>        a layered snapshot as one with no parent (no chunk copied)
  gc [--grace SECONDS] [--json]    deletes chunks no snapshot uses and untouched for
                                   --grace (default 3600); safe beside puts and restores

A store in object storage: --store s3://BUCKET/PREFIX (the bucket must exist),
with --s3-endpoint URL (or AWS_ENDPOINT_URL) for an S3-compatible store, and
credentials from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_PROFILE and the shared config and credentials files). Serve from it with
a local disk cache: snapfault --store s3://BUCKET/PREFIX --cache-dir DIR <socket> <name>.`;

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

/** The options every store command takes. */
const STORE_OPTIONS = { store: { type: 'string' as const, path: true }, 's3-endpoint': { type: 'string' as const } };

async function openStore(values: { store?: string; 's3-endpoint'?: string }, create?: { chunkBytes: number }, packBytes?: number): Promise<Store> {
  const location = storeOption(values.store);
  if (location === null) throw new UsageError('no store given: pass --store DIR or set SNAPFAULT_STORE');
  const endpoint = values['s3-endpoint'];
  if (endpoint !== undefined && !isS3Location(location)) throw new UsageError(`--s3-endpoint is for a store in object storage (--store s3://BUCKET/PREFIX), not the folder ${location}`);
  if (endpoint !== undefined && !/^https?:\/\/[^/]/.test(endpoint)) throw new UsageError(`--s3-endpoint ${endpoint}: expected a URL such as http://127.0.0.1:8480`);
  if (packBytes !== undefined && !isS3Location(location)) throw new UsageError(`--pack-mib is for a store in object storage (--store s3://BUCKET/PREFIX); a folder store keeps each chunk in a file of its own`);
  return openAt(location, { s3Endpoint: endpoint, create, packBytes });
}

/** Runs a command with its store open, closing it after (an S3 client holds sockets and timers). */
async function withStore<T>(
  values: { store?: string; 's3-endpoint'?: string }, create: { chunkBytes: number } | undefined, f: (store: Store) => Promise<T>, packBytes?: number,
): Promise<T> {
  const store = await openStore(values, create, packBytes);
  try {
    return await f(store);
  } finally {
    await store.close();
  }
}

function name(positionals: string[], command: string): string {
  const n = onePositional(positionals, `store ${command}`, '<name>');
  checkSnapshotName(n);
  return n;
}

const COMMANDS: Record<string, Tool> = {
  async put(argv) {
    const { values, positionals } = parseTool(argv, 'store put', {
      ...STORE_OPTIONS, parent: { type: 'string' }, 'chunk-kib': { type: 'string' }, 'pack-mib': { type: 'string' }, workers: { type: 'string' }, json: { type: 'boolean' },
    });
    if (values.help) return help();
    if (positionals.length !== 2) throw new UsageError(`store put takes <memory-file> <name>, got ${positionals.length} argument(s); see snapfault store --help`);
    const [file, snapshot] = positionals;
    checkSnapshotName(snapshot);
    if (values.parent !== undefined) checkSnapshotName(values.parent);
    const chunkKib = intOption(values['chunk-kib'], '--chunk-kib', { def: defaultChunkBytes(values.store) / 1024, min: 4, max: MAX_CHUNK_BYTES / 1024 });
    if (chunkKib % 4 !== 0) throw new UsageError(`--chunk-kib ${chunkKib}: expected a multiple of 4`);
    const workers = values.workers === undefined ? undefined : intOption(values.workers, '--workers', { def: 1, min: 1, max: 64 });
    const packMib = values['pack-mib'] === undefined ? undefined : intOption(values['pack-mib'], '--pack-mib', { def: 0, min: 0, max: 1024 });
    return withStore(values, { chunkBytes: chunkKib * 1024 }, async (store) => {
      if (values['chunk-kib'] !== undefined && store.info.chunkBytes !== chunkKib * 1024) {
        throw new UsageError(`--chunk-kib ${chunkKib}: the store at ${store.root} already has ${store.info.chunkBytes / 1024} KiB chunks; leave the option out`);
      }
      const bar = progressBar('putting');
      let s;
      try {
        s = await put(store, file, snapshot, {
          parent: values.parent, workers, progress: (d, t) => bar.update(d, t), warn: (line) => process.stderr.write(`snapfault: warning: ${line}\n`),
        });
      } finally {
        bar.finish();
      }
      if (values.json) {
        process.stdout.write(`${JSON.stringify(s)}\n`);
        return 0;
      }
      const inPacks = s.packsAdded > 0 ? ` in ${s.packsAdded} pack(s)` : '';
      process.stdout.write(`${s.name}: ${mib(s.pages * 4096)} in ${s.seconds.toFixed(1)} s; added ${s.chunksAdded} chunks (${mib(s.bytesAdded)})${inPacks}, ` +
        `reused ${s.chunksReused} chunks; pages: ${s.newPages} new, ${s.reusedPages} already stored, ${s.zeroPages} zero` +
        `${values.parent !== undefined ? `, ${s.parentPages} from ${values.parent}` : ''}; identity ${s.identity.slice(0, 16)}\n`);
      return 0;
    }, packMib === undefined ? undefined : packMib << 20);
  },

  async ls(argv) {
    const { values, positionals } = parseTool(argv, 'store ls', { ...STORE_OPTIONS, json: { type: 'boolean' } });
    if (values.help) return help();
    if (positionals.length > 0) throw new UsageError(`store ls takes no argument, got ${positionals[0]}`);
    return withStore(values, undefined, async (store) => {
      const names = await store.listSnapshots();
      const layers = await Promise.all(names.map((n) => readLayerOf(store, n)));
      const rows = layers.map((l) => ({
        name: l.name, identity: l.identity, bytes: l.manifest.originalSize, parent: l.manifest.parent?.name ?? null, created: new Date(l.manifest.createdMs).toISOString(),
      }));
      const usage = await store.usage();
      if (values.json) {
        process.stdout.write(`${JSON.stringify({ snapshots: rows, usage: { ...usage, chunkSizeBytes: store.info.chunkBytes } })}\n`);
        return 0;
      }
      const w = Math.max(4, ...rows.map((r) => r.name.length));
      process.stdout.write(`${'NAME'.padEnd(w)}  ${'SIZE'.padStart(10)}  CREATED                   PARENT\n`);
      for (const r of rows) process.stdout.write(`${r.name.padEnd(w)}  ${mib(r.bytes).padStart(10)}  ${r.created.padEnd(24)}  ${r.parent ?? '-'}\n`);
      const held = usage.packs > 0 ? `${usage.chunks} chunk objects and ${usage.packs} packs of chunks` : `${usage.chunks} chunks`;
      process.stdout.write(`${rows.length} snapshot(s); ${held} of ${store.info.chunkBytes / 1024} KiB, ${mib(usage.chunkBytes)} stored, ${mib(usage.metadataBytes)} of manifests and index\n`);
      return 0;
    });
  },

  async inspect(argv) {
    const { values, positionals } = parseTool(argv, 'store inspect', { ...STORE_OPTIONS, json: { type: 'boolean' } });
    if (values.help) return help();
    const n = name(positionals, 'inspect');
    return withStore(values, undefined, async (store) => {
      const chain = await readChainOf(store, n);
      const top = chain[0].manifest;
      let zero = 0;
      let parent = 0;
      for (const v of top.pageTable) {
        if (v === PAGE_IS_ZERO) zero++;
        else if (v === PAGE_IN_PARENT) parent++;
      }
      const view = flattenChain(chain);
      const storedBytes = view.chunks.reduce((s, c) => s + storedLength(c.stored), 0);
      const info = {
        name: n, identity: chain[0].identity, bytes: top.originalSize, pages: top.pages, created: new Date(top.createdMs).toISOString(),
        layers: chain.map((l) => l.name), zeroPages: zero, parentPages: parent, ownPages: top.pages - zero - parent,
        chunksInLayer: top.chunks.length, chunksUsed: view.chunks.length, chunkStoredBytes: storedBytes, manifestBytes: chain[0].bytes,
      };
      if (values.json) {
        process.stdout.write(`${JSON.stringify(info)}\n`);
        return 0;
      }
      process.stdout.write([
        `snapshot:   ${n} (identity ${info.identity})`,
        `store:      ${store.root}`,
        `size:       ${mib(info.bytes)}, ${info.pages} pages: ${info.ownPages} its own, ${info.zeroPages} zero, ${info.parentPages} from its parent`,
        `layers:     ${info.layers.join(' <- ')}`,
        `chunks:     ${info.chunksInLayer} in this layer, ${info.chunksUsed} in all (${mib(storedBytes)} stored, shared with other snapshots)`,
        `created:    ${info.created}`,
        '',
      ].join('\n'));
      return 0;
    });
  },

  async verify(argv) {
    const { values, positionals } = parseTool(argv, 'store verify', { ...STORE_OPTIONS, against: { type: 'string', path: true } });
    if (values.help) return help();
    const n = name(positionals, 'verify');
    return withStore(values, undefined, async (store) => {
      const bar = progressBar('verifying');
      try {
        const s = await verifySnapshot(store, n, values.against ?? null, (d, t) => bar.update(d, t));
        bar.finish();
        process.stdout.write(`${n}: ok: ${s.layers} layer(s), ${s.chunks} chunks (${mib(s.bytesRead)}) match their checksums and names` +
          `${values.against !== undefined ? `; all ${s.pagesCompared} pages match ${values.against}` : ''}\n`);
        return 0;
      } catch (e) {
        bar.finish();
        if (!(e instanceof StoreFaultError)) throw e;
        process.stderr.write(`snapfault: ${e.message}\n`);
        return 1;
      }
    });
  },

  async rm(argv) {
    const { values, positionals } = parseTool(argv, 'store rm', { ...STORE_OPTIONS });
    if (values.help) return help();
    const n = name(positionals, 'rm');
    return withStore(values, undefined, async (store) => {
      const layer = await readLayerOf(store, n);
      const others = (await store.listSnapshots()).filter((c) => c !== n);
      const layers = await Promise.all(others.map((c) => readLayerOf(store, c)));
      const children = layers.filter((l) => l.manifest.parent?.name === n).map((l) => l.name);
      if (children.length > 0) {
        throw new StoreError(store.root, `snapshot "${n}" is the parent of ${children.join(', ')}: remove or flatten ${children.length > 1 ? 'them' : 'it'} first (snapfault store flatten)`);
      }
      await store.retireManifest(n, layer.identity);
      process.stdout.write(`${n}: removed; snapfault store gc deletes the chunks no other snapshot uses\n`);
      return 0;
    });
  },

  async flatten(argv) {
    const { values, positionals } = parseTool(argv, 'store flatten', { ...STORE_OPTIONS });
    if (values.help) return help();
    if (positionals.length !== 2) throw new UsageError(`store flatten takes <name> <new-name>, got ${positionals.length} argument(s)`);
    positionals.forEach(checkSnapshotName);
    return withStore(values, undefined, async (store) => {
      const r = await flattenSnapshot(store, positionals[0], positionals[1]);
      process.stdout.write(`${positionals[1]}: ${positionals[0]}'s ${r.layers} layer(s) as one, ${r.chunks} chunks (none copied); identity ${r.identity.slice(0, 16)}\n`);
      return 0;
    });
  },

  async gc(argv) {
    const { values, positionals } = parseTool(argv, 'store gc', { ...STORE_OPTIONS, grace: { type: 'string' }, json: { type: 'boolean' } });
    if (values.help) return help();
    if (positionals.length > 0) throw new UsageError(`store gc takes no argument, got ${positionals[0]}`);
    const grace = intOption(values.grace, '--grace', { def: 3600, min: 0, max: 10 * 365 * 86400 });
    return withStore(values, undefined, async (store) => {
      const s = await gc(store, grace * 1000);
      if (values.json) {
        process.stdout.write(`${JSON.stringify(s)}\n`);
        return 0;
      }
      const packs = (n: number): string => (s.packsKept + s.packsDeleted + s.packsSpared > 0 ? ` and ${n} packs` : '');
      process.stdout.write(`gc: ${s.snapshots} snapshot(s) keep ${s.chunksKept} chunks${packs(s.packsKept)}; deleted ${s.chunksDeleted} chunks${packs(s.packsDeleted)} (${mib(s.bytesDeleted)})` +
        `${s.chunksSpared + s.packsSpared > 0 ? `; spared ${s.chunksSpared} chunks${packs(s.packsSpared)} unused but touched within ${grace} s or by a put under way` : ''}` +
        `${s.packBytesUnused > 0 ? `; ${mib(s.packBytesUnused)} inside the packs kept is no snapshot's (kept with their other chunks)` : ''} in ${s.seconds.toFixed(1)} s\n`);
      return 0;
    });
  },
};

function help(): number {
  process.stdout.write(`${HELP}\n`);
  return 0;
}

export const storeTool: Tool = async (argv) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return help();
  if (!Object.hasOwn(COMMANDS, sub)) {
    const near = nearest(sub, Object.keys(COMMANDS));
    throw new UsageError(`unknown store command '${sub}'${near ? `: did you mean ${near}?` : `; commands: ${Object.keys(COMMANDS).join(', ')}; see snapfault store --help`}`);
  }
  return COMMANDS[sub](rest);
};
