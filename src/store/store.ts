// What the store's commands (put, ls, inspect, verify, rm, flatten, gc) need
// of a store, whatever keeps it: a folder (folder-backend.ts) or an S3 bucket
// (s3-store.ts). Async because a bucket answers over the network. The layout
// behind it is the same in both (docs/store.md; what differs in a bucket:
// docs/store-s3.md): chunks named by SHA-256, manifests by snapshot name,
// digest packs, registrations, removed manifests.
import { hostname } from 'node:os';
import { StoreError, UsageError } from '../errors.js';
import { storedLength } from '../compressed/format.js';

export const STORE_FORMAT = 'snapfault-store';
export const STORE_VERSION = 1;
/** A registration (a put under way, a restore reading the store) is alive while it is touched this recently. */
export const REGISTRATION_LIVE_MS = 120_000;
/** How often a registration is touched while its process works. */
export const HEARTBEAT_MS = 10_000;

export interface StoreInfo {
  format: string;
  version: number;
  chunkBytes: number;
  pageBytes: number;
}

export interface ChunkFile {
  hex: string;
  bytes: number;
  mtimeMs: number;
}

export interface Registration {
  id: string;
  mtimeMs: number;
  /** What the registrant wrote, with its host and pid. */
  content: Record<string, unknown> & { host?: string; pid?: number };
}

export type RegistrationKind = 'pending' | 'leases';

export interface Held {
  id: string;
  release: () => Promise<void>;
}

export interface StoreUsage {
  /** Chunks kept as objects (files) of their own, and pack objects (a bucket's). */
  chunks: number;
  packs: number;
  /** Bytes of both. */
  chunkBytes: number;
  metadataBytes: number;
}

/** Where a chunk is: its name, and the pack object holding it (null: an object or file of its own) with its place and stored length there. */
export interface ChunkAt {
  hex: string;
  pack: string | null;
  offset: number;
  length: number;
}

/** Where a chunk just written went (its pack is stored once flushChunks resolves). */
export interface ChunkPlace {
  pack: string | null;
  offset: number;
}

/** A manifest's (or digest pack's) chunk record as a place to read, touch or look up. */
export function chunkAt(r: { name: Buffer; stored: number; pack: string | null; offset: number }): ChunkAt {
  return { hex: r.name.toString('hex'), pack: r.pack, offset: r.offset, length: storedLength(r.stored) };
}

export interface Store {
  /** How messages name the store: its folder, or s3://bucket/prefix. */
  readonly root: string;
  readonly info: StoreInfo;

  /** Marks a chunk (a packed one: its pack) as in use now (gc spares what was touched within its grace period); false when it does not exist. */
  touchChunk(at: ChunkAt): Promise<boolean>;
  /**
   * Writes a chunk: where it went, or null when one of that name was there
   * already (then touched). A bucket that packs chunks (s3-packs.ts) places
   * it at once and stores it with its pack: flushChunks before committing.
   */
  writeChunk(hex: string, bytes: Uint8Array): Promise<ChunkPlace | null>;
  /** Resolves once every chunk writeChunk placed is stored; rejects with the first write that failed. */
  flushChunks(): Promise<void>;
  /** `signal`: abandons the read (a hedge that lost, a deadline passed). */
  readChunk(at: ChunkAt, signal?: AbortSignal): Promise<Buffer>;
  chunkExists(at: ChunkAt): Promise<boolean>;
  /** Chunks kept as objects (files) of their own. */
  listChunks(): Promise<ChunkFile[]>;
  /** Pack objects (hex: the pack's id); a folder store has none. */
  listPacks(): Promise<ChunkFile[]>;
  /** Deletes a pack gc found unused unless it was touched since `cutoffMs`: true when deleted. */
  deletePackIfUntouched(id: string, cutoffMs: number): Promise<boolean>;

