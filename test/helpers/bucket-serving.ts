// A snapshot put into a bucket (the project's Swift) and served from it
// through the counting proxy: the set-up, handlers and restores the serving
// tests (serve-s3, serve-s3-prefetch) share.
import { expect } from 'chai';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { SNAPFAULT } from './paths.js';
import { makeImage, type TempDir } from './images.js';
import { startSnapfault, runSim, type Proc } from './processes.js';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { decodeManifest } from '../../src/store/manifest.js';
import type { ObjectStore } from './object-store.js';
import { isChunkGet, type CountingProxy } from './counting-proxy.js';

const MiB = 1 << 20;

/** The chunk files a disk cache holds, with their sizes (none when it has no chunks folder yet). */
export function cachedChunks(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const chunks = join(dir, 'chunks');
  try {
    for (const sub of readdirSync(chunks)) for (const f of readdirSync(join(chunks, sub))) if (f.length === 64) out.set(f, statSync(join(chunks, sub, f)).size);
  } catch {
    /* not made yet */
  }
  return out;
}

export class BucketSnapshot {
  /** Handlers started, for stopHandlers(). */
  readonly handlers: Proc[] = [];
  private n = 0;

  private constructor(
    private readonly tmp: TempDir,
    private readonly os: ObjectStore,
    readonly proxy: CountingProxy,
    readonly store: string,
    /** The memory file put, which the simulator checks every page against. */
    readonly img: string,
    /** The chunks the snapshot uses. */
    readonly chunks: number,
    /** Per pack, where its chunks start and their stored lengths, in order. */
    private readonly packs: Map<string, Array<[number, number]>>,
  ) {}

  /** A `mib` MiB image put as `snap` into s3://`bucket`/p with 32 KiB chunks (many: enough to see order and sharing). */
  static async put(tmp: TempDir, os: ObjectStore, proxy: CountingProxy, bucket: string, mib: number, seed: string): Promise<BucketSnapshot> {
    const store = `s3://${bucket}/p`;
    const img = tmp.file('mem.img', makeImage(mib * MiB, { seed, zeroFraction: 0.3 }));
    const env = { ...process.env, ...os.env };
    // Packs of 1 MiB: a few dozen 32 KiB chunks each, and several packs.
    const put = spawnSync(SNAPFAULT, ['store', 'put', img, 'snap', '--chunk-kib', '32', '--pack-mib', '1', '--store', store, '--s3-endpoint', os.endpoint], { encoding: 'utf8', env });
    expect(put.status, put.stderr).to.equal(0);
    const inspect = spawnSync(SNAPFAULT, ['store', 'inspect', 'snap', '--json', '--store', store, '--s3-endpoint', os.endpoint], { encoding: 'utf8', env });
    const manifest = await os.client.send(new GetObjectCommand({ Bucket: bucket, Key: 'p/snapshots/snap' }));
    const packs = new Map<string, Array<[number, number]>>();
    for (const c of decodeManifest(Buffer.from(await manifest.Body!.transformToByteArray())).chunks) {
      if (c.pack === null) continue;
      if (!packs.has(c.pack)) packs.set(c.pack, []);
      packs.get(c.pack)!.push([c.offset, c.stored & 0x7fffffff]);
    }
    expect(packs.size, 'chunks in packs').to.be.above(1);
    return new BucketSnapshot(tmp, os, proxy, store, img, (JSON.parse(inspect.stdout) as { chunksUsed: number }).chunksUsed, packs);
  }

  /** A handler serving `snap` through the counting proxy with the disk cache `cache`: the drop-in form, or `serve`. */
  async handler(cache: string, extra: string[], serve = false): Promise<{ h: Proc; sock: string }> {
    const sock = this.tmp.file(`h${this.n++}.sock`);
    const common = ['--store', this.store, '--s3-endpoint', this.proxy.endpoint, '--cache-dir', cache, '--log-format', 'text', ...extra];
    const args = serve ? ['serve', ...common, '--socket', sock, '--mem', 'snap'] : [...common, sock, 'snap'];
    const h = await startSnapfault(args, { env: this.os.env });
    this.handlers.push(h);
    return { h, sock };
  }

  /** A drop-in restore with every touched page checked, exit 0 from both sides; returns the handler's log. */
  async restore(cache: string, simArgs: string[] = [], extra: string[] = []): Promise<string> {
    const { h, sock } = await this.handler(cache, extra);
    const sim = await runSim(['--socket', sock, '--mem', this.img, '--verify', ...simArgs]);
    const exit = await h.waitExit();
    expect(sim.code, `${sim.stderr}\n${h.stderr}`).to.equal(0);
    expect(sim.json?.mismatches).to.equal(0);
    expect(exit.code, h.stderr).to.equal(0);
    return h.stderr;
  }

  /**
   * The chunks GETs brought since the proxy's last reset, one entry a chunk
   * a GET brought: its pack's path and its range ('/bucket/p/packs/ID
   * bytes=A-B', as the proxy sees a GET of it alone). A ranged GET of
   * chunks side by side counts once for each.
   */
  chunkGets(): string[] {
    return this.proxy.seen.filter(isChunkGet).flatMap((s) => {
      const m = /^(\S+\/packs\/([0-9a-f]{32})) bytes=(\d+)-(\d+)$/.exec(s.path);
      if (!m) return [s.path];
      const [from, to] = [Number(m[3]), Number(m[4])];
      return (this.packs.get(m[2]) ?? []).filter(([o, n]) => o >= from && o + n - 1 <= to).map(([o, n]) => `${m[1]} bytes=${o}-${o + n - 1}`);
    });
  }

  /** GETs of chunks since the proxy's last reset, each one request (a run of chunks side by side is one). */
  chunkRequests(): string[] {
    return this.proxy.seen.filter(isChunkGet).map((s) => s.path);
  }

  /** After each test: the proxy lets everything through again, and every handler still running is killed and waited for. */
  async stopHandlers(): Promise<void> {
    this.proxy.gate = async () => 'pass';
    for (const h of this.handlers.splice(0)) {
      if (h.child.exitCode === null) h.kill('SIGKILL');
      await h.exited;
    }
  }
}
