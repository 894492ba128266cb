// The snapfault core: everything the fault path computes, in shared memory.
export * from './layout';
export { findRegion, isRemoved, markRemoved, markPresent, isPagePresent, giveBack, markUnregistered } from './page_state';
export { zeroRuns } from './zero_ranges';
export { plan, settle, unmarkPlanned, keepFaults } from './page_index';
export { scanZeroPages, markZeroPages } from './zero_scan';
export { lz4DecodeBlock, lz4EncodeBlock, lz4Bound, LZ4_DECODE_SLACK, LZ4_TABLE_BYTES } from './lz4';
export { xxh32 } from './xxh32';
export { cacheInit, slotData, chunkBytes, loadChunk, chunkAcquire, chunkRelease, chunkLoadsHere, cacheReleaseOwner } from './chunk_cache';
export { fillFromChunk, assembleHuge, copyAssembled } from './chunk_fill';
export { prefetchPlan, prefetchDone } from './prefetch_plan';
