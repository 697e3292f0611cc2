// What every analysis gets: the model at a chosen checkpoint (of a run, or a
// lone safetensors file such as a converted PyTorch checkpoint), the data
// config, a seed, a backend, and where to write. Each experiment of SPEC §4
// lives in its own file in this folder (experiment.ts, index.ts) and returns
// an AnalysisOutput; the runner (runner.ts, `abrupt analyze`) writes it to
// <run>/analysis/<experiment>.json with its figures beside it (output.ts).
// Analyses use only the model's hook API and forward.ts, never its tensors.
//
// A GPT run (config `family: "gpt"`) or a lone GPT checkpoint gives a context
// with family "gpt": `gpt(step)` loads the Gpt, `model()` refuses. Each
// experiment says which families it runs on (experiment.ts).

import { familyOf } from "../family/index.js";
import type { DataConfig } from "../data/matrix.js";
import { AbruptError } from "../errors.js";
import type { Kernels } from "../kernels/types.js";
import { Bert } from "../model/bert.js";
import { Gpt } from "../model/gpt.js";
import { loadCheckpoint } from "../store/checkpoint.js";
import { checkpointFamily, loadGptCheckpoint } from "../store/gpt-checkpoint.js";
import { gptConfigOf } from "../family/gpt.js";
import { type RunHandle, runCheckpoint } from "../store/run.js";
import { type AttnBiasConfig, attnBiasOn, dataConfigOf } from "../train/config.js";
import { detectEvents } from "../train/events.js";
import { splitMetrics } from "../train/metrics.js";
import type { VlSpec } from "../viz/plot.js";

/** The model source of an analysis: a run's checkpoints or one file. */
export type Source =
  | { kind: "run"; run: RunHandle }
  | { kind: "checkpoint"; file: string; heads?: number };

export interface AnalysisContext {
  source: Source;
  /** data config of the run (or of the flags, for a lone checkpoint) */
  data: DataConfig;
  /** the backend the model runs on (any: analyses use the model's asynchronous API) */
  kernels: Kernels<unknown>;
  seed: number;
  /** folder the results go to */
  outDir: string;
  /** the checkpoint step analysed (-1 for a lone checkpoint file) */
  step: number;
  /** the attention intervention set on the models this context loads (null = none) */
  attnBias?: AttnBiasConfig | null;
  /** loads the model at `step` (default: ctx.step); the two most recent are cached */
  model(step?: number): AnyBert;
  /** the model family of the run or checkpoint (absent: "bert") */
  family?: FamilyName;
  /** for family "gpt": loads the GPT at `step` (default: ctx.step), cached as `model` */
  gpt?(step?: number): AnyGpt;
}

export type FamilyName = "bert" | "gpt";

/** A GPT on any backend (analyses use run, generate, actHost, addHook, clone). */
export type AnyGpt = Gpt<unknown>;

/** The family of an analysis source: the run config's, or the checkpoint file's tensors. */
export function sourceFamily(source: Source): FamilyName {
  return source.kind === "run" ? (familyOf(source.run.cfg).name === "gpt" ? "gpt" : "bert") : checkpointFamily(source.file);
}

/** The GPT of a context; one line when the context is not a GPT's. */
export function gptOf(ctx: AnalysisContext, step?: number): AnyGpt {
  if (ctx.family !== "gpt" || !ctx.gpt) throw new AbruptError("this analysis needs a GPT run or checkpoint");
  return ctx.gpt(step);
}

/** A model on any backend (analyses use run, act / actHost, addHook, getParam, and clone + setParam for variants). */
export type AnyBert = Bert<unknown>;

/**
 * attnBias: the attention intervention for every model loaded (as `abrupt
 * analyze --attn-bias`): on at the checkpoints where training had it on
 * (attnBiasOn); always on for a lone checkpoint file.
 */
