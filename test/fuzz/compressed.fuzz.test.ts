// Fuzzing the compressed snapshot reader: any damage to a packed file is
// refused with a clear SnapshotError, or leaves the content exactly the
// original: a wrong byte is never produced.
import { expect } from 'chai';
import fc from 'fast-check';
import { readFileSync, writeFileSync } from 'node:fs';
import { TempDir, makeImage } from '../helpers/images.js';
import { pack } from '../../src/compressed/pack.js';
import { unpack, verify } from '../../src/compressed/tools.js';
import { SnapshotError } from '../../src/errors.js';

const RUNS = Number(process.env.FUZZ_RUNS_FILE ?? 600);

describe('fuzz: compressed snapshot reader', function () {
  this.timeout(300_000);
  const tmp = new TempDir();
  let original: Buffer;
  let packed: Buffer;
  after(() => tmp.remove());

  before(async () => {
    original = makeImage(96 * 4096, { seed: 'fuzz', zeroFraction: 0.3 });
    const src = tmp.file('orig.img', original);
    await pack(src, tmp.file('orig.sfz'), { chunkBytes: 8192, workers: 1 });
    packed = readFileSync(tmp.file('orig.sfz'));
  });

  function check(damaged: Buffer, label: string): void {
    const file = tmp.file('damaged.sfz', damaged);
    let ok = false;
    try {
      verify(file);
      ok = true;
    } catch (e) {
      expect(e, `${label}: ${String(e)}`).to.be.instanceOf(SnapshotError);
      expect((e as Error).message).to.not.include('\n');
    }
    if (ok) {
      // Damage that passed every check must not have changed a single byte of the content.
      const out = tmp.file('damaged.out');
      unpack(file, out);
      expect(readFileSync(out).equals(original), `${label}: accepted but different`).to.equal(true);
    }
  }

  it('byte mutations anywhere', () => {
    fc.assert(fc.property(fc.nat(), fc.integer({ min: 1, max: 255 }), (pos, x) => {
      const d = Buffer.from(packed);
      const at = pos % d.length;
      d[at] ^= x;
      check(d, `xor 0x${x.toString(16)} at ${at}`);
    }), { numRuns: RUNS });
  });

  it('truncations, extensions and random bodies', () => {
    fc.assert(fc.property(fc.nat(), fc.uint8Array({ maxLength: 64 }), (pos, extra) => {
      const at = pos % packed.length;
      check(packed.subarray(0, at), `truncated to ${at}`);
      check(Buffer.concat([packed, Buffer.from(extra)]), `extended by ${extra.length}`);
      check(Buffer.concat([packed.subarray(0, 128), Buffer.from(extra)]), 'header then garbage');
    }), { numRuns: Math.ceil(RUNS / 6) });
  });

  it('an empty file and a header alone', () => {
    check(Buffer.alloc(0), 'empty');
    check(packed.subarray(0, 128), 'header only');
    writeFileSync(tmp.file('x'), '');
  });
});
