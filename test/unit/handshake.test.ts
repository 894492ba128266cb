import { expect } from 'chai';
import { parseJson64, jsonLooksComplete } from '../../src/handshake/json64.js';
import { parseRegions, validateRegions, HUGE_PAGE } from '../../src/handshake/regions.js';
import { HandshakeError } from '../../src/errors.js';

const region = (o: Record<string, unknown>): string =>
  JSON.stringify(o).replace(/"__big(\d+)"/g, '$1');

function refused(fn: () => unknown, reason: string, text?: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(HandshakeError);
    expect((e as HandshakeError).reason).to.equal(reason);
    if (text) expect((e as Error).message).to.match(text);
    expect((e as Error).message).to.not.include('\n');
    return;
  }
  expect.fail(`expected a ${reason} refusal`);
}

describe('json64', () => {
  it('keeps integers above 2^53 exact', () => {
    const v = parseJson64('[18446744073709551615, 9007199254740993, -1, 1.5, 2e3]') as unknown[];
    expect(v[0]).to.equal(18446744073709551615n);
    expect(v[1]).to.equal(9007199254740993n);
    expect(v[2]).to.equal(-1n);
    expect(v[3]).to.equal(1.5);
    expect(v[4]).to.equal(2000);
  });

  it('parses strings, escapes, nesting, literals', () => {
    expect(parseJson64('{"a":"x\\"y\\u0041","b":[true,false,null],"c":{}}')).to.deep.equal(
      Object.assign(Object.create(null), { a: 'x"yA', b: [true, false, null], c: Object.create(null) }));
  });

  for (const bad of ['', '[', '[1,]', '{"a"}', '[01]', '[1] x', '"\u0001"', '[-]', '{"a":1,}', 'nul', '[1 2]']) {
    it(`rejects ${JSON.stringify(bad)}`, () => {
      expect(() => parseJson64(bad)).to.throw(/at byte \d+/);
    });
  }

  it('bounds nesting depth', () => {
    expect(() => parseJson64('['.repeat(1000) + ']'.repeat(1000))).to.throw(/nested too deeply/);
  });

  it('tells a complete message from one still arriving', () => {
    expect(jsonLooksComplete('[{"a":"]"}')).to.equal(false);
    expect(jsonLooksComplete('[{"a":"]"}]')).to.equal(true);
    expect(jsonLooksComplete('[{"a":"\\"]"')).to.equal(false);
    expect(jsonLooksComplete('  garbage')).to.equal(true);
  });
});

