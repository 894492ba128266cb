// The file-descriptor wrappers whose arguments live in memory koffi does not
// marshal: the address handed to the kernel must stay valid however long the
// process runs, garbage collections included.
import { expect } from 'chai';
import { openSync, closeSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { markAccessed, waitReadable, closeFd } from '../../native/fd.js';
import { pidfdOpen } from '../../native/pidfd.js';
import { spawn } from 'node:child_process';
import { TempDir } from '../helpers/images.js';

setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

describe('native fd wrappers', () => {
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('markAccessed sets the access time and leaves the modification time as it was, after garbage collections too', () => {
    const path = tmp.file('accessed');
    writeFileSync(path, 'x');
    const mtime = new Date('2020-01-02T03:04:05Z');
    const atime = new Date('2020-01-01T00:00:00Z');
    for (let round = 0; round < 5; round++) {
      utimesSync(path, atime, mtime);
      // Garbage made and collected between calls: a struct nothing kept alive is freed and its memory reused.
      for (let i = 0; i < 2000; i++) new BigInt64Array(4).fill(BigInt(i) * 0x1_0000_0000n);
      collect();
      const fd = openSync(path, 'r');
      try {
        expect(markAccessed(fd)).to.equal(0);
      } finally {
        closeSync(fd);
      }
      const st = statSync(path);
      expect(st.mtimeMs, `round ${round}`).to.equal(mtime.getTime());
      expect(st.atimeMs).to.be.above(Date.now() - 60_000);
    }
  });

  it('waitReadable waits off the event loop: false at its timeout, true once a pidfd\'s process has exited', async () => {
    const child = spawn('sleep', ['0.3'], { stdio: 'ignore' });
    await new Promise((r) => child.once('spawn', r));
    const pidfd = pidfdOpen(child.pid!);
    try {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      const t0 = performance.now();
      expect(await waitReadable(pidfd, 50)).to.equal(false);
      expect(performance.now() - t0).to.be.at.least(45);
      expect(ticks, 'the event loop ran meanwhile').to.be.at.least(3);
      expect(await waitReadable(pidfd, 5000)).to.equal(true);
      clearInterval(timer);
      expect(performance.now() - t0).to.be.below(4000);
    } finally {
      closeFd(pidfd);
      child.kill('SIGKILL');
    }
  });
});
