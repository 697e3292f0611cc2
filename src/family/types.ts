// The model seam: what the trainer, the run store, the analyses and the
// server need from a model family, so that none of them names `Bert` or
// `Gpt`. A family is one file in this folder (bert.ts, gpt.ts) and one line
// in index.ts.
//
// To add a family:
//   1. write the model in src/model/ (one file, explicit forward and backward,
//      a hook table: src/model/README.md) and its checkpoint format in
//      src/store/ if it is not the BERT's;
//   2. write src/family/NAME.ts exporting a `ModelFamily`: its config checks,
//      presets, parameter layout, checkpoint save/load, the event signal and
//      a `RunTrainer` (data, loss, metrics and evaluation of one run);
//   3. add it to FAMILIES in src/family/index.ts;
//   4. the CLI's --model lists it, `abrupt train --model NAME` trains it, and
//      test/family.test.ts runs every family's checks.

import type { Rng } from "../data/rng.js";
import type { Kernels } from "../kernels/types.js";
import type { HookFn } from "../model/hooks.js";
import type { MemoryNeed } from "../model/memory.js";
import type { TensorSpec } from "../model/params.js";
import type { PartialRunConfig, RunConfig } from "../train/config.js";
import type { MetricsLine } from "../train/metrics.js";
import type { VlSpec } from "../viz/plot.js";

/** What every family's model offers (Bert and Gpt both satisfy it). */
export interface FamilyModel<Buf = unknown> {
  readonly kernels: Kernels<Buf>;
  /** the flat parameters and gradients (layout: ModelFamily.specs) */
  readonly params: Buf;
  readonly grads: Buf;
  readonly size: number;
  zeroGrad(): void;
  paramsHost(): Promise<Float32Array>;
  setParams(params: Float32Array): void;
  getParam(name: string): Promise<Float32Array>;
  /** freezing by group selectors; unknown selectors throw one line */
  setFrozen(selectors: string[]): void;
  isFrozen(group: string): boolean;
  groupNames(): string[];
  hookNames(): string[];
  hookShape(name: string, B: number, T: number): number[];
  addHook(name: string, fn: HookFn): () => void;
  clearHooks(): void;
  actHost(name: string): Promise<Float32Array>;
}

/** The event signal of a family's metrics (src/train/events.ts): which field, and how it is averaged. */
export interface EventSignal {
  /** the metrics field whose trailing average defines plateau and drop */
  field: "loss_mask" | "eval_mse_mask";
  /** window of the trailing average, in values of that field */
  window: number;
  /**
   * true: the field is logged at some steps only (evaluation steps): the
   * average runs over its values, the other steps only add their time
   */
  sparse: boolean;
  /**
   * the plateau band in units of r/9 (default [0.85, 1.15]: the copy level
   * ± 15%); the drop threshold is 0.2·r/9 for every family
   */
  band?: readonly [number, number];
  /** how messages name it: "L_mask", "eval MSE at hidden cells" */
  label: string;
}

/** One run's data, loss and evaluation, buffers allocated once (the trainer owns the optimizer). */
export interface RunTrainer {
  /**
   * Samples the step's batch from `rng`, runs forward, the loss and backward
   * (gradients accumulate into the model's `grads`). The work is issued
   * before this returns; the promise gives the step's losses once they are
   * read back, so the optimizer can be queued meanwhile. `drop` is the run's
   * drop step so far (null: none yet).
   */
  step(rng: Rng, step: number, drop: number | null): Promise<Partial<MetricsLine> & { loss: number }>;
  /** After the step's losses: fields logged at this step only (progress measures, evaluation). */
  extras(step: number): Promise<Partial<MetricsLine>>;
}

export interface ModelFamily {
  /** the --model name, also the run config's `family` */
  name: string;
  /** as the papers write it: "BERT", "GPT" */
  title: string;
  /** the preset `abrupt train --model NAME` uses when none is given */
  defaultPreset: string;
  /** presets that train this family (names unique across families) */
  presets: Record<string, PartialRunConfig>;
  /** fills what a family's model section must hold that the BERT's base does not (applied before the preset) */
  base: PartialRunConfig;
  /** the checks of a whole run config for this family; one line naming the problem */
  validate(cfg: RunConfig): void;
  /** "BERT L4 H4 d64 ff256" */
  describe(cfg: RunConfig): string;
  /** the memory training needs (model, activations, optimizer, batches) */
  trainingBytes(cfg: RunConfig): MemoryNeed;
  /** the parameter layout: names (the checkpoint's), shapes, offsets, freezing groups */
  specs(cfg: RunConfig): TensorSpec[];
  /** whether weight decay applies to a tensor (the linear weights) */
  decays(name: string): boolean;
  /** whether a freezing selector (--freeze, --train-only) covers a group */
  groupMatches(group: string, selector: string): boolean;
  create<Buf>(cfg: RunConfig, kernels: Kernels<Buf>): FamilyModel<Buf>;
  /** the family's initialisation from the run's seed and train settings */
  init(model: FamilyModel<unknown>, cfg: RunConfig, seed: number): void;
  /** writes a checkpoint in the family's names with our metadata */
  save(file: string, cfg: RunConfig, params: Float32Array, meta: Record<string, string>): void;
  /** reads a checkpoint of this family; one line if it does not fit `cfg` */
  load(file: string, cfg: RunConfig): Float32Array;
  events: EventSignal;
  /** the metrics fields the dashboard's measure strip draws (the last three columns of a metrics row, src/server/wire.ts) */
  measureColumns: readonly [string, string, string];
  /** the run's learning-curve figure (loss.svg, the report) */
  curveSpec(lines: MetricsLine[], cfg: RunConfig, marks: Array<{ step: number; label: string }>): VlSpec;
  trainer<Buf>(cfg: RunConfig, model: FamilyModel<Buf>, evalSeed: number): RunTrainer;
}
