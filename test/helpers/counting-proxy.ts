// A plain HTTP proxy in front of the object store that writes down every
// request it passes on: how the S3 tests count what a command sent (PUTs of
// chunks, copies) without trusting the command's own report. Headers go
// through unchanged, so signatures (which cover the Host header) still hold.
// A gate can hold requests back (a chunk slow to come) or refuse them (a store
// that stopped answering), to test what waits on what.
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Seen {
  method: string;
  /** The key's path, and for a ranged GET its range after a space ('/b/p/packs/ab.. bytes=0-4095'): one chunk's GET, in a pack. */
  path: string;
  /** A server-side copy (a PUT with x-amz-copy-source): a touch, not an upload. */
  copy: boolean;
  /** Its User-Agent header ('' without one): the SDK names itself there. */
  agent: string;
}

/** A GET of a chunk: an object of its own, or its place in a pack (a ranged GET). */
export function isChunkGet(s: Seen): boolean {
  return s.method === 'GET' && (s.path.includes('/chunks/') || s.path.includes('/packs/'));
}

/** What the gate does with a request: pass it on (perhaps after a wait), answer 503 itself, or pass it on and cut the answer off halfway (the connection dropped). */
export type Gate = (s: Seen) => Promise<'pass' | 'refuse' | 'cut'>;

export class CountingProxy {
  /** Every request goes through it; by default all pass at once. */
  gate: Gate = async () => 'pass';

  private constructor(private readonly server: Server, readonly endpoint: string, readonly seen: Seen[], readonly closedEarly: string[]) {}

  /**
   * Holds back every GET of the first chunk asked for (its path, once asked)
   * until release(); the rest pass. `onlyTheFirstRequest`: only the very first
   * GET is held, later ones of the same chunk pass (a request stuck on the way).
   */
  holdFirstChunkGet({ onlyTheFirstRequest = false } = {}): { path: () => string; release: () => void } {
    let heldPath = '';
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    this.gate = async (s) => {
      if (!isChunkGet(s)) return 'pass';
      if (heldPath && onlyTheFirstRequest) return 'pass';
      heldPath ||= s.path;
      if (s.path === heldPath) await held;
      return 'pass';
    };
    return { path: () => heldPath, release };
  }

  static async start(target: string): Promise<CountingProxy> {
    const to = new URL(target);
    const seen: Seen[] = [];
    /** Paths of requests whose client closed the connection before the whole answer was sent (it gave up on them). */
    const closedEarly: string[] = [];
    let proxy: CountingProxy | null = null;
    const server = createServer((req, res) => {
      const range = req.headers.range === undefined ? '' : ` ${req.headers.range}`;
      const s: Seen = {
        method: req.method ?? '', path: decodeURIComponent((req.url ?? '').split('?')[0]) + range, copy: req.headers['x-amz-copy-source'] !== undefined, agent: req.headers['user-agent'] ?? '',
      };
      seen.push(s);
      // A client that gave up on a held request (a hedge won, a deadline passed) has closed it: nothing to send it.
      res.on('error', () => undefined);
      res.on('close', () => {
        if (!res.writableFinished) closedEarly.push(s.path);
      });
      const forward = (cut: boolean): void => {
        if (res.destroyed) return;
        const out = request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          if (!cut) {
            answer.pipe(res);
            return;
          }
          // Half the body, then the connection goes: the client has the headers' full length and half the bytes.
          const parts: Buffer[] = [];
          answer.on('data', (d: Buffer) => parts.push(d));
          answer.on('end', () => {
            const body = Buffer.concat(parts);
            res.write(body.subarray(0, body.length >> 1), () => res.destroy());
          });
        });
        out.on('error', (e) => {
          res.writeHead(502);
          res.end(e.message);
        });
        req.pipe(out);
      };
      void (proxy?.gate(s) ?? Promise.resolve('pass' as const)).then((what) => {
        if (what !== 'refuse') return forward(what === 'cut');
        res.writeHead(503, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>held down by the test</Message></Error>');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    proxy = new CountingProxy(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, closedEarly);
    return proxy;
  }

  /** GETs of keys under `part` (e.g. '/chunks/'). */
  gets(part: string): Seen[] {
    return this.seen.filter((s) => s.method === 'GET' && s.path.includes(part));
  }

  /** Uploads (PUTs that are not copies) of keys under `part` (e.g. '/chunks/'). */
  uploads(part: string): number {
    return this.seen.filter((s) => s.method === 'PUT' && !s.copy && s.path.includes(part)).length;
  }

  reset(): void {
    this.seen.length = 0;
    this.closedEarly.length = 0;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
