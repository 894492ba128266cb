// The command-line tools for compressed snapshots: pack, unpack, inspect, verify.
import { statSync, accessSync, constants as fsc } from 'node:fs';
import { basename } from 'node:path';
import { UsageError, SnapshotError, SnapshotVersionError } from '../errors.js';
import { parseTool, onePositional, intOption } from '../tool-args.js';
import { checkOutput, type OutputKind } from '../output-file.js';
import { progressBar } from '../progress.js';
import { pack } from './pack.js';
import { inspect, unpack, verify, checkCompressed } from './tools.js';
import { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, isCompressed } from './format.js';

export type Tool = (argv: string[]) => Promise<number>;

/** Exit code of verify when it found a fault (README, Exit codes). */
const FAULT_FOUND = 1;

const HELP = {
  pack: `Usage: snapfault pack <memory-file> -o <file> [--chunk-kib N] [--workers N] [--force]

Compresses a Firecracker memory file: zero pages and pages identical to an
earlier page are stored as references, the rest in LZ4-compressed chunks of
--chunk-kib KiB (default ${DEFAULT_CHUNK_BYTES / 1024}), each with a checksum. Uses every core
(--workers). The output appears only once complete. It replaces an existing
compressed snapshot or empty file; any other file only with --force, and
never the memory file being packed.`,
  unpack: `Usage: snapfault unpack <file> -o <memory-file> [--force]

Writes back the exact original memory file (sparse where it held zero pages),
once complete. An existing non-empty file is replaced only with --force (a
memory file has no header to recognise it by), never the file being unpacked.`,
  inspect: `Usage: snapfault inspect <file> [--json]

Prints the format version, codec, sizes and ratio, page counts (zero,
duplicate, stored) and chunk counts (compressed, stored raw).`,
  verify: `Usage: snapfault verify <file> [--against <memory-file>]

Checks the header, index and every chunk's checksum, and with --against every
page against the original. Exit 0 when all is well, 1 on the first fault found
(named in one line), 2 on bad usage or a file that cannot be checked (missing,
not a compressed snapshot, a newer format version).`,
};

const one = onePositional;

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

const compressedOutput = (input: string): OutputKind => ({
  name: 'a snapfault compressed snapshot', recognise: isCompressed, suggestedName: `${basename(input)}.sfz`,
});

const memoryOutput = (input: string): OutputKind => ({
  name: 'a memory file', recognise: null, suggestedName: basename(input).endsWith('.sfz') ? basename(input).slice(0, -4) : `${basename(input)}.img`,
});

/** --against must name a readable file: checked before any chunk is decoded. */
function checkOriginal(path: string): void {
  const fail = (problem: string): never => {
    throw new UsageError(`--against ${path}: ${problem}: give the original memory file`);
  };
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(code === 'ENOENT' ? 'no such file' : `cannot be looked at (${code})`);
  }
  if (st.isDirectory()) fail('is a folder, not a file');
  if (!st.isFile()) fail('is not a regular file');
  try {
    accessSync(path, fsc.R_OK);
  } catch {
    fail('cannot be read (permission denied)');
  }
}

