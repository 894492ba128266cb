// A put's pages are digested from one read and stored from another: the
// chunk worker's check that the two agree is what keeps a memory file changed
// mid-put from giving the dedup index a digest for bytes its chunk lacks.
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { pageDigest, firstChangedSlot } from '../../src/store/page-digest.js';
import { PAGE_DIGEST_BYTES } from '../../src/store/digest-pack.js';

const PAGE = 4096;

describe('page digests', () => {
  it('a page digest is the first 16 bytes of its SHA-256', () => {
    const page = randomBytes(PAGE);
    expect(pageDigest(page).equals(createHash('sha256').update(page).digest().subarray(0, 16))).to.equal(true);
    expect(PAGE_DIGEST_BYTES).to.equal(16);
  });

  it('firstChangedSlot: -1 when every page matches (padding skipped), else the first page whose bytes changed', () => {
    const slots = 8;
    const data = randomBytes(slots * PAGE);
    const digests = Buffer.alloc(slots * PAGE_DIGEST_BYTES);
    for (let s = 0; s < 6; s++) pageDigest(data.subarray(s * PAGE, (s + 1) * PAGE)).copy(digests, s * PAGE_DIGEST_BYTES);
    data.fill(0, 6 * PAGE); // the last chunk's padding: zero pages, zero digests
    expect(firstChangedSlot(data, digests)).to.equal(-1);
    data[4 * PAGE + 100] ^= 1;
    data[5 * PAGE] ^= 1;
    expect(firstChangedSlot(data, digests)).to.equal(4);
  });
});
