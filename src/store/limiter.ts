// At most `max` tasks at once, the rest queued in order: bounds the requests
// a store keeps in flight, and the chunks a put holds in memory waiting for
// their upload.
export class Limiter {
  private running = 0;
  private readonly queue: Array<() => void> = [];

  constructor(private readonly max: number) {}

  /** Waits for a slot; call the function it gives once done with it. */
  async acquire(): Promise<() => void> {
    if (this.running >= this.max) await new Promise<void>((r) => this.queue.push(r));
    else this.running++;
    let freed = false;
    return () => {
      if (freed) return;
      freed = true;
      const next = this.queue.shift();
      if (next) next(); // the slot passes straight to the next waiter
      else this.running--;
    };
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    const free = await this.acquire();
    try {
      return await task();
    } finally {
      free();
    }
  }
}
