// Experiment 1, phases: the plateau and the drop of a loss curve.
//
// The events are the run's one definition (src/train/events.ts, on the moving
// average of L_mask): the plateau runs from its first to its last step within
// r/9 ± 15%, the drop is the first step below 0.2·r/9 after it. This module
// adds the levels on the plateau (L against the copy prediction p_mask·r/9,
// L_mask against r/9) and the losses on both sides of the drop. `pickSteps`
// uses the result to choose the "pre" (last checkpoint on the plateau) and
// "post" (last checkpoint, if after the drop) checkpoints for the other
// analyses.
//
// On a GPT run the events come from the family's signal (the greedy MSE at
// hidden cells of the evaluation set, eval_mse_mask, src/family/gpt.ts); the
// levels are those of that MSE (eval_mse against the copy level p_mask·r/9,
// eval_mse_mask against r/9: hidden cells written as 0, observed ones
// copied), and the cross-entropies of the training loss are reported beside
// them (json.ce); the figure has the cross-entropies and the evaluation's
// accuracy and MSE.

import { z } from "zod";
import { AbruptError } from "../errors.js";
import { type RunEvents, detectEvents } from "../train/events.js";
import { type EventSignal, familyOf } from "../family/index.js";
import type { MetricsLine } from "../train/metrics.js";
import type { VlSpec } from "../viz/plot.js";
import type { RunHandle } from "../store/run.js";
import type { AnalysisOutput } from "./context.js";
import type { Experiment } from "./experiment.js";

export interface Phases {
  window: number;
  copyLevel: number;
  copyLevelMask: number;
  plateau: {
    onset: number;
    /** last step on the plateau (so far, if it has not ended) */
    end: number;
    /** the run has left the plateau downwards (events.plateau_end is set) */
    ended: boolean;
    steps: number;
    level: number;
    levelMask: number;
    /** level / (p_mask·r/9) */
    ratioToCopy: number;
  } | null;
  /** slope: of log L per step from the plateau's end to the drop; losses: mean L over a window before and after */
  drop: { step: number; slope: number; lossBefore: number; lossAfter: number } | null;
  final: { step: number; loss: number } | null;
  events: RunEvents;
}

/** The mean of a metrics field over steps from..to (lines without it left out: eval fields are sparse). */
function meanLoss(pts: MetricsLine[], from: number, to: number, key = "loss"): number {
  let sum = 0, cnt = 0;
  for (const l of pts) {
    const v = (l as unknown as Record<string, unknown>)[key];
    if (l.step < from || l.step > to || typeof v !== "number" || !Number.isFinite(v)) continue;
    sum += v;
    cnt++;
  }
  return cnt ? sum / cnt : NaN;
}

/** The fields of the levels: L and L_mask of the BERT, the evaluation's greedy MSE of the GPT. */
export interface LevelFields { all: string; mask: string }
const GPT_LEVELS: LevelFields = { all: "eval_mse", mask: "eval_mse_mask" };

/** `signal`: the run's family's event signal (src/family/; default the BERT's L_mask); `fields`: what the levels are of. */
export function detectPhases(lines: MetricsLine[], rank: number, pMask: number, signal?: EventSignal, fields: LevelFields = { all: "loss", mask: "loss_mask" }): Phases {
  const copyLevel = (pMask * rank) / 9;
  const copyLevelMask = rank / 9;
  const ev = detectEvents(lines, rank, signal);
  const w = ev.window;
  const last = lines[lines.length - 1];
  const final = last ? { step: last.step, loss: meanLoss(lines, last.step - w + 1, last.step, fields.all) } : null;
  let plateau: Phases["plateau"] = null;
  const end = ev.plateau_end ?? ev.last_on_plateau;
  if (ev.plateau_start !== null && end !== null) {
    const level = meanLoss(lines, ev.plateau_start, end, fields.all);
    plateau = {
      onset: ev.plateau_start, end, ended: ev.plateau_end !== null, steps: end - ev.plateau_start + 1,
      level, levelMask: meanLoss(lines, ev.plateau_start, end, fields.mask), ratioToCopy: level / copyLevel,
    };
  }
  let drop: Phases["drop"] = null;
  if (ev.drop !== null && end !== null) {
    const lossBefore = meanLoss(lines, end - w + 1, end, fields.all);
    const lossAfter = meanLoss(lines, ev.drop, ev.drop + w - 1, fields.all);
    drop = { step: ev.drop, slope: (Math.log(lossAfter) - Math.log(lossBefore)) / Math.max(1, ev.drop - end), lossBefore, lossAfter };
  }
  return { window: w, copyLevel, copyLevelMask, plateau, drop, final, events: ev };
}

