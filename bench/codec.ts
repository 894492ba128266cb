// The LZ4 codec of the WASM core against native liblz4, side by side in one
// run, on the same blocks: 64 KiB chunks of a realistic memory image (all-zero
// chunks skipped, as the handler maps those with UFFDIO_ZEROPAGE) and of
// text-like data, compressed once with LZ4_compress_default. The native side
// is bench/lz4_native.c (LZ4_decompress_safe in a loop, its own process); the
// AS side runs here, in-process, on the shared memory; the two alternate for
// CODEC_ROUNDS rounds of CODEC_SECONDS each and the best of each is kept. Then
// the AS encoder's speed and compression ratio on the same chunks, next to
// liblz4's (called through koffi).
//
//   node build/bench/codec.js     (after `npm run build`)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';
import { compileCore, createSharedMemory, instantiateCore, type Core } from '../src/core/wasm-core.js';
import { Arena } from '../src/core/arena.js';
import { ROOT } from '../test/helpers/paths.js';
import { makeImage, prng } from '../test/helpers/images.js';

const CHUNK = 64 * 1024;
const IMAGE_BYTES = Number(process.env.CODEC_IMAGE_MIB ?? 32) * 1024 * 1024;
const SECONDS = Number(process.env.CODEC_SECONDS ?? 1);
// Rounds alternate native and AS so that noise from other work on the machine
// hits both alike; the best round of each is reported.
const ROUNDS = Number(process.env.CODEC_ROUNDS ?? 3);
const GiB = 1024 * 1024 * 1024;
const NATIVE = join(ROOT, 'build', 'lz4-native');
const NATIVE_SRC = join(ROOT, 'bench', 'lz4_native.c');

interface DataSet {
  name: string;
  chunks: Buffer[];
  blocks: Buffer[]; // LZ4_compress_default of each chunk
}

interface Result {
  name: string;
  asGiBs: number;
  nativeGiBs: number;
  ratio: number;
  encodeGiBs: number;
  nativeEncodeGiBs: number;
  asCompression: number;
  nativeCompression: number;
}

const lz = koffi.load('liblz4.so.1');
const compress = lz.func('int LZ4_compress_default(const void *src, void *dst, int srcSize, int dstCapacity)') as
  (src: Buffer, dst: Buffer, srcSize: number, dstCapacity: number) => number;

function ensureNative(): void {
  if (existsSync(NATIVE) && statSync(NATIVE).mtimeMs >= statSync(NATIVE_SRC).mtimeMs) return;
  mkdirSync(join(ROOT, 'build'), { recursive: true });
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', NATIVE, NATIVE_SRC, '-l:liblz4.so.1'], { stdio: 'inherit' });
}

/** Text-like bytes: words of a small vocabulary, numbers, punctuation, newlines. */
function textLike(bytes: number): Buffer {
  const words = 'the of and to in is that for it as was with be by on not this are or from at which but have an they were there been one all their has would when if so what no out up into more other time some could them can only new these two may first then do any like now over such after also did many before must through back years where much way well down should because each just those people how too little state good very make world still own see work long here get both between life being under never day same another know while last might great old year off come since against go came right used take three memory page fault snapshot restore guest kernel'.split(' ');
  const r = prng('codec-text', bytes);
  let out = '';
  let k = 0;
  while (out.length < bytes) {
    const a = r[k++ % r.length];
    const b = r[k++ % r.length];
    let w = words[(a * b) % words.length];
    if (a < 12) w = `${w[0].toUpperCase()}${w.slice(1)}.`;
    if (a > 250) w += '\n';
    else if (a > 245) w = `${w} ${b * 97}`;
    out += `${w} `;
  }
  return Buffer.from(out.slice(0, bytes));
}

function dataSet(name: string, data: Buffer): DataSet {
  const chunks: Buffer[] = [];
  const blocks: Buffer[] = [];
  const scratch = Buffer.alloc(CHUNK + CHUNK / 255 + 16);
  for (let o = 0; o + CHUNK <= data.length; o += CHUNK) {
    const chunk = data.subarray(o, o + CHUNK);
    if (chunk.every((b) => b === 0)) continue;
    const n = compress(chunk, scratch, chunk.length, scratch.length);
    if (n <= 0) throw new Error('LZ4_compress_default failed');
    chunks.push(chunk);
    blocks.push(Buffer.from(scratch.subarray(0, n)));
  }
  return { name, chunks, blocks };
}

function writeBlocks(set: DataSet): string {
  const file = join(ROOT, 'build', 'bench', `lz4-blocks-${set.name}.bin`);
  mkdirSync(join(ROOT, 'build', 'bench'), { recursive: true });
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeUInt32LE(set.blocks.length);
  parts.push(head);
  set.blocks.forEach((b, i) => {
    const h = Buffer.alloc(8);
    h.writeUInt32LE(set.chunks[i].length, 0);
    h.writeUInt32LE(b.length, 4);
    parts.push(h, b);
  });
  writeFileSync(file, Buffer.concat(parts));
  return file;
}

function runNative(file: string): number {
  const out = execFileSync(NATIVE, [file, String(SECONDS)], { encoding: 'utf8' });
  return (JSON.parse(out) as { gibs: number }).gibs;
}

