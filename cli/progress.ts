/**
 * A one-line progress bar on stderr. On a terminal it redraws in place (at most ~10 times a
 * second); elsewhere (pipes, CI logs) it prints only the final line, so logs are not flooded.
 *
 * @example
 * ```ts
 * const bar = new ProgressBar('uploading', size);
 * stream.on('data', (c) => bar.tick(c.length));
 * bar.done();
 * ```
 */
export class ProgressBar {
  private done_ = 0;
  private lastDraw = 0;
  private readonly started = Date.now();

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly width = 30,
  ) {}

  tick(bytes: number): void {
    this.done_ += bytes;
    if (this.stream.isTTY && Date.now() - this.lastDraw > 100) {
      this.lastDraw = Date.now();
      this.stream.write(`\r${this.line()}`);
    }
  }

  done(): void {
    this.stream.write(
      `${this.stream.isTTY ? '\r' : ''}${this.line()} in ${((Date.now() - this.started) / 1000).toFixed(1)} s\n`,
    );
  }

  private line(): string {
    const ratio = this.total > 0 ? Math.min(this.done_ / this.total, 1) : 1;
    const filled = Math.round(ratio * this.width);
    const mb = (n: number): string => (n / 1024 / 1024).toFixed(1);
    return `${this.label} [${'#'.repeat(filled)}${'-'.repeat(this.width - filled)}] ${Math.round(ratio * 100)}% ${mb(this.done_)}/${mb(this.total)} MiB`;
  }
}