describe('handshake regions', () => {
  const base = 140234567680000;
  const MiB = 1 << 20;

  it('accepts the Firecracker 1.1-1.6 shape (no page size): 4 KiB pages', () => {
    const r = parseRegions(`[${region({ base_host_virt_addr: base, size: 64 * MiB, offset: 0 })}]`, 64);
    expect(r).to.deep.equal([{ base: BigInt(base), size: BigInt(64 * MiB), offset: 0n, pageSize: 4096 }]);
  });

  it('accepts page_size_kib (bytes, despite the name), page_size, and both when they agree', () => {
    for (const fields of [{ page_size_kib: 2097152 }, { page_size: 2097152 }, { page_size: 2097152, page_size_kib: 2097152 }]) {
      const r = parseRegions(`[${region({ base_host_virt_addr: base, size: 64 * MiB, offset: 0, ...fields })}]`, 64);
      expect(r[0].pageSize).to.equal(2097152);
    }
  });

  it('ignores unknown fields and handles messages far over 1 KiB', () => {
    const regs = Array.from({ length: 40 }, (_, i) =>
      region({ base_host_virt_addr: base + i * 64 * MiB, size: 64 * MiB, offset: i * 64 * MiB, page_size: 4096, future_field: { x: [1, 2] }, note: 'x'.repeat(100) }));
    const text = `[${regs.join(',')}]`;
    expect(text.length).to.be.above(4096);
    expect(parseRegions(text, 64)).to.have.length(40);
  });

  it('keeps 64-bit addresses exact', () => {
    const text = `[${region({ base_host_virt_addr: '__big18446744073709547520', size: 4096, offset: 0 })}]`;
    expect(parseRegions(text, 64)[0].base).to.equal(18446744073709547520n);
  });

  it('refuses disagreeing page sizes, unsupported page sizes', () => {
    refused(() => parseRegions(`[${region({ base_host_virt_addr: base, size: 4096, offset: 0, page_size: 4096, page_size_kib: 2097152 })}]`, 64), 'page_size', /disagree/);
    refused(() => parseRegions(`[${region({ base_host_virt_addr: base, size: 4096, offset: 0, page_size: 8192 })}]`, 64), 'page_size', /not supported/);
  });

  it('refuses malformed messages with a reason', () => {
    refused(() => parseRegions('not json', 64), 'json', /not valid JSON/);
    refused(() => parseRegions('{"a":1}', 64), 'shape', /JSON array/);
    refused(() => parseRegions('[]', 64), 'shape', /no regions/);
    refused(() => parseRegions('[1]', 64), 'shape', /must be an object/);
    refused(() => parseRegions(`[${region({ size: 4096, offset: 0 })}]`, 64), 'shape', /lacks base_host_virt_addr/);
    refused(() => parseRegions(`[${region({ base_host_virt_addr: -4096, size: 4096, offset: 0 })}]`, 64), 'shape', /unsigned 64-bit/);
    refused(() => parseRegions(`[${region({ base_host_virt_addr: 1.5, size: 4096, offset: 0 })}]`, 64), 'shape');
    refused(() => parseRegions(`[${region({ base_host_virt_addr: '4096', size: 4096, offset: 0 })}]`, 64), 'shape');
    refused(() => parseRegions(`[${region({ base_host_virt_addr: '__big18446744073709551616', size: 4096, offset: 0 })}]`, 64), 'shape');
    const many = Array.from({ length: 65 }, (_, i) => region({ base_host_virt_addr: base + i * 4096, size: 4096, offset: i * 4096 }));
    refused(() => parseRegions(`[${many.join(',')}]`, 64), 'too_many_regions');
  });

  it('validates alignment, size, overlap and bounds', () => {
    const r = (b: number | bigint, size: number, offset: number, pageSize = 4096) => ({ base: BigInt(b), size: BigInt(size), offset: BigInt(offset), pageSize });
    const snap = BigInt(128 * MiB);
    validateRegions([r(base, 64 * MiB, 0), r(base + 128 * MiB, 64 * MiB, 64 * MiB)], snap, 'mem');
    refused(() => validateRegions([r(base + 100, 4096, 0)], snap, 'mem'), 'alignment', /base_host_virt_addr/);
    refused(() => validateRegions([r(base, 4000, 0)], snap, 'mem'), 'alignment', /size/);
    refused(() => validateRegions([r(base, 4096, 10)], snap, 'mem'), 'alignment', /offset/);
    refused(() => validateRegions([r(base, 0, 0)], snap, 'mem'), 'alignment', /size 0/);
    refused(() => validateRegions([r(0, 4096, 0)], snap, 'mem'), 'alignment', /address 0/);
    refused(() => validateRegions([r(base, 4096, 0, 2097152)], snap, 'mem'), 'alignment');
    refused(() => validateRegions([r(base, 64 * MiB, 0), r(base + 32 * MiB, 64 * MiB, 64 * MiB)], snap, 'mem'), 'overlap', /regions 0 and 1/);
    refused(() => validateRegions([r(base, 64 * MiB, 96 * MiB)], snap, 'mem'), 'bounds', /mem holds 134217728/);
    refused(() => validateRegions([r((1n << 64n) - 4096n, 8192, 0)], snap, 'mem'), 'bounds', /wraps/);
  });

  it('refuses regions reaching 16 TiB of the snapshot (2^32 pages of 4 KiB), whatever the snapshot holds', () => {
    const r = (offset: bigint, size: bigint, pageSize = 4096) => ({ base: 0x7f0000000000n, size, offset, pageSize });
    const TiB16 = 1n << 44n;
    const huge = 1n << 50n; // a snapshot size that would let every region through
    // Up to 2^32 - 1 pages: both a page number and a page count still fit a u32.
    validateRegions([r(TiB16 - 8192n, 4096n)], huge, 'mem');
    validateRegions([r(0n, TiB16 - 2n * BigInt(MiB), HUGE_PAGE)], huge, 'mem');
    refused(() => validateRegions([r(TiB16 - 4096n, 4096n)], huge, 'mem'), 'bounds', /region 0 ends at byte 17592186044416 of the snapshot, 16 TiB or more: .*2\^32 pages/);
    refused(() => validateRegions([r(0n, TiB16)], huge, 'mem'), 'bounds', /16 TiB or more/);
    refused(() => validateRegions([r(TiB16 - 2n * BigInt(MiB), 4n * BigInt(MiB), HUGE_PAGE)], huge, 'mem'), 'bounds', /16 TiB or more/);
    // Named before the snapshot's own size: the limit is what no snapshot can lift.
    refused(() => validateRegions([r(0n, TiB16)], BigInt(128 * MiB), 'mem'), 'bounds', /16 TiB or more/);
  });
});
