// `snapfault pack`: one pass over a memory file. The main thread reads it,
// sorts pages into zero, duplicate (of an earlier page, checked byte for
// byte) and stored, and batches stored pages into chunks; pack workers (one
// per core) compress and checksum the chunks; results are written in order.
// The output appears under its name only once complete (src/output-file.ts).
import { closeSync, readSync, fstatSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { compileCore, createSharedMemory, instantiateCore } from '../core/wasm-core.js';
import { Arena } from '../core/arena.js';
import { SnapshotError, UsageError } from '../errors.js';
import { openSnapshotFile, firstBytes, readExactlyAt, endedEarly } from '../snapshot/open-file.js';
import { AtomicFile } from '../output-file.js';
import {
  FORMAT_VERSION, HEADER_BYTES, HEADER_CHECKSUM_OFFSET, PAGE_BYTES, PAGE_ZERO, CODEC_LZ4, CHUNK_ENTRY_BYTES, MAX_CHUNK_BYTES,
  DEFAULT_CHUNK_BYTES, encodeHeader, isCompressed, storedLength, storedRaw, type Header,
} from './format.js';
import type { PackJob, PackResult, PackWorkerData } from './pack-worker.js';

export interface PackOptions {
  chunkBytes?: number;
  workers?: number;
  /** Called with bytes read so far and the total. */
  progress?: (done: number, total: number) => void;
}

export interface PackStats {
  originalSize: number;
  fileSize: number;
  pages: number;
  zeroPages: number;
  duplicatePages: number;
  storedPages: number;
  chunks: number;
  rawChunks: number;
}

const READ_BYTES = 4 << 20;
const BATCH_CHUNKS = 16;
const ZERO_PAGE = Buffer.alloc(PAGE_BYTES);

export async function pack(inputPath: string, outputPath: string, opts: PackOptions = {}): Promise<PackStats> {
  const chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (chunkBytes % PAGE_BYTES !== 0 || chunkBytes < PAGE_BYTES || chunkBytes > MAX_CHUNK_BYTES) {
    throw new UsageError(`--chunk-kib ${chunkBytes / 1024}: expected a multiple of 4 from 4 to ${MAX_CHUNK_BYTES / 1024}`);
  }
  const inFd = openSnapshotFile(inputPath);
  const size = fstatSync(inFd).size;
  if (isCompressed(firstBytes(inFd))) {
    closeSync(inFd);
    throw new SnapshotError(inputPath, 'is already a compressed snapshot');
  }
  if (size === 0 || size % PAGE_BYTES !== 0) {
    closeSync(inFd);
    throw new SnapshotError(inputPath, `its size ${size} is not a non-zero multiple of 4096: not a Firecracker memory file`);
  }
  const pages = size / PAGE_BYTES;
  const ppc = chunkBytes / PAGE_BYTES;
  let file: AtomicFile;
  try {
    file = AtomicFile.create(outputPath);
  } catch (e) {
    closeSync(inFd);
    throw e;
  }
  const module = compileCore();
  const core = instantiateCore(module, createSharedMemory());
  const arena = new Arena(core.memory);
  const workerCount = Math.max(1, opts.workers ?? Math.min(availableParallelism(), 4));
  const workers = Array.from({ length: workerCount }, () => {
    const data: PackWorkerData = { module, chunkBytes, batchChunks: BATCH_CHUNKS };
    return new Worker(new URL('./pack-worker.js', import.meta.url), { workerData: data });
  });
  try {
    const index = new Uint32Array(pages);
    const seen = new Map<string, number>(); // page digest -> stored page number
    const storedToPage: number[] = [];
    let zeroPages = 0;
    let duplicatePages = 0;
    const chunkStored: number[] = [];
    const chunkChecksums: number[] = [];
    const chunkOffsets: number[] = [];
    const dataOffset = HEADER_BYTES + pages * 4;
    let writeAt = dataOffset;

    // Compression runs in the workers; results are written strictly in order.
    let nextJob = 0;
    let nextWrite = 0;
    const done = new Map<number, PackResult>();
    let inFlight = 0;
    const waiters: Array<() => void> = [];
    let failure: Error | null = null;
    const writeReady = (): void => {
      for (let r = done.get(nextWrite); r; r = done.get(nextWrite)) {
        done.delete(nextWrite);
        nextWrite++;
        let o = 0;
        const out = Buffer.from(r.out);
        for (let i = 0; i < r.stored.length; i++) {
          const len = storedLength(r.stored[i]);
          chunkOffsets.push(writeAt);
          chunkStored.push(r.stored[i]);
          chunkChecksums.push(r.checksums[i]);
          file.write(out.subarray(o, o + len), writeAt);
          writeAt += len;
          o += len;
        }
      }
    };
    workers.forEach((w) => {
      w.on('message', (r: PackResult) => {
        done.set(r.id, r);
        inFlight--;
        try {
          writeReady();
        } catch (e) {
          failure = e as Error;
        }
        waiters.shift()?.();
      });
      w.on('error', (e) => {
        failure = e;
        waiters.splice(0).forEach((f) => f());
      });
    });
    const submit = async (chunks: Buffer[]): Promise<void> => {
      while (inFlight >= workerCount * 2 && !failure) await new Promise<void>((r) => waiters.push(r));
      if (failure) throw failure;
      const data = Buffer.concat(chunks);
      const ab = data.buffer.slice(data.byteOffset, data.byteOffset + data.length);
      const job: PackJob = { id: nextJob, data: ab as ArrayBuffer, lengths: chunks.map((c) => c.length) };
      workers[nextJob % workerCount].postMessage(job, [job.data]);
      nextJob++;
      inFlight++;
    };

    let chunk = Buffer.alloc(chunkBytes);
    let chunkFill = 0;
    let batch: Buffer[] = [];
    const buf = Buffer.alloc(READ_BYTES);
    const canonical = Buffer.alloc(PAGE_BYTES);
    for (let pos = 0; pos < size; ) {
      const want = Math.min(READ_BYTES, size - pos);
      const ended = readExactlyAt(inFd, buf, want, pos);
      if (ended !== null) throw endedEarly(inputPath, ended);
      for (let off = 0; off < want; off += PAGE_BYTES) {
        const p = (pos + off) / PAGE_BYTES;
        const page = buf.subarray(off, off + PAGE_BYTES);
        if (page.equals(ZERO_PAGE)) {
          index[p] = PAGE_ZERO;
          zeroPages++;
          continue;
        }
        const key = createHash('sha1').update(page).digest('base64');
        const k = seen.get(key);
        if (k !== undefined) {
          // Same digest: compare the bytes before trusting it.
          readSync(inFd, canonical, 0, PAGE_BYTES, storedToPage[k] * PAGE_BYTES);
          if (canonical.equals(page)) {
            index[p] = k;
            duplicatePages++;
            continue;
          }
        } else {
          seen.set(key, storedToPage.length);
        }
        index[p] = storedToPage.length;
        storedToPage.push(p);
        page.copy(chunk, chunkFill);
        chunkFill += PAGE_BYTES;
        if (chunkFill === chunkBytes) {
          batch.push(chunk);
          chunk = Buffer.alloc(chunkBytes);
          chunkFill = 0;
          if (batch.length === BATCH_CHUNKS) {
            await submit(batch);
            batch = [];
          }
        }
      }
      pos += want;
      opts.progress?.(pos, size);
    }
    if (chunkFill > 0) batch.push(chunk.subarray(0, chunkFill));
    if (batch.length > 0) await submit(batch);
    while (inFlight > 0 && !failure) await new Promise<void>((r) => waiters.push(r));
    if (failure) throw failure;
    writeReady();

    const storedPages = storedToPage.length;
    const chunks = chunkStored.length;
    if (chunks !== Math.ceil(storedPages / ppc)) throw new Error(`internal: ${chunks} chunks for ${storedPages} pages`);
    // Checksums of the index and chunk table go through the core's xxh32.
    const table = Buffer.alloc(chunks * CHUNK_ENTRY_BYTES);
    for (let c = 0; c < chunks; c++) {
      table.writeBigUInt64LE(BigInt(chunkOffsets[c]), c * CHUNK_ENTRY_BYTES);
      table.writeUInt32LE(chunkStored[c] >>> 0, c * CHUNK_ENTRY_BYTES + 8);
      table.writeUInt32LE(chunkChecksums[c] >>> 0, c * CHUNK_ENTRY_BYTES + 12);
    }
    const indexBytes = Buffer.from(index.buffer, index.byteOffset, index.byteLength);
    const checksum = (b: Buffer): number => {
      const at = arena.alloc(Math.max(b.length, 1));
      new Uint8Array(core.memory.buffer, at, b.length).set(b);
      const x = core.fn.xxh32(at, b.length, 0) >>> 0;
      arena.freeBlock(at);
      return x;
    };
    const chunkTableOffset = writeAt;
    const h: Header = {
      version: FORMAT_VERSION, originalSize: size, pageBytes: PAGE_BYTES, chunkBytes, codec: CODEC_LZ4, pages, chunks, storedPages,
      zeroPages, duplicatePages, indexOffset: HEADER_BYTES, chunkTableOffset, dataOffset,
      fileSize: chunkTableOffset + table.length, indexChecksum: checksum(indexBytes), chunkTableChecksum: checksum(table),
    };
    const hb = encodeHeader(h);
    hb.writeUInt32LE(checksum(hb.subarray(0, HEADER_CHECKSUM_OFFSET)), HEADER_CHECKSUM_OFFSET);
    file.write(table, chunkTableOffset);
    file.write(indexBytes, HEADER_BYTES);
    file.write(hb, 0);
    file.truncate(h.fileSize);
    file.commit();
    return {
      originalSize: size, fileSize: h.fileSize, pages, zeroPages, duplicatePages, storedPages, chunks,
      rawChunks: chunkStored.filter(storedRaw).length,
    };
  } catch (e) {
    file.discard();
    throw e;
  } finally {
    closeSync(inFd);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
