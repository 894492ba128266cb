// The pages of a put that are new, read by the main thread: the put workers
// digest the memory file from their own reads, so only the new pages (all of
// a first put, a few of a later one) are read again here, a run of
// neighbouring new pages at a time, into one buffer used over and over.
import { readExactlyAt, endedEarly } from '../snapshot/open-file.js';

const PAGE = 4096;
/** The most pages read at once. */
const RUN_PAGES = 64;

export class NewPageReader {
  private readonly run = Buffer.allocUnsafeSlow(RUN_PAGES * PAGE);
  private first = -1;
  private count = 0;

  constructor(private readonly fd: number, private readonly path: string) {}

  /**
   * Page `p`'s bytes, valid until the next call. When not read yet, it is
   * read with the pages after it that `alsoNew` says will be wanted next.
   */
  page(p: number, alsoNew: (q: number) => boolean): Buffer {
    if (p < this.first || p >= this.first + this.count) {
      let n = 1;
      while (n < RUN_PAGES && alsoNew(p + n)) n++;
      this.read(p, n);
    }
    return this.run.subarray((p - this.first) * PAGE, (p - this.first + 1) * PAGE);
  }

  private read(p: number, n: number): void {
    this.first = -1;
    const ended = readExactlyAt(this.fd, this.run, n * PAGE, p * PAGE);
    if (ended !== null) throw endedEarly(this.path, ended);
    this.first = p;
    this.count = n;
  }
}
