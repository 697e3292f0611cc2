// The progress bar of a training run: a cli-progress bar on a terminal (step, losses,
// ms/step, ETA), or a plain line every 10 seconds when output is a file/CI.

import { SingleBar } from "cli-progress";
import type { MetricsLine } from "./metrics.js";

const fmt = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "-" : x < 1e-3 ? x.toExponential(2) : x.toFixed(4));

export class ProgressBar {
  private bar: SingleBar | null = null;
  private lastPrint = 0;
  private t0 = performance.now();
  private evalLoss: number | undefined;

  constructor(private total: number, private start: number) {
    if (process.stderr.isTTY) {
      this.bar = new SingleBar({
        stream: process.stderr,
        format: "{bar} {value}/{total} | L {loss} | L_mask {lmask} | L_obs {lobs} | eval {eval} | {ms} ms/step | ETA {eta_formatted}",
        barsize: 24,
        etaBuffer: 200,
        hideCursor: true,
      });
      this.bar.start(total, start, { loss: "-", lmask: "-", lobs: "-", eval: "-", ms: "-" });
    }
  }

  update(l: MetricsLine): void {
    if (l.eval_loss !== undefined) this.evalLoss = l.eval_loss;
    const payload = { loss: fmt(l.loss), lmask: fmt(l.loss_mask), lobs: fmt(l.loss_obs), eval: fmt(this.evalLoss), ms: l.ms.toFixed(1) };
    if (this.bar) {
      this.bar.update(l.step, payload);
      return;
    }
    const now = performance.now();
    if (now - this.lastPrint < 10000 && l.step !== this.total) return;
    this.lastPrint = now;
    const done = l.step - this.start;
    const eta = done > 0 ? ((now - this.t0) / done) * (this.total - l.step) / 1000 : NaN;
    process.stderr.write(
      `step ${l.step}/${this.total} | L ${payload.loss} | L_mask ${payload.lmask} | L_obs ${payload.lobs} | eval ${payload.eval} | ${payload.ms} ms/step | ETA ${Number.isFinite(eta) ? Math.round(eta) + "s" : "-"}\n`,
    );
  }

  stop(): void {
    this.bar?.stop();
  }
}
