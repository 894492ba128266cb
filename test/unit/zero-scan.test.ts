// The background zero scan on real files, with the real core and worker.
import { expect } from 'chai';
import { renameSync } from 'node:fs';
import { compileCore, createSharedMemory, instantiateCore } from '../../src/core/wasm-core.js';
import { Arena } from '../../src/core/arena.js';
import { RawSnapshot } from '../../src/snapshot/raw-file.js';
import { startZeroScan } from '../../src/snapshot/zero-scan.js';
import { makeImage, TempDir } from '../helpers/images.js';

const PAGE = 4096;

describe('zero-page scan', () => {
  let dir: TempDir;
  beforeEach(() => (dir = new TempDir()));
  afterEach(() => dir.remove());

  it('scans the file the snapshot opened, not whatever was renamed over its path since', async () => {
    const pages = 96;
    const image = makeImage(pages * PAGE, { seed: 'zero-scan', zeroFraction: 0.4 });
    const path = dir.file('mem', image);
    const zeros = dir.file('zeros', Buffer.alloc(image.length));

    const module = compileCore();
    const core = instantiateCore(module, createSharedMemory());
    const arena = new Arena(core.memory);
    const snap = RawSnapshot.open(path, core, arena);
    try {
      // `snapfault serve` sees a new file at the path; this snapshot still serves the old one.
      renameSync(zeros, path);
      const activity = arena.alloc(4);
      const result = await startZeroScan(snap, module, core.memory, arena, activity).done;
      expect(result.error).to.equal(undefined);
      expect(result.scannedBytes).to.equal(image.length);

      const bitmap = new Uint32Array(core.memory.buffer, snap.zeroBitmap, Math.ceil(pages / 32));
      const marked = (p: number): boolean => (bitmap[p >> 5] & (1 << (p & 31))) !== 0;
      const isZero = (p: number): boolean => image.subarray(p * PAGE, (p + 1) * PAGE).every((b) => b === 0);
      const wrong: number[] = [];
      let expectedZeros = 0;
      for (let p = 0; p < pages; p++) {
        if (isZero(p)) expectedZeros++;
        if (marked(p) !== isZero(p)) wrong.push(p);
      }
      expect(expectedZeros, 'the image has both kinds of page').to.be.within(1, pages - 1);
      expect(wrong, 'pages whose zero bit disagrees with the opened file').to.deep.equal([]);
      expect(result.zeroPages).to.equal(expectedZeros);
    } finally {
      snap.close();
    }
  });
});