export function makeContext(
  source: Source, data: DataConfig, kernels: Kernels<unknown>, seed: number, outDir: string, step: number,
  attnBias: AttnBiasConfig | null = null,
): AnalysisContext {
  const family = sourceFamily(source);
  if (family === "gpt") return gptContext(source, data, kernels, seed, outDir, step);
  const cache = new Map<number, AnyBert>();
  // "until the drop": the run's own drop step (src/train/events.ts)
  const drop = attnBias?.until === "drop" && source.kind === "run" ? detectEvents(source.run.metrics, source.run.cfg.data.rank, familyOf(source.run.cfg).events).drop : null;
  const ctx: AnalysisContext = {
    source, data, kernels, seed, outDir, step, attnBias, family,
    model(s = ctx.step) {
      let m = cache.get(s);
      if (m) return m;
      const file = source.kind === "run" ? runCheckpoint(source.run, s) : source.file;
      const heads = source.kind === "run" ? source.run.cfg.model.H : source.heads;
      const ck = loadCheckpoint(file, heads !== undefined ? { heads } : {});
      m = new Bert(ck.cfg, kernels);
      m.setParams(ck.params);
      if (attnBias && (source.kind === "checkpoint" || attnBiasOn(attnBias, s, drop))) m.setAttnBias({ c: attnBias.c, layers: attnBias.layers, m: data.m, n: data.n });
      const T = data.m * data.n;
      if (T > ck.cfg.positions) throw new AbruptError(`the model has ${ck.cfg.positions} positions, too few for ${data.m}×${data.n} matrices (${T} tokens)`);
      // keep the two most recent models (swap needs A and B); a sweep over
      // many checkpoints must not hold them all
      if (cache.size >= 2) cache.delete(cache.keys().next().value!);
      cache.set(s, m);
      return m;
    },
  };
  return ctx;
}

/** The context of a GPT run or checkpoint: `gpt(step)` loads the model (the two most recent cached); `model()` refuses. */
function gptContext(source: Source, data: DataConfig, kernels: Kernels<unknown>, seed: number, outDir: string, step: number): AnalysisContext {
  const cache = new Map<number, AnyGpt>();
  const ctx: AnalysisContext = {
    source, data, kernels, seed, outDir, step, attnBias: null, family: "gpt",
    model() {
      throw new AbruptError("this analysis is written for the BERT; the source is a GPT");
    },
    gpt(s = ctx.step) {
      let m = cache.get(s);
      if (m) return m;
      if (source.kind === "run") {
        m = new Gpt(gptConfigOf(source.run.cfg), kernels);
        m.setParams(familyOf(source.run.cfg).load(runCheckpoint(source.run, s), source.run.cfg));
      } else {
        const ck = loadGptCheckpoint(source.file, source.heads !== undefined ? { heads: source.heads } : {});
        m = new Gpt(ck.cfg, kernels);
        m.setParams(ck.params);
      }
      const T = 2 * data.m * data.n;
      if (T > m.cfg.block) throw new AbruptError(`the GPT's block size is ${m.cfg.block}, too small for ${data.m}×${data.n} matrices (${T} tokens)`);
      if (cache.size >= 2) cache.delete(cache.keys().next().value!);
      cache.set(s, m);
      return m;
    },
  };
  return ctx;
}

export function dataOfRun(run: RunHandle): DataConfig {
  return dataConfigOf(run.cfg);
}

/** What an experiment returns: JSON results, figures, one-line findings. */
export interface AnalysisOutput {
  json: Record<string, unknown>;
  figures: Array<{ name: string; spec: VlSpec }>;
  findings: string[];
}

/** Per-cell losses of model outputs against a batch (the trainer's metrics, less mask_abs). */
export function lossSplit(out: Float32Array, targets: Float32Array, hidden: Uint8Array): { loss: number; loss_mask: number; loss_obs: number } {
  const { loss, loss_mask, loss_obs } = splitMetrics(out, targets, hidden);
  return { loss, loss_mask, loss_obs };
}
