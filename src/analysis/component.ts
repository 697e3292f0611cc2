// Experiment 10, component dynamics (SPEC §4): a run made with
//   abrupt train --init-from RUN@STEP --train-only GROUP
// trains one parameter group from its fresh initialisation while every other
// group holds RUN's converged values, frozen. This compares its loss curve
// with RUN's own (normal training): is there a plateau at all, and when does
// the drop come?
//
// JSON: { reference: {dir, step}, trained: string[],
//         component: Phases, normal: Phases | null,
//         verdict: "no plateau" | "plateau, then drop" | "plateau, no drop yet" | "no drop",
//         dropShift: number | null  (component drop step − normal drop step) }

import { existsSync } from "node:fs";
import { z } from "zod";
import { AbruptError } from "../errors.js";
import type { VlSpec } from "../viz/plot.js";
import { type RunHandle, openRun } from "../store/run.js";
import type { AnalysisOutput } from "./context.js";
import type { Experiment } from "./experiment.js";
import { type Phases, detectPhases } from "./phases.js";

export function componentOutput(run: RunHandle): AnalysisOutput {
  const t = run.cfg.train;
  if (!t.init_from) throw new AbruptError(`${run.dir} was not made with --init-from (component dynamics needs --init-from RUN@STEP --train-only GROUP)`);
  const at = t.init_from.lastIndexOf("@");
  const refDir = t.init_from.slice(0, at);
  const refStep = Number(t.init_from.slice(at + 1));
  const { rank, p_mask } = run.cfg.data;
  const comp = detectPhases(run.metrics, rank, p_mask);
  let normal: Phases | null = null;
  let refRun: RunHandle | null = null;
  if (existsSync(refDir)) {
    refRun = openRun(refDir);
    normal = detectPhases(refRun.metrics, rank, p_mask);
  }
  const trained = t.train_only.length ? t.train_only : ["(all groups)"];
  // a passage through the copy band shorter than 4 averaging windows is not a plateau
  const plateaued = !!comp.plateau && comp.plateau.steps >= 4 * comp.window;
  const verdict = !plateaued
    ? comp.final && comp.final.loss < 0.2 * comp.copyLevel ? "no plateau" : "no drop"
    : comp.drop ? "plateau, then drop" : "plateau, no drop yet";
  const dropShift = comp.drop && normal?.drop ? comp.drop.step - normal.drop.step : null;
  const f = (x: number) => x.toPrecision(3);
  const findings = [
    `training only ${trained.join(", ")} from scratch (rest from ${refDir}@${refStep}, frozen): ${verdict}` +
      (comp.plateau ? ` (plateau ${comp.plateau.onset}–${comp.plateau.end} at L ≈ ${f(comp.plateau.level)})` : "") +
      (comp.drop ? `, drop at step ${comp.drop.step}` : ""),
    normal
      ? `normal training (${refDir}): ${normal.drop ? `drop at step ${normal.drop.step}` : "no drop"}${dropShift !== null ? `; the component's drop comes ${dropShift >= 0 ? dropShift + " steps later" : -dropShift + " steps earlier"}` : ""}`
      : `normal run ${refDir} not found: no comparison`,
  ];
  const rows = [
    ...run.metrics.filter((l) => l.loss > 0).map((l) => ({ step: l.step, loss: l.loss, run: `train only ${trained.join(", ")}` })),
    ...(refRun ? refRun.metrics.filter((l) => l.loss > 0).map((l) => ({ step: l.step, loss: l.loss, run: "normal training" })) : []),
  ];
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: "component dynamics: one group trained, the rest converged and frozen",
    width: 600, height: 300,
    data: { values: rows },
    mark: { type: "line", strokeWidth: 1 },
    encoding: {
      x: { field: "step", type: "quantitative" },
      y: { field: "loss", type: "quantitative", scale: { type: "log" }, title: "L" },
      color: { field: "run", type: "nominal", title: null, legend: { orient: "top-right" } },
    },
  } as VlSpec;
  return {
    json: { reference: { dir: refDir, step: refStep }, trained, component: comp, normal, verdict, dropShift },
    figures: [{ name: "loss", spec }],
    findings,
  };
}

const NoOptions = z.object({});

export const experiment: Experiment<typeof NoOptions> = {
  name: "component",
  summary: "a --train-only run against the run it was initialised from: when does its drop come?",
  whyNot: { gpt: "it needs a BERT run trained with --init-from/--train-only on the BERT's parameter groups" },
  options: NoOptions,
  steps: "none",
  dashboard: false, // compares two runs
  run: (_ctx, _o, run) => {
    if (!run) throw new AbruptError("component needs a run directory made with --init-from/--train-only");
    return componentOutput(run);
  },
};
