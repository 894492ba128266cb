// The snapshot store (docs/store.md): what a series of snapshots costs on
// disk against one put alone and against `snapfault pack`, what a Diff layer
// adds against packing its pages alone, how fast a layered snapshot restores
// against the same memory flattened in the store and packed, how long a put
// of pages the store holds already takes, and the chunk size trade-off.
// Everything is measured in this one run, side by side.
import { copyFileSync, openSync, closeSync, writeSync, readSync, ftruncateSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pack } from '../src/compressed/pack.js';
import { FolderStore } from '../src/store/folder-store.js';
import { FolderBackend } from '../src/store/folder-backend.js';
import { put } from '../src/store/put.js';
import { flattenSnapshot } from '../src/store/flatten.js';
import { DEFAULT_CHUNK_BYTES } from '../src/compressed/format.js';
import { prng, makeImage } from '../test/helpers/images.js';
import { benchImage, sideBySide, tmpPath, ROUNDS, GiB, MiB, median, type RunSpec, type Sample } from './harness.js';

const PAGE = 4096;
const PAGES = GiB / PAGE;
const SIZES_KIB = [16, 32, 64, 128, 256];
const SERIES = 10;
const CHANGED = 0.02;
const out = (s: string): boolean => process.stdout.write(s);
const mib = (b: number): string => (b / MiB).toFixed(1);
const x = (a: number, b: number): string => `${(a / b).toFixed(3)}x`;

/** `count` distinct page numbers, seeded. */
function pickPages(seed: string, count: number): number[] {
  const set = new Set<number>();
  for (let round = 0; set.size < count; round++) {
    const r = prng(`${seed}-${round}`, count * 8);
    for (let o = 0; o + 4 <= r.length && set.size < count; o += 4) set.add(r.readUInt32LE(o) % PAGES);
  }
  return [...set];
}

/**
 * New contents for `count` pages, drawn like the bench's realistic image
 * (`zeroFraction` 0.5: half zero, duplicates, text, random) or all data (0).
 */
const newPages = (seed: string, count: number, zeroFraction: number): Buffer => makeImage(count * PAGE, { seed, zeroFraction });

function writePages(fd: number, pages: number[], data: Buffer): void {
  pages.forEach((p, i) => writeSync(fd, data, i * PAGE, PAGE, p * PAGE));
}

/** Snapshot i of the series: the file with 2% of its pages rewritten (cumulative, like a VM running on). */
function change(path: string, i: number, zeroFraction: number): void {
  const pages = pickPages(`store-series-${i}`, Math.round(PAGES * CHANGED));
  const fd = openSync(path, 'r+');
  writePages(fd, pages, newPages(`store-series-content-${i}-${zeroFraction}`, pages.length, zeroFraction));
  closeSync(fd);
}

/** 2% of the pages swap places with other pages: nothing new, only moved. */
function move(path: string): void {
  const pages = pickPages('store-moved', Math.round(PAGES * CHANGED));
  const fd = openSync(path, 'r+');
  const a = Buffer.alloc(PAGE);
  const b = Buffer.alloc(PAGE);
  for (let i = 0; i + 1 < pages.length; i += 2) {
    readSync(fd, a, 0, PAGE, pages[i] * PAGE);
    readSync(fd, b, 0, PAGE, pages[i + 1] * PAGE);
    writeSync(fd, b, 0, PAGE, pages[i] * PAGE);
    writeSync(fd, a, 0, PAGE, pages[i + 1] * PAGE);
  }
  closeSync(fd);
}

function zero(path: string): void {
  const pages = pickPages('store-zeroed', Math.round(PAGES * CHANGED));
  const fd = openSync(path, 'r+');
  writePages(fd, pages, Buffer.alloc(pages.length * PAGE));
  closeSync(fd);
}

