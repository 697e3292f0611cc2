// The experiments of SPEC §4, in the order `abrupt analyze all` runs them
// and report.md lists them.
//
// To add an experiment:
//   1. write src/analysis/NAME.ts: the analysis as a function of an
//      AnalysisContext (context.ts: the model at a checkpoint, the data, a
//      seed) returning an AnalysisOutput (JSON, figures, findings), and export
//      `experiment: Experiment<typeof NameOptionsSchema>` (experiment.ts):
//      name, summary, options (a zod object, every field with its default;
//      `count(...)` for numbers of matrices or iterations), steps (the
//      checkpoints it runs on by default) and run;
//   2. import it here and add it to EXPERIMENTS;
//   3. a test in test/analysis-NAME.test.ts, and a row in the README's table
//      of experiments.
// `abrupt analyze NAME RUN`, `analyze all`, `--opt key=value` and the memory
// check then work without further changes, and the dashboard serves it (per
// checkpoint, or over the run for steps "none"; `dashboard: false` keeps it
// off the dashboard, see experiment.ts).

import { AbruptError } from "../errors.js";
import type { Experiment } from "./experiment.js";
import { experiment as phases } from "./phases.js";
import { experiment as copy } from "./copy.js";
import { experiment as nnm } from "./nnm.js";
import { experiment as attention } from "./attention.js";
import { experiment as probe } from "./probe.js";
import { experiment as embeddings } from "./embeddings.js";
import { experiment as patch } from "./patch.js";
import { experiment as ablate } from "./ablate.js";
import { experiment as swap } from "./swap.js";
import { experiment as component } from "./component.js";
import { experiment as ood } from "./ood.js";
import { experiment as progress } from "./progress.js";

export const EXPERIMENTS: readonly Experiment[] = [phases, copy, nnm, attention, probe, embeddings, patch, ablate, swap, component, ood, progress];

export function findExperiment(name: string): Experiment {
  const e = EXPERIMENTS.find((x) => x.name === name);
  if (!e) throw new AbruptError(`unknown experiment "${name}" (experiments: ${EXPERIMENTS.map((x) => x.name).join(", ")}, all)`);
  return e;
}