  /** Leftovers of killed puts and gcs (temporary files, manifest claims), with their age. */
  listTemporary(): Promise<Array<{ key: string; mtimeMs: number }>>;
  removeTemporary(key: string): Promise<void>;
  /** Deletes a chunk gc found unused unless it was touched since gc listed it: true when deleted. */
  deleteChunkIfUntouched(hex: string, listedMtimeMs: number, cutoffMs: number): Promise<boolean>;
  /** Chunks a gc killed mid-delete left aside; puts back those `keep` says, deletes the rest. */
  recoverTrash(keep: (hex: string, mtimeMs: number) => boolean): Promise<void>;
  /** Puts back a chunk a gc moved aside while a put was confirming it: true when it was there. */
  restoreFromTrash(hex: string): Promise<boolean>;

  hasSnapshot(name: string): Promise<boolean>;
  readManifest(name: string): Promise<Buffer>;
  /** Makes `name` refer to the manifest once everything it refers to is stored; refused if the name is taken. */
  commitManifest(name: string, bytes: Buffer): Promise<void>;
  listSnapshots(): Promise<string[]>;
  /** Takes the name away; the manifest is kept under its identity while restores lease it (gc deletes it after). */
  retireManifest(name: string, identity: string): Promise<void>;
  listRemoved(): Promise<string[]>;
  readRemoved(identity: string): Promise<Buffer>;
  deleteRemoved(identity: string): Promise<void>;

  writeDigestPack(bytes: Buffer): Promise<string>;
  listDigestPacks(): Promise<string[]>;
  /** null when removed by a gc meanwhile. */
  readDigestPack(id: string): Promise<Buffer | null>;
  deleteDigestPack(id: string): Promise<void>;

  /** Registers a put under way or a restore reading the store, kept fresh until released: gc spares what it may use. */
  register(kind: RegistrationKind, fields: Record<string, unknown>): Promise<Held>;
  listRegistrations(kind: RegistrationKind): Promise<Registration[]>;
  deleteRegistration(kind: RegistrationKind, id: string): Promise<void>;

  /** Bytes the store holds: chunks, and the rest (manifests, dedup index). */
  usage(): Promise<StoreUsage>;
  /** Lets go of connections and timers. */
  close(): Promise<void>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isSnapshotName(name: string): boolean {
  return NAME.test(name);
}

export function checkSnapshotName(name: string): void {
  if (!NAME.test(name)) throw new UsageError(`"${name}" is not a snapshot name: use letters, digits, '.', '_' and '-' (up to 128, not starting with '.' or '-')`);
}

/** store.json's content, checked: what every backend keeps at the store's root. */
export function parseStoreInfo(root: string, text: string): StoreInfo {
  let info: StoreInfo;
  try {
    info = JSON.parse(text) as StoreInfo;
  } catch {
    throw new StoreError(root, 'store.json is damaged (not JSON)');
  }
  if (info.format !== STORE_FORMAT) throw new StoreError(root, 'store.json is not a snapfault store\'s');
  if (info.version !== STORE_VERSION) throw new StoreError(root, `is a store of version ${info.version}; this snapfault reads version ${STORE_VERSION}: upgrade snapfault`);
  if (!Number.isInteger(info.chunkBytes) || info.chunkBytes % 4096 !== 0 || info.chunkBytes < 4096 || info.chunkBytes > 1 << 20) throw new StoreError(root, 'store.json has an impossible chunk size');
  return info;
}

/**
 * Whether a registration still stands for a process at work: touched within
 * REGISTRATION_LIVE_MS, and, when made on this host, by a process still alive
 * (so a put killed here is known dead at once, not two minutes later).
 */
export function registrationLive(r: Registration, now = Date.now()): boolean {
  if (now - r.mtimeMs >= REGISTRATION_LIVE_MS) return false;
  if (r.content.host !== hostname() || typeof r.content.pid !== 'number') return true;
  try {
    process.kill(r.content.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
