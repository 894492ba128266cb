// A fault worker that dies (test/helpers/faulty-fault-worker.ts ends its
// thread at its first ioctl): the handler says so, stops and exits 1, in
// both forms, instead of waiting on with no one to serve its VMs.
import { expect } from 'chai';
import { TempDir, makeImage } from '../helpers/images.js';
import { Proc, startSim } from '../helpers/processes.js';
import { SNAPFAULT_FAULTY } from '../helpers/paths.js';

describe('a fault worker that crashes', function () {
  this.timeout(60_000);
  const tmp = new TempDir();
  after(() => tmp.remove());

  for (const form of ['drop-in', 'serve']) {
    it(`${form}: one error line, the handler stops and exits 1`, async () => {
      const mem = tmp.file(`${form}.img`, makeImage(1 << 20, { seed: 'crash' }));
      const sock = tmp.file(`${form}.sock`);
      const args = form === 'serve' ? ['serve', '--log-format', 'text', '--socket', sock, '--mem', mem] : ['--log-format', 'text', sock, mem];
      const h = new Proc(process.execPath, [SNAPFAULT_FAULTY, ...args], { SF_TEST_FAULT_DIE: '1' });
      await h.waitForStderr(/listening on /);
      // Its faults are never served: it times out, the handler must not wait with it.
      const sim = startSim(['--socket', sock, '--mem', mem, '--timeout-ms', '20000']);
      const exit = await h.waitExit(15_000);
      expect(exit.code, h.stderr).to.equal(1);
      expect(h.stderr).to.match(/a fault worker crashed \(it exited with code 71\); its VMs can no longer be served, stopping/);
      sim.proc.kill('SIGKILL');
      await sim.result;
    });
  }
});
