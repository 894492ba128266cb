// store verify --against (src/store/verify.ts) with the wrong memory file: a
// fault named in one line (exit 1), not a crash on a closed descriptor.
import { expect } from 'chai';
import { verifySnapshot, StoreFaultError } from '../../src/store/verify.js';
import { FolderBackend } from '../../src/store/folder-backend.js';
import { put } from '../../src/store/put.js';
import { makeImage, TempDir } from '../helpers/images.js';

describe('store verify --against', () => {
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('a memory file of another size is a fault that says both sizes', async () => {
    const image = tmp.file('mem', makeImage(1 << 20, { seed: 'verify-size' }));
    const store = await FolderBackend.open(tmp.file('store'), { chunkBytes: 32768 });
    await put(store, image, 'one', { workers: 1 });
    expect((await verifySnapshot(store, 'one', image)).pagesCompared).to.equal(256);
    const shorter = tmp.file('shorter', makeImage(1 << 19, { seed: 'verify-size' }));
    const refused = await verifySnapshot(store, 'one', shorter).then(() => null, (e: unknown) => e);
    expect(refused).to.be.instanceOf(StoreFaultError);
    expect((refused as Error).message).to.include(`snapshot "one" is 1048576 bytes, ${shorter} is 524288`);
  });
});
