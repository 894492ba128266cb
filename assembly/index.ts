// The snapfault core: everything the fault path computes, in shared memory.
export * from './layout';
export { findRegion, applyRemove, isRemoved, plan, unmarkPlanned } from './page_index';
export { scanZeroPages, markZeroPages } from './zero_scan';
export { lz4DecodeBlock, lz4EncodeBlock, lz4Bound, LZ4_DECODE_SLACK, LZ4_TABLE_BYTES } from './lz4';
export { xxh32 } from './xxh32';
export { cacheInit, slotData, chunkBytes, loadChunk, chunkAcquire, chunkRelease } from './chunk_cache';
export { fillFromChunk, unmarkFilled, assembleHuge } from './chunk_fill';
export { prefetchPlan, prefetchDone, markPresent, isPagePresent } from './prefetch_plan';
