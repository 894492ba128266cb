// Prefetch holds back while Firecracker loads (src/vm/firecracker-load.ts): a
// process named firecracker without a vCPU thread is loading; once a thread
// is named `fc_vcpu 0` (as Firecracker names them right before the resume),
// or for any other process, it is not. The stand-in is node itself, run
// through a link named firecracker, renaming one of its threads.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import { TempDir } from '../helpers/images.js';
import { firecrackerLoading } from '../../src/vm/firecracker-load.js';

const STANDIN = `
const { Worker } = require('node:worker_threads');
const { readdirSync, readFileSync, writeFileSync } = require('node:fs');
new Worker('setInterval(() => {}, 1000)', { eval: true });
process.stdin.once('data', () => {
  // Any thread but the main one becomes the vCPU thread.
  const tid = readdirSync('/proc/self/task').find((t) => t !== String(process.pid));
  writeFileSync('/proc/self/task/' + tid + '/comm', 'fc_vcpu 0');
  process.stdout.write('renamed\\n');
});
process.stdout.write('ready\\n');
`;

describe('prefetch waits for the end of Firecracker\'s load', function () {
  this.timeout(20_000);
  const tmp = new TempDir();
  after(() => tmp.remove());

  it('a Firecracker without vCPU threads is loading; once one is named fc_vcpu, or for any other process, not', async () => {
    const link = tmp.file('firecracker');
    symlinkSync(process.execPath, link);
    const child = spawn(link, ['-e', STANDIN], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const line = (): Promise<string> => new Promise((r) => child.stdout.once('data', (d: Buffer) => r(d.toString().trim())));
      expect(await line()).to.equal('ready');
      expect(firecrackerLoading(child.pid!)).to.equal(true);
      child.stdin.write('go\n');
      expect(await line()).to.equal('renamed');
      expect(firecrackerLoading(child.pid!)).to.equal(false);
      expect(firecrackerLoading(process.pid)).to.equal(false); // not a Firecracker
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((r) => child.once('exit', r));
    expect(firecrackerLoading(child.pid!)).to.equal(false); // gone
  });
});