export const TOOLS: Record<string, Tool> = {
  async pack(argv) {
    const { values, positionals } = parseTool(argv, 'pack', {
      output: { type: 'string', short: 'o', path: true }, 'chunk-kib': { type: 'string' }, workers: { type: 'string' }, force: { type: 'boolean' },
    });
    if (values.help) return help('pack');
    const input = one(positionals, 'pack', '<memory-file>');
    if (values.output === undefined) throw new UsageError('pack needs -o <file>; see snapfault pack --help');
    const chunkKib = intOption(values['chunk-kib'], '--chunk-kib', { def: DEFAULT_CHUNK_BYTES / 1024, min: 4, max: MAX_CHUNK_BYTES / 1024 });
    const workers = values.workers === undefined ? undefined : intOption(values.workers, '--workers', { def: 1, min: 1, max: 64 });
    checkOutput({ option: '-o', path: values.output, kind: compressedOutput(input), inputs: [{ path: input, what: 'the memory file to pack' }], force: values.force });
    const bar = progressBar('packing');
    const started = Date.now();
    const s = await pack(input, values.output, { chunkBytes: chunkKib * 1024, workers, progress: (d, t) => bar.update(d, t) });
    bar.finish();
    process.stdout.write(`${values.output}: ${mib(s.originalSize)} -> ${mib(s.fileSize)} (${(s.originalSize / s.fileSize).toFixed(2)}:1) in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
      `${s.zeroPages} zero, ${s.duplicatePages} duplicate, ${s.storedPages} stored pages in ${s.chunks} chunks (${s.rawChunks} stored raw)\n`);
    return 0;
  },

  async unpack(argv) {
    const { values, positionals } = parseTool(argv, 'unpack', { output: { type: 'string', short: 'o', path: true }, force: { type: 'boolean' } });
    if (values.help) return help('unpack');
    const input = one(positionals, 'unpack', '<file>');
    if (values.output === undefined) throw new UsageError('unpack needs -o <memory-file>; see snapfault unpack --help');
    checkOutput({ option: '-o', path: values.output, kind: memoryOutput(input), inputs: [{ path: input, what: 'the compressed snapshot to unpack' }], force: values.force });
    const bar = progressBar('unpacking');
    const n = unpack(input, values.output, (d, t) => bar.update(d, t));
    bar.finish();
    process.stdout.write(`${values.output}: ${mib(n)} written\n`);
    return 0;
  },

  async inspect(argv) {
    const { values, positionals } = parseTool(argv, 'inspect', { json: { type: 'boolean' } });
    if (values.help) return help('inspect');
    const i = inspect(one(positionals, 'inspect', '<file>'));
    if (values.json) {
      process.stdout.write(`${JSON.stringify(i)}\n`);
      return 0;
    }
    const pct = (n: number): string => `${((100 * n) / i.pages).toFixed(1)}%`;
    process.stdout.write([
      `file:        ${i.path}`,
      `format:      snapfault compressed snapshot, version ${i.version}, codec ${i.codec}`,
      `size:        ${mib(i.originalSize)} original, ${mib(i.fileSize)} on disk, ratio ${i.ratio.toFixed(2)}:1`,
      `pages:       ${i.pages} of ${i.pageBytes} bytes: ${i.zeroPages} zero (${pct(i.zeroPages)}), ${i.duplicatePages} duplicate (${pct(i.duplicatePages)}), ${i.storedPages} stored (${pct(i.storedPages)})`,
      `chunks:      ${i.chunks} of ${i.chunkBytes / 1024} KiB: ${i.compressedChunks} compressed, ${i.rawChunks} stored raw`,
      '',
    ].join('\n'));
    return 0;
  },

  async verify(argv) {
    const { values, positionals } = parseTool(argv, 'verify', { against: { type: 'string', path: true } });
    if (values.help) return help('verify');
    const file = one(positionals, 'verify', '<file>');
    // What cannot be checked at all (missing, a folder, not a compressed snapshot) is unusable input, exit 2,
    // told apart from a fault found in what could be checked, exit 1.
    checkCompressed(file);
    if (values.against !== undefined) checkOriginal(values.against);
    try {
      const r = verify(file, values.against);
      process.stdout.write(`${file}: ${r.chunks} chunks OK${r.pagesCompared ? `, ${r.pagesCompared} pages identical to ${String(values.against)}` : ''}\n`);
      return 0;
    } catch (e) {
      if (!(e instanceof SnapshotError) || e instanceof SnapshotVersionError) throw e;
      process.stderr.write(`snapfault: verify: ${e.message}\n`);
      return FAULT_FOUND;
    }
  },
};

function help(name: keyof typeof HELP): number {
  process.stdout.write(`${HELP[name]}\n`);
  return 0;
}