/** "pre", "post", "final", "all", or a step number → checkpoint steps of the run. */
export function pickSteps(run: RunHandle, spec: string): number[] {
  if (run.steps.length === 0) throw new AbruptError(`${run.dir} has no checkpoints`);
  if (spec === "all") return run.steps;
  if (spec === "final") return [run.steps[run.steps.length - 1]!];
  if (spec === "pre" || spec === "post") {
    const ph = detectPhases(run.metrics, run.cfg.data.rank, run.cfg.data.p_mask, familyOf(run.cfg).events);
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
  if (familyOf(run.cfg).name === "gpt") return gptPhasesOutput(run);
  const ph = detectPhases(run.metrics, run.cfg.data.rank, run.cfg.data.p_mask, familyOf(run.cfg).events);
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

/** phases of a GPT run (see the header). */
function gptPhasesOutput(run: RunHandle): AnalysisOutput {
  const lines = run.metrics;
  const signal = familyOf(run.cfg).events;
  const ph = detectPhases(lines, run.cfg.data.rank, run.cfg.data.p_mask, signal, GPT_LEVELS);
  const f = (x: number) => (Number.isFinite(x) ? x.toPrecision(3) : "n/a");
  // events come in steps; the evaluation's window spans `window` evaluations
  const evalSteps = lines.filter((l) => Number.isFinite((l as unknown as Record<string, number>)["eval_mse_mask"])).map((l) => l.step);
  const every = evalSteps.length > 1 ? evalSteps[1]! - evalSteps[0]! : 1;
  const span = ph.window * every;
  const ce = {
    plateau: ph.plateau ? { loss: meanLoss(lines, ph.plateau.onset, ph.plateau.end), loss_mask: meanLoss(lines, ph.plateau.onset, ph.plateau.end, "loss_mask"), loss_obs: meanLoss(lines, ph.plateau.onset, ph.plateau.end, "loss_obs") } : null,
    drop: ph.drop ? { lossBefore: meanLoss(lines, ph.drop.step - span, ph.drop.step, "loss_mask"), lossAfter: meanLoss(lines, ph.drop.step, ph.drop.step + span, "loss_mask") } : null,
    final: ph.final ? { loss: meanLoss(lines, ph.final.step - span + 1, ph.final.step), loss_mask: meanLoss(lines, ph.final.step - span + 1, ph.final.step, "loss_mask") } : null,
  };
  const lastEval = [...lines].reverse().find((l) => Number.isFinite((l as unknown as Record<string, number>)["eval_acc"])) as unknown as Record<string, number> | undefined;
  const findings: string[] = [];
  if (ph.plateau) {
    findings.push(`plateau (on the greedy MSE at hidden cells, eval_mse_mask) from step ${ph.plateau.onset} to ${ph.plateau.end}: MSE at hidden cells ≈ ${f(ph.plateau.levelMask)} vs r/9 = ${f(ph.copyLevelMask)} (writing 0 there), all cells ≈ ${f(ph.plateau.level)} (${f(ph.plateau.ratioToCopy)}× p_mask·r/9 = ${f(ph.copyLevel)}); cross-entropy at hidden cells ≈ ${f(ce.plateau!.loss_mask)}, at observed ${f(ce.plateau!.loss_obs)}`);
  } else findings.push("no plateau found (on eval_mse_mask)");
  if (ph.drop) findings.push(`drop at step ${ph.drop.step}: greedy MSE (all cells) from ${f(ph.drop.lossBefore)} to ${f(ph.drop.lossAfter)}; cross-entropy at hidden cells from ${f(ce.drop!.lossBefore)} to ${f(ce.drop!.lossAfter)}`);
  else findings.push("no drop found");
  if (lastEval) findings.push(`last evaluation (step ${lastEval["step"]}): accuracy ${f(lastEval["eval_acc"]!)} (hidden cells ${f(lastEval["eval_acc_mask"]!)}, observed ${f(lastEval["eval_acc_obs"]!)}), MSE at hidden cells ${f(lastEval["eval_mse_mask"]!)}`);

  const ceRows = lines.flatMap((l) => (["loss", "loss_mask", "loss_obs"] as const).filter((k) => l[k] > 0).map((k) => ({ step: l.step, series: k, value: l[k] })));
  const evalKeys = ["eval_mse_mask", "eval_mse_obs", "eval_acc_mask", "eval_acc_obs"];
  const evalRows = lines.flatMap((l) => evalKeys.map((k) => ({ step: l.step, series: k, value: (l as unknown as Record<string, number>)[k] })).filter((r) => Number.isFinite(r.value)));
  const marks = [
    ...(ph.plateau ? [{ step: ph.plateau.onset, what: "plateau onset" }, { step: ph.plateau.end, what: "plateau end" }] : []),
    ...(ph.drop ? [{ step: ph.drop.step, what: "drop" }] : []),
  ];
  const rules = (y: number | null) => [
    { data: { values: marks }, mark: { type: "rule", color: "#e45756" }, encoding: { x: { field: "step", type: "quantitative" }, tooltip: { field: "what" } } },
    ...(y !== null ? [{ data: { values: [{ y }] }, mark: { type: "rule", strokeDash: [4, 4], color: "#888" }, encoding: { y: { field: "y", type: "quantitative" } } }] : []),
  ];
  const x = { field: "step", type: "quantitative" };
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: "phases of a GPT run", subtitle: "events on the greedy MSE at hidden cells (eval_mse_mask); dashed: r/9" },
    vconcat: [
      { width: 600, height: 220, layer: [{ data: { values: ceRows }, mark: { type: "line", strokeWidth: 1 }, encoding: { x, y: { field: "value", type: "quantitative", scale: { type: "log" }, title: "cross-entropy" }, color: { field: "series", type: "nominal", title: null } } }, ...rules(null)] },
      { width: 600, height: 220, layer: [{ data: { values: evalRows }, mark: { type: "line", point: { size: 10 } }, encoding: { x, y: { field: "value", type: "quantitative", title: "evaluation: MSE / accuracy" }, color: { field: "series", type: "nominal", title: null } } }, ...rules(ph.copyLevelMask)] },
    ],
    resolve: { scale: { color: "independent" } },
  } as VlSpec;
  return { json: { family: "gpt", signal, ...ph, ce }, figures: [{ name: "loss", spec }], findings };
}

const NoOptions = z.object({});

export const experiment: Experiment<typeof NoOptions> = {
  name: "phases",
  summary: "plateau onset/end, drop step, plateau level vs the copy level",
  options: NoOptions,
  steps: "none",
  families: ["bert", "gpt"],
  dashboard: false, // the dashboard draws the loss curve and the phases from metrics itself
  run: (_ctx, _o, run) => {
    if (!run) throw new AbruptError("phases needs a run directory (metrics.jsonl), not a lone checkpoint");
    return phasesOutput(run);
  },
};
