// Garbage collection: mark and sweep with a grace period. Marked: every chunk
// of every snapshot, of every removed snapshot a restore still leases, and of
// nothing else. Swept: unmarked chunks untouched for the grace period, and
// none touched since the oldest put under way began (a put touches each chunk
// it reuses before it refers to it). Mark and sweep rather than reference
// counts: counts would have to be updated, crash-safely and under a lock
// shared by every host, on every put and rm; this needs nothing on the put
// path but a touch, and a gc killed midway leaves only work for the next one.
// A bucket's pack object (s3-packs.ts) is marked by any chunk in it that a
// snapshot uses: kept whole while one is, deleted once none is.
import { decodeManifest } from './manifest.js';
import { storedLength } from '../compressed/format.js';
import { decodeDigestPack, encodeDigestPack } from './digest-pack.js';
import { REGISTRATION_LIVE_MS, registrationLive, type Store } from './store.js';

export interface GcStats {
  snapshots: number;
  chunksKept: number;
  chunksDeleted: number;
  bytesDeleted: number;
  /** Unreferenced chunks spared for now: touched within the grace period or since a live put began. */
  chunksSpared: number;
  /** Pack objects (a bucket's) kept, deleted and spared, by the same rules. */
  packsKept: number;
  packsDeleted: number;
  packsSpared: number;
  /** Bytes inside the packs kept that no snapshot uses (kept for the other chunks there: nothing repacks them yet). */
  packBytesUnused: number;
  removedManifestsDeleted: number;
  seconds: number;
}

/**
 * A modification time further ahead than any clock skew between hosts is not
 * a touch: a snapfault built before native/fd.ts kept its futimens times alive
 * wrote garbage ones (year 2446) on folder stores' chunks it served, which
 * would otherwise be spared forever.
 */
const FUTURE_MS = 24 * 3600 * 1000;

export async function gc(store: Store, graceMs: number): Promise<GcStats> {
  const started = Date.now();
  const now = Date.now();
  const touchedSince = (mtimeMs: number, since: number): boolean => mtimeMs >= since && mtimeMs <= now + FUTURE_MS;
  // Registrations first: a put or restore that begins after this is covered by its touches and its lease.
  const puts = await store.listRegistrations('pending');
  const leases = await store.listRegistrations('leases');
  const leased = new Set<string>();
  for (const l of leases) {
    if (!registrationLive(l, now)) {
      await store.deleteRegistration('leases', l.id);
      continue;
    }
    const ids = l.content.identities;
    if (Array.isArray(ids)) for (const id of ids) leased.add(String(id));
  }
  let cutoff = now - graceMs;
  for (const p of puts) {
    if (!registrationLive(p, now)) {
      await store.deleteRegistration('pending', p.id);
      continue;
    }
    const startedMs = p.content.startedMs;
    cutoff = Math.min(cutoff, typeof startedMs === 'number' ? startedMs - 1000 : p.mtimeMs - REGISTRATION_LIVE_MS);
  }

  const marked = new Set<string>();
  /** Each pack some snapshot uses, with the bytes of it used (each chunk once, by its offset). */
  const markedPacks = new Map<string, Map<number, number>>();
  const mark = (bytes: Buffer): void => {
    for (const c of decodeManifest(bytes).chunks) {
      if (c.pack === null) {
        marked.add(c.name.toString('hex'));
        continue;
      }
      let used = markedPacks.get(c.pack);
      if (!used) markedPacks.set(c.pack, (used = new Map()));
      used.set(c.offset, storedLength(c.stored));
    }
  };
  const snapshots = await store.listSnapshots();
  for (const bytes of await Promise.all(snapshots.map((name) => store.readManifest(name)))) mark(bytes);
  let removedManifestsDeleted = 0;
  for (const identity of await store.listRemoved()) {
    if (leased.has(identity)) mark(await store.readRemoved(identity));
    else {
      await store.deleteRemoved(identity);
      removedManifestsDeleted++;
    }
  }
  // A gc killed between moving a chunk aside and deciding leaves it in trash: put back what may be in use.
  await store.recoverTrash((hex, mtimeMs) => marked.has(hex) || touchedSince(mtimeMs, cutoff));

  let chunksKept = 0;
  let chunksDeleted = 0;
  let bytesDeleted = 0;
  let chunksSpared = 0;
  const deleted = new Set<string>();
  const chunks = await store.listChunks();
  const unmarked: typeof chunks = [];
  for (const c of chunks) {
    if (marked.has(c.hex)) chunksKept++;
    else if (touchedSince(c.mtimeMs, cutoff)) chunksSpared++;
    else unmarked.push(c);
  }
  // Concurrently: each is a round trip or two to a bucket (the store bounds how many at once).
  await Promise.all(unmarked.map(async (c) => {
    if (!(await store.deleteChunkIfUntouched(c.hex, c.mtimeMs, cutoff))) {
      chunksSpared++;
      return;
    }
    deleted.add(c.hex);
    chunksDeleted++;
    bytesDeleted += c.bytes;
  }));
  const packs = { kept: 0, deleted: 0, spared: 0, unused: 0 };
  const deletedPacks = new Set<string>();
  await Promise.all((await store.listPacks()).map(async (p) => {
    const used = markedPacks.get(p.hex);
    if (used) {
      packs.kept++;
      packs.unused += Math.max(0, p.bytes - [...used.values()].reduce((a, b) => a + b, 0));
    } else if (touchedSince(p.mtimeMs, cutoff) || !(await store.deletePackIfUntouched(p.hex, cutoff))) packs.spared++;
    else {
      deletedPacks.add(p.hex);
      packs.deleted++;
      bytesDeleted += p.bytes;
    }
  }));
  for (const t of await store.listTemporary()) {
    if (t.mtimeMs < cutoff) await store.removeTemporary(t.key);
  }
  if (deleted.size > 0 || deletedPacks.size > 0) await pruneDigestPacks(store, deleted, deletedPacks);
  return {
    snapshots: snapshots.length, chunksKept, chunksDeleted, bytesDeleted, chunksSpared, packsKept: packs.kept, packsDeleted: packs.deleted, packsSpared: packs.spared, packBytesUnused: packs.unused,
    removedManifestsDeleted, seconds: (Date.now() - started) / 1000,
  };
}

/** Digest packs forget deleted chunks (a pack listing a missing chunk costs a put only a failed touch, but they would pile up). */
async function pruneDigestPacks(store: Store, deleted: Set<string>, deletedPacks: Set<string>): Promise<void> {
  const ppc = store.info.chunkBytes / 4096;
  for (const id of await store.listDigestPacks()) {
    const bytes = await store.readDigestPack(id);
    const records = bytes ? decodeDigestPack(bytes, ppc) : null;
    if (!records) continue;
    const kept = records.filter((r) => (r.pack === null ? !deleted.has(r.name.toString('hex')) : !deletedPacks.has(r.pack)));
    if (kept.length === records.length) continue;
    if (kept.length > 0) await store.writeDigestPack(encodeDigestPack(ppc, kept));
    await store.deleteDigestPack(id);
  }
}
