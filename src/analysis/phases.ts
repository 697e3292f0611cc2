// Experiment 1, phases: the plateau and the drop of a loss curve.
//
// On s = moving average of log L (window w):
// - plateau level: the highest log-loss the curve dwells at (at least
//   max(3w, 5% of the points) within ±0.2 of it), at its densest point;
// - plateau: the longest stretch with |s - level| ≤ 0.2 (±22%), bridging
//   excursions shorter than w; onset and end are its first and last step;
// - drop: the step of steepest fall of s from the end of the plateau on
//   (slope over ±w steps), provided the curve leaves the plateau downwards by more than 0.5
//   (a factor 1.65) after it; otherwise no drop.
// The level is compared with the copy prediction p_mask·r/9 and the mean
// L_mask on the plateau with r/9. `pickSteps` uses the result to choose the
// "pre" (last checkpoint on the plateau) and "post" (last checkpoint, if after
// the drop) checkpoints for the other analyses.

import { AbruptError } from "../errors.js";
import type { MetricsLine } from "../train/metrics.js";
import type { VlSpec } from "../train/plot.js";
import type { AnalysisOutput, RunHandle } from "./context.js";

export interface Phases {
  window: number;
  copyLevel: number;
  copyLevelMask: number;
  plateau: {
    onset: number;
    end: number;
    steps: number;
    level: number;
    levelMask: number;
    /** level / (p_mask·r/9) */
    ratioToCopy: number;
  } | null;
  drop: { step: number; slope: number; lossBefore: number; lossAfter: number } | null;
  final: { step: number; loss: number } | null;
}

function centeredMean(xs: number[], w: number): number[] {
  const h = Math.floor(w / 2);
  const pre = [0];
  for (const x of xs) pre.push(pre[pre.length - 1]! + x);
  return xs.map((_, i) => {
    const a = Math.max(0, i - h), b = Math.min(xs.length, i + h + 1);
    return (pre[b]! - pre[a]!) / (b - a);
  });
}

export function detectPhases(lines: MetricsLine[], rank: number, pMask: number, window?: number): Phases {
  const copyLevel = (pMask * rank) / 9;
  const copyLevelMask = rank / 9;
  const pts = lines.filter((l) => Number.isFinite(l.loss) && l.loss > 0);
  const n = pts.length;
  const w = window ?? Math.max(5, Math.floor(n / 100) | 1);
  const empty: Phases = { window: w, copyLevel, copyLevelMask, plateau: null, drop: null, final: null };
  if (n < 3 * w) return { ...empty, final: n ? { step: pts[n - 1]!.step, loss: pts[n - 1]!.loss } : null };
  const s = centeredMean(pts.map((l) => Math.log(l.loss)), w);

  // dwell level: the highest log-loss around which the curve spends at least
  // max(3w, 5% of the run) points within ±0.2 (the plateau lies above the
  // post-drop regime, which may be longer)
  const sorted = [...s].sort((x, y) => x - y);
  const count = new Array<number>(n);
  let lo = 0, hi = 0;
  for (let k = 0; k < n; k++) {
    while (sorted[lo]! < sorted[k]! - 0.2) lo++;
    while (hi < n && sorted[hi]! <= sorted[k]! + 0.2) hi++;
    count[k] = hi - lo;
  }
  const need = Math.max(3 * w, 0.05 * n);
  let top = -1;
  for (let k = n - 1; k >= 0; k--) if (count[k]! >= need) { top = k; break; }
  if (top < 0) return { ...empty, final: { step: pts[n - 1]!.step, loss: Math.exp(s[n - 1]!) } };
  let kl = top;
  for (let k = top; k >= 0 && sorted[k]! >= sorted[top]! - 0.4; k--) if (count[k]! > count[kl]!) kl = k;
  const level = sorted[kl]!;

  // longest stretch within ±0.2 of the level, bridging short excursions
  let best: [number, number] | null = null;
  let i = 0;
  while (i < n) {
    if (Math.abs(s[i]! - level) > 0.2) { i++; continue; }
    let j = i, lastIn = i;
    while (j < n && (Math.abs(s[j]! - level) <= 0.2 || j - lastIn < w)) {
      if (Math.abs(s[j]! - level) <= 0.2) lastIn = j;
      j++;
    }
    if (!best || pts[lastIn]!.step - pts[i]!.step > pts[best[1]]!.step - pts[best[0]]!.step) best = [i, lastIn];
    i = lastIn + 1;
  }
  const final = { step: pts[n - 1]!.step, loss: Math.exp(s[n - 1]!) };
  if (!best || best[1] - best[0] + 1 < Math.max(3 * w, 0.05 * n)) return { ...empty, final };
  const [a, b] = best;
  let sumL = 0, sumM = 0, cntM = 0;
  for (let k = a; k <= b; k++) {
    sumL += pts[k]!.loss;
    if (Number.isFinite(pts[k]!.loss_mask)) { sumM += pts[k]!.loss_mask; cntM++; }
  }
  const levelLoss = sumL / (b - a + 1);
  const plateau = {
    onset: pts[a]!.step, end: pts[b]!.step, steps: pts[b]!.step - pts[a]!.step + 1,
    level: levelLoss, levelMask: cntM ? sumM / cntM : NaN, ratioToCopy: levelLoss / copyLevel,
  };

  // drop: steepest fall after the onset, if the curve leaves the plateau downwards
  let drop: Phases["drop"] = null;
  const minAfter = Math.min(...s.slice(b));
  if (b < n - 1 && minAfter < level - 0.5) {
    let kBest = -1, slopeBest = 0;
    // the fall that leads out of the plateau starts near its end (not the
    // initial fall to the copy level, which can also follow the onset)
    for (let k = Math.max(a, b - 2 * w, w); k < n - w; k++) {
      const slope = (s[k + w]! - s[k - w]!) / (pts[k + w]!.step - pts[k - w]!.step);
      if (slope < slopeBest) { slopeBest = slope; kBest = k; }
    }
    if (kBest >= 0) {
      drop = {
        step: pts[kBest]!.step, slope: slopeBest,
        lossBefore: Math.exp(s[Math.max(0, kBest - 2 * w)]!), lossAfter: Math.exp(s[Math.min(n - 1, kBest + 2 * w)]!),
      };
    }
  }
  return { window: w, copyLevel, copyLevelMask, plateau, drop, final };
}