/** Apparent bytes of chunks, manifests and digest packs, and how many objects. */
async function usage(store: FolderBackend): Promise<{ bytes: number; objects: number; chunks: number }> {
  const u = await store.usage();
  const meta = ['snapshots', 'digests'].reduce((n, d) => n + readdirSync(join(store.root, d)).length, 0);
  return { bytes: u.chunkBytes + u.metadataBytes, objects: u.chunks + meta, chunks: u.chunks };
}

function freshStore(name: string, chunkKiB: number): FolderBackend {
  const root = tmpPath(name);
  rmSync(root, { recursive: true, force: true });
  return new FolderBackend(FolderStore.open(root, { chunkBytes: chunkKiB * 1024 }));
}

interface SeriesResult {
  chunkKiB: number;
  alone: number;
  afterSeries: number;
  objects: number;
  chunks: number;
  packOne: number;
  store: FolderBackend;
  /** The last snapshot's memory, for restores. */
  last: string;
}

/** A store with the base image alone, then with the ten 2%-changed snapshots after it. */
async function series(base: string, chunkKiB: number, zeroFraction: number): Promise<SeriesResult> {
  const store = freshStore(`series-${chunkKiB}-${zeroFraction}`, chunkKiB);
  const work = tmpPath(`series-${chunkKiB}-${zeroFraction}.img`);
  copyFileSync(base, work);
  await put(store, work, 's0');
  const alone = (await usage(store)).bytes;
  for (let i = 1; i <= SERIES; i++) {
    change(work, i, zeroFraction);
    await put(store, work, `s${i}`);
  }
  const after = await usage(store);
  const packed = tmpPath(`one-${chunkKiB}.sfz`);
  const packOne = (await pack(base, packed, { chunkBytes: chunkKiB * 1024 })).fileSize;
  rmSync(packed);
  return { chunkKiB, alone, afterSeries: after.bytes, objects: after.objects, chunks: after.chunks, packOne, store, last: work };
}

/** A sparse Diff memory file: `pages` written with `data`, holes elsewhere. */
function diffFile(path: string, pages: number[], data: Buffer): void {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, GiB);
  writePages(fd, pages, data);
  closeSync(fd);
}

