// The plateau-and-drop criterion used to judge a run (the default preset's
// acceptance, the drop-search table): on a moving average of L_mask,
// - plateau: the longest stretch of steps with L_mask within ±15% of r/9,
// - drop: the first step after the plateau's start where L_mask < 0.2·r/9.

import type { MetricsLine } from "./metrics.js";

export interface DropSummary {
  copyLevel: number;
  window: number;
  plateau: { start: number; end: number; length: number; meanLossMask: number } | null;
  drop: { step: number; seconds: number } | null;
  /** plateau of >= minPlateau steps followed by a drop */
  phenomenon: boolean;
  final: { step: number; loss: number; loss_mask: number; loss_obs: number } | null;
  seconds: number;
}

export function movingAverage(xs: number[], w: number): number[] {
  const out = new Array<number>(xs.length);
  let s = 0;
  let cnt = 0;
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    if (Number.isFinite(x)) {
      s += x;
      cnt++;
    }
    if (i >= w) {
      const y = xs[i - w]!;
      if (Number.isFinite(y)) {
        s -= y;
        cnt--;
      }
    }
    out[i] = cnt > 0 ? s / cnt : NaN;
  }
  return out;
}

export function summarizeDrop(lines: MetricsLine[], rank: number, opts: { window?: number; minPlateau?: number } = {}): DropSummary {
  const window = opts.window ?? 50;
  const minPlateau = opts.minPlateau ?? 200;
  const copyLevel = rank / 9;
  const lm = movingAverage(lines.map((l) => l.loss_mask ?? NaN), window);
  const cum: number[] = [];
  let acc = 0;
  for (const l of lines) {
    acc += l.ms ?? 0;
    cum.push(acc / 1000);
  }
  let best: DropSummary["plateau"] = null;
  let i = 0;
  while (i < lines.length) {
    if (i >= window - 1 && Math.abs(lm[i]! - copyLevel) <= 0.15 * copyLevel) {
      let j = i;
      let s = 0;
      while (j < lines.length && Math.abs(lm[j]! - copyLevel) <= 0.15 * copyLevel) {
        s += lm[j]!;
        j++;
      }
      const len = lines[j - 1]!.step - lines[i]!.step + 1;
      if (!best || len > best.length) best = { start: lines[i]!.step, end: lines[j - 1]!.step, length: len, meanLossMask: s / (j - i) };
      i = j;
    } else i++;
  }
  let drop: DropSummary["drop"] = null;
  if (best) {
    for (let k = 0; k < lines.length; k++) {
      if (lines[k]!.step > best.end && k >= window - 1 && lm[k]! < 0.2 * copyLevel) {
        drop = { step: lines[k]!.step, seconds: Math.round(cum[k]!) };
        break;
      }
    }
  }
  const f = lines[lines.length - 1];
  return {
    copyLevel,
    window,
    plateau: best,
    drop,
    phenomenon: !!best && best.length >= minPlateau && !!drop,
    final: f ? { step: f.step, loss: f.loss, loss_mask: f.loss_mask, loss_obs: f.loss_obs } : null,
    seconds: Math.round(cum[cum.length - 1] ?? 0),
  };
}
