// EEXIST must wake: a fault for a page that became present before the
// handler copied it (filled by another path with DONTWAKE) leaves its thread
// asleep unless the handler wakes the range. This test plays Firecracker
// itself, stops the handler while the fault is queued, fills the page behind
// its back, and lets it go on.
import { expect } from 'chai';
import { Worker } from 'node:worker_threads';
import { TempDir, makeImage } from '../helpers/images.js';
import { startSnapfault } from '../helpers/processes.js';
import { createUserfaultfd, registerMissing, copy, UFFD_FEATURE, UFFDIO_COPY_MODE_DONTWAKE } from '../../native/uffd.js';
import { mmapAnonymous, munmap, writeMemory } from '../../native/mmap.js';
import { connectUnix, sendWithFds } from '../../native/socket.js';
import { closeFd } from '../../native/fd.js';

const MiB = 1 << 20;
const PAGE = 4096;

describe('EEXIST wakes the waiting thread', function () {
  this.timeout(30_000);
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('a fault on a page filled meanwhile (DONTWAKE) still returns', async () => {
    const mem = tmp.file('e.img', makeImage(MiB, { seed: 'eexist', zeroFraction: 0 }));
    const sock = tmp.file('e.sock');
    // disconnect, not kill-peer: the peer here is the test runner itself.
    const h = await startSnapfault(['serve', '--socket', sock, '--mem', mem, '--on-fatal', 'disconnect', '--zero-scan', 'off']);
    const uffd = createUserfaultfd(UFFD_FEATURE.EVENT_REMOVE);
    const guest = mmapAnonymous(MiB);
    const src = mmapAnonymous(PAGE);
    let conn = -1;
    try {
      registerMissing(uffd, guest.addr, MiB);
      conn = connectUnix(sock);
      sendWithFds(conn, Buffer.from(`[{"base_host_virt_addr":${guest.addr},"size":${MiB},"offset":0}]`), [uffd]);
      await h.waitForStderr(/serving 1 region/);
      h.kill('SIGSTOP');
      // A "vCPU" touches page 3: it blocks in the fault until someone wakes it.
      const target = guest.addr + 3 * PAGE;
      const vcpu = new Worker(`
        const { workerData, parentPort } = require('node:worker_threads');
        const koffi = require(workerData.koffi);
        const memcpy = koffi.load('libc.so.6').func('uintptr_t memcpy(uintptr_t, uintptr_t, size_t)');
        const out = Buffer.alloc(8);
        memcpy(Number(koffi.address(out)), workerData.addr, 8);
        parentPort.postMessage(out.readUInt32LE(0));
      `, { eval: true, workerData: { addr: target, koffi: require_koffi() } });
      const touched = new Promise<number>((resolve, reject) => {
        vcpu.once('message', resolve);
        vcpu.once('error', reject);
      });
      await new Promise((r) => setTimeout(r, 300)); // the fault is queued now
      writeMemory(src.addr, Buffer.alloc(PAGE, 0xee));
      expect(copy(uffd, target, src.addr, PAGE, UFFDIO_COPY_MODE_DONTWAKE)).to.equal(PAGE); // present, thread still asleep
      h.kill('SIGCONT');
      const word = await Promise.race([touched, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the vCPU was never woken')), 5000))]);
      expect(word).to.equal(0xeeeeeeee); // our bytes, not the snapshot's: the handler did not overwrite a present page
      await vcpu.terminate();
    } finally {
      h.kill('SIGCONT');
      if (conn >= 0) closeFd(conn);
      await h.waitForStderr(/ended: Firecracker closed the connection/).catch(() => undefined);
      closeFd(uffd);
      munmap(guest);
      munmap(src);
      h.kill('SIGKILL');
      await h.exited;
    }
    expect(h.stderr).to.match(/1 EEXIST/);
  });
});

function require_koffi(): string {
  return new URL('../../../node_modules/koffi/index.cjs', import.meta.url).pathname;
}