/** "pre", "post", "final", "all", or a step number → checkpoint steps of the run. */
export function pickSteps(run: RunHandle, spec: string): number[] {
  if (run.steps.length === 0) throw new AbruptError(`${run.dir} has no checkpoints`);
  if (spec === "all") return run.steps;
  if (spec === "final") return [run.steps[run.steps.length - 1]!];
  if (spec === "pre" || spec === "post") {
    const ph = detectPhases(run.metrics, run.cfg.data.rank, run.cfg.data.p_mask);
    if (spec === "pre") {
      if (!ph.plateau) throw new AbruptError(`no plateau found in ${run.dir}/metrics.jsonl, so there is no "pre" checkpoint; give a step`);
      const limit = ph.drop ? Math.min(ph.plateau.end, ph.drop.step - ph.window) : ph.plateau.end;
      const cands = run.steps.filter((s) => s >= ph.plateau!.onset && s <= limit);
      if (cands.length === 0) throw new AbruptError(`no checkpoint lies on the plateau (steps ${ph.plateau.onset}–${limit}) of ${run.dir}`);
      return [cands[cands.length - 1]!];
    }
    if (!ph.drop) throw new AbruptError(`no drop found in ${run.dir}/metrics.jsonl, so there is no "post" checkpoint; give a step`);
    const last = run.steps[run.steps.length - 1]!;
    if (last <= ph.drop.step) throw new AbruptError(`no checkpoint after the drop (step ${ph.drop.step}) in ${run.dir}`);
    return [last];
  }
  const step = Number(spec);
  if (!Number.isInteger(step) || step < 0) throw new AbruptError(`--step must be pre, post, final, all or a step number (got "${spec}")`);
  if (!run.steps.includes(step)) throw new AbruptError(`checkpoint step ${step} does not exist in ${run.dir} (available: ${run.steps.join(", ")})`);
  return [step];
}

export function phasesOutput(run: RunHandle): AnalysisOutput {
  const ph = detectPhases(run.metrics, run.cfg.data.rank, run.cfg.data.p_mask);
  const f = (x: number) => x.toPrecision(3);
  const findings: string[] = [];
  if (ph.plateau) {
    findings.push(`plateau from step ${ph.plateau.onset} to ${ph.plateau.end} at L ≈ ${f(ph.plateau.level)} (${f(ph.plateau.ratioToCopy)}× the copy level p_mask·r/9 = ${f(ph.copyLevel)}; L_mask ≈ ${f(ph.plateau.levelMask)} vs r/9 = ${f(ph.copyLevelMask)})`);
  } else findings.push("no plateau found");
  if (ph.drop) findings.push(`drop at step ${ph.drop.step}: L from ${f(ph.drop.lossBefore)} to ${f(ph.drop.lossAfter)}`);
  else findings.push("no drop found");
  if (ph.final) findings.push(`final L ≈ ${f(ph.final.loss)} at step ${ph.final.step}`);
  const rows = run.metrics.filter((l) => l.loss > 0).map((l) => ({ step: l.step, loss: l.loss }));
  const marks = [
    ...(ph.plateau ? [{ step: ph.plateau.onset, what: "plateau onset" }, { step: ph.plateau.end, what: "plateau end" }] : []),
    ...(ph.drop ? [{ step: ph.drop.step, what: "drop" }] : []),
  ];
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: "phases of the loss curve",
    width: 600, height: 300,
    layer: [
      { data: { values: rows }, mark: { type: "line", strokeWidth: 1, color: "#4c78a8" }, encoding: { x: { field: "step", type: "quantitative" }, y: { field: "loss", type: "quantitative", scale: { type: "log" }, title: "L" } } },
      { data: { values: [{ y: ph.copyLevel }] }, mark: { type: "rule", strokeDash: [4, 4], color: "#888" }, encoding: { y: { field: "y", type: "quantitative" } } },
      { data: { values: marks }, mark: { type: "rule", color: "#e45756" }, encoding: { x: { field: "step", type: "quantitative" }, tooltip: { field: "what" } } },
      { data: { values: marks }, mark: { type: "text", angle: 270, dx: -40, dy: -4, fontSize: 10, color: "#e45756" }, encoding: { x: { field: "step", type: "quantitative" }, y: { value: 0 }, text: { field: "what" } } },
    ],
  } as VlSpec;
  return { json: { ...ph }, figures: [{ name: "loss", spec }], findings };
}
