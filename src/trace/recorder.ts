// A growing list of trace records in a thread's own memory (never on the
// shared heap): RECORD_WORDS u32 per record, handed over whole when the VM ends.
import { RECORD_WORDS, setRecord, type RecordKind } from './trace-file.js';

export class Recorder {
  private buf = new Uint32Array(4096 * RECORD_WORDS);
  private n = 0;

  /** `tUs`: µs since the handshake, any size (it is stored as a u64); `source`: a sourceWord. */
  push(page: number, pages: number, tUs: number, kind: RecordKind, source = 0): void {
    if ((this.n + 1) * RECORD_WORDS > this.buf.length) {
      const bigger = new Uint32Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    // Each thread reads the clock on its own: a record a hair before the handshake is taken as at it.
    setRecord(this.buf, this.n++ * RECORD_WORDS, page, pages, Math.max(0, Math.round(tUs)), kind, source);
  }

  get count(): number {
    return this.n;
  }

  /** The records so far, trimmed (a copy the caller may transfer). */
  take(): Uint32Array {
    return this.buf.slice(0, this.n * RECORD_WORDS);
  }
}
