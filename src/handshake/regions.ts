// The mapping message Firecracker sends: parsing and validation. Accepts every
// shape from Firecracker 1.1 (no page size) through 1.7 (`page_size_kib`, in
// bytes despite its name) to 1.12+ (`page_size`), and ignores unknown fields.
import { HandshakeError } from '../errors.js';
import { parseJson64, JsonSyntaxError, type Json } from './json64.js';
import { reachesMemoryLimit, MEMORY_LIMIT_TEXT } from '../snapshot/limits.js';

/** One guest memory region, exact to the bit. */
export interface GuestRegion {
  /** Where the region starts in Firecracker's address space. */
  readonly base: bigint;
  readonly size: bigint;
  /** Where the region's bytes start in the snapshot memory file. */
  readonly offset: bigint;
  readonly pageSize: number;
}

/** A hugetlbfs page, the only size Firecracker uses besides 4 KiB. */
export const HUGE_PAGE = 2 * 1024 * 1024;
export const SUPPORTED_PAGE_SIZES: readonly number[] = [4096, HUGE_PAGE];
export const DEFAULT_PAGE_SIZE = 4096;
const U64_MAX = (1n << 64n) - 1n;

function u64Field(obj: { [key: string]: Json }, key: string, index: number): bigint | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) {
    throw new HandshakeError('shape', `region ${index}: "${key}" must be an unsigned 64-bit integer, got ${describe(v)}`);
  }
  return v;
}

function describe(v: Json): string {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  return typeof v === 'object' ? 'an object' : String(v);
}

function pageSizeOf(obj: { [key: string]: Json }, index: number): number {
  const modern = u64Field(obj, 'page_size', index);
  const legacy = u64Field(obj, 'page_size_kib', index); // bytes, despite the name
  if (modern !== undefined && legacy !== undefined && modern !== legacy) {
    throw new HandshakeError('page_size', `region ${index}: "page_size" ${modern} and "page_size_kib" ${legacy} disagree`);
  }
  const size = modern ?? legacy;
  if (size === undefined) return DEFAULT_PAGE_SIZE;
  if (!SUPPORTED_PAGE_SIZES.includes(Number(size))) {
    throw new HandshakeError('page_size', `region ${index}: page size ${size} is not supported (4096 or 2097152 bytes)`);
  }
  return Number(size);
}

/** Parses the handshake text into regions; shape errors only (see validateRegions). */
export function parseRegions(text: string, maxRegions: number): GuestRegion[] {
  let doc: Json;
  try {
    doc = parseJson64(text);
  } catch (e) {
    const why = e instanceof JsonSyntaxError ? e.message : String(e);
    throw new HandshakeError('json', `the mapping message is not valid JSON (${why})`);
  }
  if (!Array.isArray(doc)) throw new HandshakeError('shape', `the mapping message must be a JSON array of regions, got ${describe(doc)}`);
  if (doc.length === 0) throw new HandshakeError('shape', 'the mapping message lists no regions');
  if (doc.length > maxRegions) {
    throw new HandshakeError('too_many_regions', `the mapping message lists ${doc.length} regions, at most ${maxRegions} are supported`);
  }
  return doc.map((entry, index) => {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      throw new HandshakeError('shape', `region ${index} must be an object, got ${describe(entry)}`);
    }
    const base = u64Field(entry, 'base_host_virt_addr', index);
    const size = u64Field(entry, 'size', index);
    const offset = u64Field(entry, 'offset', index);
    if (base === undefined || size === undefined || offset === undefined) {
      const missing = ['base_host_virt_addr', 'size', 'offset'].filter((k) => entry[k] === undefined);
      throw new HandshakeError('shape', `region ${index} lacks ${missing.join(', ')}`);
    }
    return { base, size, offset, pageSize: pageSizeOf(entry, index) };
  });
}

/** Checks regions against each other, the snapshot's size and the memory limit. */
export function validateRegions(regions: readonly GuestRegion[], snapshotSize: bigint, snapshotName: string): void {
  regions.forEach((r, i) => {
    const ps = BigInt(r.pageSize);
    if (r.size === 0n) throw new HandshakeError('alignment', `region ${i} has size 0`);
    if (r.base === 0n) throw new HandshakeError('alignment', `region ${i} starts at address 0`);
    for (const [name, v] of [['base_host_virt_addr', r.base], ['size', r.size], ['offset', r.offset]] as const) {
      if (v % ps !== 0n) throw new HandshakeError('alignment', `region ${i}: ${name} ${v} is not a multiple of its page size ${ps}`);
    }
    if (r.base + r.size > U64_MAX) throw new HandshakeError('bounds', `region ${i} wraps around the address space`);
    // Here too, not only when the snapshot is opened: whatever the snapshot, no region may number pages past 32 bits (limits.ts).
    if (reachesMemoryLimit(r.offset + r.size)) {
      throw new HandshakeError('bounds', `region ${i} ends at byte ${r.offset + r.size} of the snapshot, 16 TiB or more: ${MEMORY_LIMIT_TEXT}`);
    }
    if (r.offset + r.size > snapshotSize) {
      throw new HandshakeError('bounds',
        `region ${i} needs bytes ${r.offset}..${r.offset + r.size} of the snapshot, but ${snapshotName} holds ${snapshotSize}: is this the snapshot this VM was taken with?`);
    }
  });
  const sorted = regions.map((r, i) => ({ r, i })).sort((a, b) => (a.r.base < b.r.base ? -1 : a.r.base > b.r.base ? 1 : 0));
  for (let k = 1; k < sorted.length; k++) {
    const prev = sorted[k - 1];
    const cur = sorted[k];
    if (prev.r.base + prev.r.size > cur.r.base) throw new HandshakeError('overlap', `regions ${prev.i} and ${cur.i} overlap in memory`);
  }
}
