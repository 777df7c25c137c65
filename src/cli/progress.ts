/**
 * A progress bar on stderr for the chat commands' stages (cli-progress), shown only on a terminal
 * and never with --json; `stage(name, total)` returns the callback a library loop reports to.
 */
import { SingleBar } from "cli-progress";

export class Progress {
  private bar: SingleBar | null = null;
  private readonly enabled: boolean;

  constructor(json: boolean | undefined) {
    this.enabled = process.stderr.isTTY === true && !json;
  }

  /** A callback `(done, total)` for one stage, named in the bar. */
  stage(name: string): (done: number, total: number) => void {
    return (done, total) => {
      if (!this.enabled) return;
      if (this.bar === null) {
        this.bar = new SingleBar({
          format: `${name} [{bar}] {percentage}% | {value}/{total}`,
          stream: process.stderr,
          hideCursor: true,
        });
        this.bar.start(total, done);
      } else this.bar.update(done);
      if (done >= total) this.stop();
    };
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
