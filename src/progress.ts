// A progress bar on stderr, only when stderr is a terminal.
export interface Progress {
  update(done: number, total: number): void;
  finish(): void;
}

export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return { update: () => undefined, finish: () => undefined };
  let last = 0;
  let shown = false;
  const started = Date.now();
  const draw = (done: number, total: number): void => {
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const mib = (n: number): string => (n / 1048576).toFixed(0);
    const secs = (Date.now() - started) / 1000;
    const rate = secs > 0 ? ` ${(done / 1048576 / secs).toFixed(0)} MiB/s` : '';
    stream.write(`\r${label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${mib(done)}/${mib(total)} MiB${rate}  `);
    shown = true;
  };
  return {
    update(done, total) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      draw(done, total);
    },
    finish() {
      if (shown) stream.write('\n');
    },
  };
}