/** Runs `round` (which returns bytes processed) repeatedly: a warm-up, then ~SECONDS timed. */
function timed(round: () => number): number {
  const warm = performance.now();
  while (performance.now() - warm < SECONDS * 200) round();
  let bytes = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    bytes += round();
    elapsed = (performance.now() - start) / 1000;
  } while (elapsed < SECONDS);
  return bytes / elapsed / GiB;
}

/** Decode speed of AS and native (alternating rounds), then the AS encoder's speed and ratio. */
function runBoth(core: Core, arena: Arena, set: DataSet): Omit<Result, 'name' | 'ratio' | 'nativeEncodeGiBs'> {
  const fn = core.fn;
  const slack = core.layout.LZ4_DECODE_SLACK;
  const rawTotal = set.chunks.reduce((s, c) => s + c.length, 0);
  const compTotal = set.blocks.reduce((s, b) => s + b.length, 0);
  // The blocks back to back, as the native side reads them; one reused output buffer.
  const src = arena.alloc(compTotal);
  const raw = arena.alloc(rawTotal);
  const dst = arena.alloc(CHUNK + slack);
  const encDst = arena.alloc(fn.lz4Bound(CHUNK));
  const table = arena.alloc(core.layout.LZ4_TABLE_BYTES);
  const mem = new Uint8Array(core.memory.buffer);
  const offs: number[] = [];
  const lens: number[] = [];
  let at = src;
  for (const b of set.blocks) {
    mem.set(b, at);
    offs.push(at);
    lens.push(b.length);
    at += b.length;
  }
  at = raw;
  for (const c of set.chunks) {
    mem.set(c, at);
    at += c.length;
  }
  const n = set.blocks.length;
  for (let i = 0; i < n; i++) {
    const got = fn.lz4DecodeBlock(offs[i], lens[i], dst, CHUNK);
    if (got !== CHUNK || !Buffer.from(core.memory.buffer, dst, CHUNK).equals(set.chunks[i])) throw new Error(`${set.name}: AS decode of block ${i} is wrong (${got})`);
  }
  const file = writeBlocks(set);
  let asGiBs = 0;
  let nativeGiBs = 0;
  for (let round = 0; round < ROUNDS; round++) {
    nativeGiBs = Math.max(nativeGiBs, runNative(file));
    asGiBs = Math.max(asGiBs, timed(() => {
      for (let i = 0; i < n; i++) fn.lz4DecodeBlock(offs[i], lens[i], dst, CHUNK);
      return rawTotal;
    }));
  }

  let asComp = 0;
  for (let i = 0; i < n; i++) {
    const c = fn.lz4EncodeBlock(raw + i * CHUNK, CHUNK, encDst, fn.lz4Bound(CHUNK), table);
    if (c === 0 || fn.lz4DecodeBlock(encDst, c, dst, CHUNK) !== CHUNK) throw new Error(`${set.name}: AS encode of chunk ${i} failed`);
    asComp += c;
  }
  const cap = fn.lz4Bound(CHUNK);
  const encodeGiBs = timed(() => {
    for (let i = 0; i < n; i++) fn.lz4EncodeBlock(raw + i * CHUNK, CHUNK, encDst, cap, table);
    return rawTotal;
  });
  for (const p of [src, raw, dst, encDst, table]) arena.freeBlock(p);
  return { asGiBs, nativeGiBs, encodeGiBs, asCompression: rawTotal / asComp, nativeCompression: rawTotal / compTotal };
}

function nativeEncodeSpeed(set: DataSet): number {
  const scratch = Buffer.alloc(CHUNK + CHUNK / 255 + 16);
  return timed(() => {
    for (const c of set.chunks) compress(c, scratch, c.length, scratch.length);
    return set.chunks.length * CHUNK;
  });
}

function report(r: Result): void {
  console.log(`${r.name}: AS decode ${r.asGiBs.toFixed(2)} GiB/s, liblz4 ${r.nativeGiBs.toFixed(2)} GiB/s, ratio ${r.ratio.toFixed(2)}`);
  console.log(`${r.name}: AS encode ${r.encodeGiBs.toFixed(3)} GiB/s (liblz4 ${r.nativeEncodeGiBs.toFixed(3)} GiB/s), ` +
    `compression ${r.asCompression.toFixed(2)}:1 (liblz4 ${r.nativeCompression.toFixed(2)}:1)`);
}

/** Decode throughput AS vs native on the image's 64 KiB chunks (the first data set); text is printed too. */
export async function benchCodec(): Promise<{ asGiBs: number; nativeGiBs: number; ratio: number; encodeGiBs: number }> {
  ensureNative();
  const core = instantiateCore(compileCore(), createSharedMemory());
  const arena = new Arena(core.memory);
  const sets = [
    dataSet('image', makeImage(IMAGE_BYTES, { seed: 'codec-bench' })),
    dataSet('text', textLike(Math.min(IMAGE_BYTES, 16 * 1024 * 1024))),
  ];
  const results: Result[] = [];
  for (const set of sets) {
    const m = runBoth(core, arena, set);
    const r: Result = { name: set.name, ratio: m.asGiBs / m.nativeGiBs, nativeEncodeGiBs: nativeEncodeSpeed(set), ...m };
    report(r);
    results.push(r);
  }
  const { asGiBs, nativeGiBs, ratio, encodeGiBs } = results[0];
  return { asGiBs, nativeGiBs, ratio, encodeGiBs };
}

if (process.argv[1]?.endsWith("codec.js")) {
  benchCodec().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
