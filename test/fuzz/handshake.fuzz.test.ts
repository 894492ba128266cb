// Fuzzing the handshake parser (fast-check): random and mutated messages never
// crash it, never hang it, and are refused with a one-line HandshakeError.
import { expect } from 'chai';
import fc from 'fast-check';
import { parseJson64 } from '../../src/handshake/json64.js';
import { parseRegions, validateRegions } from '../../src/handshake/regions.js';
import { HandshakeError } from '../../src/errors.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 3000);

function outcome(text: string): 'ok' | 'refused' {
  try {
    const regions = parseRegions(text, 64);
    validateRegions(regions, 1n << 40n, 'mem');
    return 'ok';
  } catch (e) {
    expect(e, String(e)).to.be.instanceOf(HandshakeError);
    expect((e as Error).message).to.not.include('\n');
    expect((e as Error).message.length).to.be.below(600);
    return 'refused';
  }
}

const validRegion = fc.record({
  base_host_virt_addr: fc.bigInt({ min: 1n, max: (1n << 47n) - 1n }).map((b) => b << 12n),
  size: fc.bigInt({ min: 1n, max: 1n << 20n }).map((b) => b << 12n),
  offset: fc.bigInt({ min: 0n, max: 1n << 20n }).map((b) => b << 12n),
  page_size: fc.constantFrom(4096, 2097152, undefined),
  page_size_kib: fc.constantFrom(4096, 2097152, undefined),
});

function render(r: Record<string, unknown>): string {
  return `{${Object.entries(r).filter(([, v]) => v !== undefined).map(([k, v]) => `"${k}":${String(v)}`).join(',')}}`;
}

describe('fuzz: handshake', function () {
  this.timeout(120_000);

  it('arbitrary strings are refused cleanly, never a crash', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => {
      outcome(s);
    }), { numRuns: RUNS });
  });

  it('arbitrary JSON values are refused cleanly unless they are region arrays', () => {
    fc.assert(fc.property(fc.json({ maxDepth: 4 }), (s) => {
      outcome(s);
    }), { numRuns: RUNS });
  });

  it('mutated valid handshakes: refused cleanly or parsed to exactly what they say', () => {
    fc.assert(fc.property(fc.array(validRegion, { minLength: 1, maxLength: 4 }), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat(3),
      (regions, pos, byte, op) => {
        const text = `[${regions.map(render).join(',')}]`;
        const at = pos % text.length;
        const mutated = op === 0 ? text.slice(0, at) + String.fromCharCode(byte) + text.slice(at + 1)
          : op === 1 ? text.slice(0, at)
            : op === 2 ? text.slice(0, at) + String.fromCharCode(byte) + text.slice(at)
              : text.slice(0, at) + text.slice(at + 1);
        if (outcome(mutated) === 'ok') {
          // Whatever was accepted is exactly what the text says (64-bit exact).
          const doc = parseJson64(mutated) as Array<Record<string, bigint>>;
          const parsed = parseRegions(mutated, 64);
          parsed.forEach((r, i) => {
            expect(r.base).to.equal(doc[i].base_host_virt_addr);
            expect(r.size).to.equal(doc[i].size);
            expect(r.offset).to.equal(doc[i].offset);
          });
        }
      }), { numRuns: RUNS });
  });

  it('json64 agrees with JSON.parse on every valid document (integers exact)', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
      const text = JSON.stringify(v);
      const ours = parseJson64(text);
      const normalise = (x: unknown): unknown => {
        if (typeof x === 'bigint') return Number(x);
        if (Array.isArray(x)) return x.map(normalise);
        if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, normalise(y)]));
        return Object.is(x, -0) ? 0 : x;
      };
      expect(normalise(ours)).to.deep.equal(normalise(JSON.parse(text)));
    }), { numRuns: RUNS });
  });

  it('deep nesting and huge inputs end quickly', () => {
    const t = Date.now();
    outcome('['.repeat(100_000));
    outcome(`[${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}]`);
    outcome(`"${'x'.repeat(1_000_000)}`);
    outcome(`[${'1,'.repeat(200_000)}1]`);
    expect(Date.now() - t).to.be.below(5000);
  });
});
