// A growing list of trace records in a thread's own memory (never on the
// shared heap): four u32 per record, handed over whole when the VM ends.
import { RECORD_WORDS, type RecordKind } from './trace-file.js';

export class Recorder {
  private buf = new Uint32Array(4096 * RECORD_WORDS);
  private n = 0;

  push(page: number, pages: number, tUs: number, kind: RecordKind): void {
    if ((this.n + 1) * RECORD_WORDS > this.buf.length) {
      const bigger = new Uint32Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    const o = this.n++ * RECORD_WORDS;
    this.buf[o] = page;
    this.buf[o + 1] = pages;
    this.buf[o + 2] = tUs;
    this.buf[o + 3] = kind;
  }

  get count(): number {
    return this.n;
  }

  /** The records so far, trimmed (a copy the caller may transfer). */
  take(): Uint32Array {
    return this.buf.slice(0, this.n * RECORD_WORDS);
  }
}