export async function benchStore(): Promise<void> {
  const base = benchImage('realistic');
  const defKiB = DEFAULT_CHUNK_BYTES / 1024;

  // (a) and (e): the series at every chunk size.
  const results: SeriesResult[] = [];
  for (const k of SIZES_KIB) {
    process.stderr.write(`store: series with ${k} KiB chunks ...\n`);
    results.push(await series(base, k, 0.5));
  }
  out(`## Store: ${SERIES} snapshots, each with ${CHANGED * 100}% of its pages rewritten (1 GiB realistic image; new pages drawn like it)\n\n`);
  out('| chunk | one snapshot put alone | pack of it | after the base + 10 | vs put alone | vs pack of one | objects | chunks |\n|---|---:|---:|---:|---:|---:|---:|---:|\n');
  for (const r of results) {
    out(`| ${r.chunkKiB} KiB | ${mib(r.alone)} MiB | ${mib(r.packOne)} MiB | ${mib(r.afterSeries)} MiB | ${x(r.afterSeries, r.alone)} | ${x(r.afterSeries, r.packOne)} | ${r.objects} | ${r.chunks} |\n`);
  }
  const def = results.find((r) => r.chunkKiB === defKiB) ?? results[1];

  // The same series with every rewritten page data (no zero pages among them): the harder case.
  process.stderr.write('store: all-data series ...\n');
  const hard = await series(base, defKiB, 0);
  out(`\nWith every rewritten page data (no zeros; ${defKiB} KiB): ${mib(hard.alone)} MiB -> ${mib(hard.afterSeries)} MiB, ${x(hard.afterSeries, hard.alone)} of one put alone, ` +
    `${x(hard.afterSeries, hard.packOne)} of its pack.\n`);
  rmSync(hard.store.root, { recursive: true, force: true });
  rmSync(hard.last, { force: true });

  // Pages moved, pages zeroed: nothing new to store but the manifest.
  const moved = tmpPath('moved.img');
  copyFileSync(def.last, moved);
  move(moved);
  const before = (await usage(def.store)).bytes;
  await put(def.store, moved, 'moved');
  const afterMoved = (await usage(def.store)).bytes;
  const zeroed = tmpPath('zeroed.img');
  copyFileSync(def.last, zeroed);
  zero(zeroed);
  await put(def.store, zeroed, 'zeroed');
  const afterZeroed = (await usage(def.store)).bytes;
  out(`\nSnapshot ${SERIES} again with 2% of its pages moved (swapped in pairs): ${mib(afterMoved - before)} MiB added; with 2% zeroed: ${mib(afterZeroed - afterMoved)} MiB added ` +
    `(a 1 GiB manifest is ${mib(4 * PAGES)} MiB).\n`);
  rmSync(moved);
  rmSync(zeroed);

  // (b) A Diff layer of N MiB dirty pages against packing those pages alone.
  out(`\n## Store: a Diff layer of N MiB dirty pages (1 GiB snapshot, ${defKiB} KiB chunks; dirty pages drawn like the image without zeros)\n\n`);
  out('| dirty | layer adds (chunks + manifest + digest pack) | of which manifest | pack of the dirty pages alone | ratio |\n|---:|---:|---:|---:|---:|\n');
  for (const n of [4, 16, 64, 256]) {
    const pages = pickPages(`store-diff-${n}`, (n * MiB) / PAGE);
    const data = newPages(`store-diff-content-${n}`, pages.length, 0);
    const diff = tmpPath(`diff-${n}.img`);
    diffFile(diff, pages, data);
    const b0 = (await usage(def.store)).bytes;
    const s = await put(def.store, diff, `diff-${n}`, { parent: 's0' });
    const added = (await usage(def.store)).bytes - b0;
    const alone = tmpPath(`dirty-${n}.img`);
    writeFileSync(alone, data);
    const packed = (await pack(alone, `${alone}.sfz`, { chunkBytes: DEFAULT_CHUNK_BYTES })).fileSize;
    out(`| ${n} MiB | ${mib(added)} MiB | ${mib(s.manifestBytes)} MiB | ${mib(packed)} MiB | ${x(added, packed)} |\n`);
    for (const f of [diff, alone, `${alone}.sfz`]) rmSync(f);
  }

  // (d) A put of 1 GiB whose pages are all stored: the base image again, read
  // once first so it is in the page cache as a memory file Firecracker just
  // wrote is (the series before wrote gigabytes and pushed it out: the first
  // rounds then measured the disk).
  readThrough(base);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = process.hrtime.bigint();
    const s = await put(def.store, base, `again-${i}`);
    times.push(Number(process.hrtime.bigint() - t) / 1e9);
    if (s.bytesAdded !== 0) throw new Error(`a put of stored pages added ${s.bytesAdded} bytes`);
  }
  out(`\n## Store: a put of a 1 GiB snapshot whose pages are all stored (${defKiB} KiB chunks, ${times.length} rounds)\n\n`);
  out(`${times.map((t) => `${t.toFixed(2)} s`).join(', ')}: median ${median(times).toFixed(2)} s (target < 1 s).\n`);

  // (c) A three-layer snapshot against the same memory flattened in the store and packed.
  const merged = tmpPath('three-layers.img');
  copyFileSync(base, merged);
  const store = def.store;
  await put(store, base, 'l0');
  const mfd = openSync(merged, 'r+');
  for (const l of [1, 2]) {
    const pages = pickPages(`store-layer-${l}`, Math.round(PAGES * CHANGED));
    const data = newPages(`store-layer-content-${l}`, pages.length, 0.5);
    const diff = tmpPath(`layer-${l}.img`);
    diffFile(diff, pages, data);
    await put(store, diff, `l${l}`, { parent: `l${l - 1}` });
    writePages(mfd, pages, data);
    rmSync(diff);
  }
  closeSync(mfd);
  await flattenSnapshot(store, 'l2', 'l2-flat');
  const packedMerged = tmpPath('three-layers.sfz');
  await pack(merged, packedMerged, { chunkBytes: DEFAULT_CHUNK_BYTES });
  const viaStore = (name: string): Pick<RunSpec, 'serve' | 'snapfaultArgs'> => ({ serve: name, snapfaultArgs: ['--store', store.root] });
  const rows: Array<{ pinned: boolean; pattern: string; s: Sample[] }> = [];
  for (const pinned of [true, false]) {
    for (const pattern of ['random', 'seq'] as const) {
      const spec = { handler: 'snapfault', image: merged, pattern, pinned, touches: pinned ? 131072 : 65536, verify: true } as const;
      rows.push({ pinned, pattern, s: await sideBySide([{ ...spec, ...viaStore('l2') }, { ...spec, ...viaStore('l2-flat') }, { ...spec, serve: packedMerged }]) });
    }
  }
  out(`\n## Store: restores of a three-layer snapshot (a base and two 2% Diff layers) against the same memory flattened in the store and packed (${defKiB} KiB chunks, ${ROUNDS} rounds, medians)\n\n`);
  out('| pattern | pinned | layered touches/s | flattened touches/s | packed touches/s | layered vs flattened | layered vs packed | layered p99 µs | flattened p99 µs |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n');
  for (const r of rows) {
    const [l, f, p] = r.s;
    out(`| ${r.pattern} | ${r.pinned ? 'yes (taskset -c 0)' : 'no'} | ${Math.round(l.fps)} | ${Math.round(f.fps)} | ${Math.round(p.fps)} | ${x(l.fps, f.fps)} | ${x(l.fps, p.fps)} | ${l.p99.toFixed(1)} | ${f.p99.toFixed(1)} |\n`);
  }
  rmSync(packedMerged);
  rmSync(merged);

  // (e) Restore speed of the series' last snapshot at every chunk size.
  process.stderr.write('store: restores at every chunk size ...\n');
  const spec = (r: SeriesResult): RunSpec => ({ handler: 'snapfault', image: r.last, serve: `s${SERIES}`, snapfaultArgs: ['--store', r.store.root], pattern: 'random', pinned: true, touches: 131072, verify: true });
  const rnd = await sideBySide(results.map(spec));
  const seq = await sideBySide(results.map((r) => ({ ...spec(r), pattern: 'seq' })));
  out(`\n## Store: chunk size (snapshot ${SERIES} of the series, 131072 touches, pinned, ${ROUNDS} rounds, medians)\n\n`);
  out('| chunk | store after the base + 10 | objects | random touches/s | random p99 µs | sequential touches/s | sequential p99 µs |\n|---|---:|---:|---:|---:|---:|---:|\n');
  results.forEach((r, i) => {
    out(`| ${r.chunkKiB} KiB | ${mib(r.afterSeries)} MiB | ${r.objects} | ${Math.round(rnd[i].fps)} | ${rnd[i].p99.toFixed(1)} | ${Math.round(seq[i].fps)} | ${seq[i].p99.toFixed(1)} |\n`);
  });
  out('\nTargets: the series <= 1.3x one put alone; a Diff layer <= 1.1x packing its pages; layered >= 0.95x flattened; a put of stored pages < 1 s.\n\n');
  for (const r of results) {
    rmSync(r.store.root, { recursive: true, force: true });
    rmSync(r.last, { force: true });
  }
}

/** Reads a file once, through a small buffer: it is then in the page cache. */
function readThrough(path: string): void {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(4 << 20);
  try {
    for (let pos = 0, n = 1; n > 0; pos += n) n = readSync(fd, buf, 0, buf.length, pos);
  } finally {
    closeSync(fd);
  }
}
