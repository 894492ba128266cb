// The policies as the prefetch worker runs them, one instance per VM:
// replay and all walk precomputed ranges; readahead and custom policies are
// WebAssembly modules behind the interface of policy-abi.ts.
import { POLICY_ABI_VERSION, POLICY_MAX_RANGES } from './policy-abi.js';
import { PolicyError } from '../errors.js';
import type { RangeSink } from './range-queue.js';
import type { PreparedPolicy } from './policy-spec.js';

export interface PrefetchPolicy {
  /** The guest faulted on snapshot page `page`; urgent ranges go to `out`. */
  onFault(page: number, tUs: number, out: RangeSink): void;
  /** The worker has spare capacity: background ranges go to `out`; false when there are no more. */
  idle(out: RangeSink): boolean;
}

/** Ranges fetched per idle call, so a long list does not fill the queue at once. */
const IDLE_BATCH = 64;
/** The sweep of `all`: this many pages per range. */
const SWEEP_PAGES = 512;

/** Installs precomputed ranges in order, then (all) every page of the snapshot. */
class ListPolicy implements PrefetchPolicy {
  private next = 0;
  private sweep = 0;

  constructor(private readonly ranges: Uint32Array, private readonly sweepPages: number) {}

  onFault(): void {}

  idle(out: RangeSink): boolean {
    for (let i = 0; i < IDLE_BATCH; i++) {
      if (this.next < this.ranges.length) {
        if (!out.push(this.ranges[this.next], this.ranges[this.next + 1])) return true;
        this.next += 2;
      } else if (this.sweep < this.sweepPages) {
        const n = Math.min(SWEEP_PAGES, this.sweepPages - this.sweep);
        if (!out.push(this.sweep, n)) return true;
        this.sweep += n;
      } else {
        return i > 0;
      }
    }
    return true;
  }
}

interface PolicyExports {
  memory: WebAssembly.Memory;
  sf_abi_version(): number;
  sf_init(pages: number): number;
  sf_fault(page: number, tUs: number): number;
  sf_idle?: () => number;
}

/** A policy module: readahead, or the user's own. */
class WasmPolicy implements PrefetchPolicy {
  private readonly x: PolicyExports;
  private readonly ranges: number;

  constructor(module: WebAssembly.Module, private readonly name: string, private readonly pages: number, present: (page: number) => number) {
    const abort = (): never => {
      throw new PolicyError(`prefetch policy ${name} aborted`);
    };
    const instance = new WebAssembly.Instance(module, { env: { abort, sf_present: present } });
    this.x = instance.exports as unknown as PolicyExports;
    const v = this.x.sf_abi_version();
    if (v !== POLICY_ABI_VERSION) throw new PolicyError(`prefetch policy ${name} speaks interface version ${v}; this snapfault speaks ${POLICY_ABI_VERSION}`);
    this.ranges = this.x.sf_init(pages) >>> 0;
  }

  onFault(page: number, tUs: number, out: RangeSink): void {
    this.collect(this.call(() => this.x.sf_fault(page, tUs)), out);
  }

  idle(out: RangeSink): boolean {
    const idle = this.x.sf_idle;
    if (!idle) return false;
    const n = this.call(idle);
    if (n === 0) return false;
    this.collect(n, out);
    return true;
  }

  /** Runs a policy export; a trap becomes a PolicyError naming the policy. */
  private call(f: () => number): number {
    try {
      return f();
    } catch (e) {
      if (e instanceof PolicyError) throw e;
      throw new PolicyError(`prefetch policy ${this.name} trapped (${(e as Error).message})`);
    }
  }

  private collect(count: number, out: RangeSink): void {
    const n = Math.min(count >>> 0, POLICY_MAX_RANGES);
    if (n === 0) return;
    const buf = this.x.memory.buffer;
    if (this.ranges + n * 8 > buf.byteLength || this.ranges % 4 !== 0) {
      throw new PolicyError(`prefetch policy ${this.name} returned its ranges at ${this.ranges}, outside its memory or unaligned`);
    }
    const v = new Uint32Array(buf, this.ranges, n * 2);
    for (let i = 0; i < n; i++) {
      const first = v[2 * i];
      if (first >= this.pages) continue; // past the snapshot: ignored
      out.push(first, Math.min(v[2 * i + 1], this.pages - first));
    }
  }
}

/** A VM's instance of the server's policy. `present` answers sf_present. */
export function instantiatePolicy(p: PreparedPolicy, pages: number, present: (page: number) => number): PrefetchPolicy {
  switch (p.kind) {
    case 'replay':
      return new ListPolicy(p.ranges, 0);
    case 'all':
      return new ListPolicy(p.ranges, pages);
    case 'wasm':
      return new WasmPolicy(p.module, p.name, pages, present);
  }
}
