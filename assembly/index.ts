// The snapfault core: everything the fault path computes, in shared memory.
export * from './layout';
export { findRegion, applyRemove, isRemoved, plan } from './page_index';
export { scanZeroPages, markZeroPages } from './zero_scan';
