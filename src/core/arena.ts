// Allocation of blocks in the shared WASM memory. Only the main thread
// allocates (the AssemblyScript runtime is not thread-safe, so the core never
// does); workers get offsets. First fit over a sorted free list, coalescing.
import { WASM_PAGE, MAX_MEMORY_PAGES } from './wasm-core.js';
import { OutOfCoreMemoryError } from '../errors.js';

interface Span {
  start: number;
  size: number;
}

const ALIGN = 64;
// Offset 0 stays unused so that 0 can mean "no block" in core tables.
const FIRST_BLOCK = WASM_PAGE;

export class Arena {
  private free: Span[] = [];
  private end = FIRST_BLOCK;
  private used = new Map<number, number>();

  constructor(private readonly memory: WebAssembly.Memory) {}

  /** A zero-filled block of at least `size` bytes, aligned to `align`. */
  alloc(size: number, align = ALIGN): number {
    const want = Math.ceil(Math.max(size, 1) / ALIGN) * ALIGN;
    for (let i = 0; i < this.free.length; i++) {
      const s = this.free[i];
      const start = Math.ceil(s.start / align) * align;
      const pad = start - s.start;
      if (s.size < pad + want) continue;
      this.free.splice(i, 1);
      if (pad > 0) this.release({ start: s.start, size: pad });
      if (s.size > pad + want) this.release({ start: start + want, size: s.size - pad - want });
      return this.take(start, want);
    }
    const start = Math.ceil(this.end / align) * align;
    if (start > this.end) this.release({ start: this.end, size: start - this.end });
    this.ensure(start + want);
    this.end = start + want;
    return this.take(start, want);
  }

  freeBlock(start: number): void {
    const size = this.used.get(start);
    if (size === undefined) throw new Error(`arena: block ${start} is not allocated`);
    this.used.delete(start);
    this.release({ start, size });
  }

  /** Bytes in live blocks. */
  get inUse(): number {
    let n = 0;
    for (const s of this.used.values()) n += s;
    return n;
  }

  private take(start: number, size: number): number {
    new Uint8Array(this.memory.buffer, start, size).fill(0);
    this.used.set(start, size);
    return start;
  }

  private release(span: Span): void {
    let i = 0;
    while (i < this.free.length && this.free[i].start < span.start) i++;
    this.free.splice(i, 0, span);
    // Coalesce with the neighbours.
    if (i + 1 < this.free.length && span.start + span.size === this.free[i + 1].start) {
      span.size += this.free[i + 1].size;
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1].start + this.free[i - 1].size === span.start) {
      this.free[i - 1].size += span.size;
      this.free.splice(i, 1);
    }
  }

  private ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes <= have) return;
    const pages = Math.ceil((bytes - have) / WASM_PAGE);
    if (have / WASM_PAGE + pages > MAX_MEMORY_PAGES) throw new OutOfCoreMemoryError(bytes);
    this.memory.grow(pages);
  }
}
