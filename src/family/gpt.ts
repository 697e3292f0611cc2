// The GPT of SPEC §2 ("GPT variant", minGPT) as a model family: sequences
// [masked X, SEP, X] with their own vocabulary of 405 tokens, next-token
// cross-entropy over all 2·m·n positions, and at every evaluation step the
// greedy generation of X from [masked X, SEP], scored by token accuracy and
// by the MSE of the decoded values (src/train/gpt-metrics.ts).
//
// The run config's model section holds the GPT's shape in the BERT's field
// names: `positions` is the block size (at least 2·m·n, the training
// length; SPEC's 99 for 7×7), `vocab` is 405, `lnEps` 1e-5, and `attn`
// softmax or linear.
//
// Events: on the greedy MSE at hidden cells of the evaluation set, averaged
// over the last 5 evaluations (src/train/events.ts). A model that does not
// use the matrix's structure scores about r/9 (writing 0, the entries' mode)
// to 2·r/9 (writing a value independent of the true one, as the gpt-cpu
// runs do on their plateau), so the plateau is any average at or above
// 0.5·r/9, and the drop, as for the BERT, the first average below 0.2·r/9.

import { Rng } from "../data/rng.js";
import { GPT_VALUE_MAX, GPT_VOCAB, type GptBatch, allocGptBatch, sampleGptBatch } from "../data/sequence.js";
import { AbruptError } from "../errors.js";
import { GPT_DEFAULT, Gpt, type GptConfig, gptGroupMatches, gptParamSpecs } from "../model/gpt.js";
import { gptTrainingBytes } from "../model/memory.js";
import { loadGptCheckpoint, saveGptCheckpoint } from "../store/gpt-checkpoint.js";
import { type RunConfig, dataConfigOf } from "../train/config.js";
import { evaluateGpt, gptLossMetrics } from "../train/gpt-metrics.js";
import { evalFields } from "../train/metrics.js";
import type { FamilyModel, ModelFamily, RunTrainer } from "./types.js";
import { gptCurveSpec } from "../viz/plot.js";
import { runTitle } from "../train/config.js";

/** The model's config of a GPT run. */
export function gptConfigOf(c: RunConfig): GptConfig {
  const m = c.model;
  return { vocab: m.vocab, block: m.positions, L: m.L, H: m.H, d: m.d, ff: m.ff, lnEps: m.lnEps, attn: m.attn ?? "softmax" };
}

const asGpt = <Buf>(m: FamilyModel<Buf>) => m as unknown as Gpt<Buf>;

function gptTrainer<Buf>(cfg: RunConfig, fm: FamilyModel<Buf>, evalSeed: number): RunTrainer {
  const model = asGpt(fm);
  const t = cfg.train;
  const data = dataConfigOf(cfg);
  const B = t.batch;
  const batch: GptBatch = allocGptBatch(B, data.m, data.n);
  const T = batch.T;
  const evalBatch = t.eval_every > 0 ? sampleGptBatch(new Rng(evalSeed), data, t.eval_batch) : null;
  return {
    step(rng) {
      sampleGptBatch(rng, data, B, batch);
      model.forward(batch.inputs, B, T);
      const l = model.loss(batch.targets);
      model.backward(l.dlogits!);
      const rows = model.hostCopy(l.rowLoss); // awaited after the step is queued
      return (async () => gptLossMetrics(await rows, batch))();
    },
    async extras(step) {
      const line: Record<string, number> = {};
      if (evalBatch && step % t.eval_every === 0) {
        model.forward(evalBatch.inputs, evalBatch.B, T);
        const lm = gptLossMetrics(await model.hostCopy(model.loss(evalBatch.targets, false).rowLoss), evalBatch);
        Object.assign(line, evalFields(lm, ["loss", "loss_mask", "loss_obs"]));
        Object.assign(line, evalFields((await evaluateGpt(model, evalBatch)).metrics));
      }
      return line;
    },
  };
}

/** minGPT's decayed tensors: the weights of the linear layers (c_attn, c_proj, c_fc, lm_head). */
export function gptDecays(name: string): boolean {
  return /^transformer\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$|^lm_head\.weight$/.test(name);
}

const GPT_MODEL = { L: GPT_DEFAULT.L, H: GPT_DEFAULT.H, d: GPT_DEFAULT.d, ff: GPT_DEFAULT.ff, positions: GPT_DEFAULT.block, vocab: GPT_VOCAB, lnEps: GPT_DEFAULT.lnEps, attn: GPT_DEFAULT.attn };

export const gptFamily: ModelFamily = {
  name: "gpt",
  title: "GPT",
  defaultPreset: "gpt-cpu",
  presets: {
    /** SPEC §2's GPT run: 7×7 rank 2, p_mask 0.3, L2 H2 d256, batch 256, lr 1e-4, 100 000 steps */
    gpt: {
      family: "gpt",
      model: GPT_MODEL,
      data: { m: 7, n: 7, rank: 2, p_mask: 0.3 },
      train: { steps: 100000, batch: 256, lr: 1e-4 },
    },
    /** the GPT's learning curve within minutes on 2 cores: the BERT's cpu setting (3×3 rank 1) with a small GPT */
    "gpt-cpu": {
      family: "gpt",
      model: { ...GPT_MODEL, d: 64, ff: 256, positions: 19 },
      data: { m: 3, n: 3, rank: 1, p_mask: 0.2 },
      train: {
        steps: 16000, batch: 128, lr: 1e-3, warmup: 200, lr_decay: "cosine", decay_start: 8000, lr_final: 0,
        eval_every: 100, eval_batch: 256, ckpt_every: 1000, ckpt_log: 10,
      },
    },
  },
  base: { model: GPT_MODEL },
  validate(c) {
    const { m, n, rank, factor, clamp } = c.data;
    if (c.model.vocab !== GPT_VOCAB) throw new AbruptError(`config: model.vocab of a GPT must be ${GPT_VOCAB} (MASK, 401 values, 2 unused, SEP; got ${c.model.vocab})`);
    if (c.model.positions < 2 * m * n) throw new AbruptError(`config: a GPT on ${m}×${n} matrices reads ${2 * m * n} tokens but model.positions (its block size) is ${c.model.positions}`);
    if (c.train.attn_bias) throw new AbruptError(`config: train.attn_bias (--attn-bias) is for the BERT: its target keys are the masked cell's row and column, which the GPT's causal sequence does not have`);
    if (!clamp && (factor !== "uniform" || rank > GPT_VALUE_MAX)) {
      throw new AbruptError(`config: a GPT's values must lie in [-${GPT_VALUE_MAX}, ${GPT_VALUE_MAX}], which rank ${rank} ${factor} factors can leave; set data.clamp (--clamp)`);
    }
  },
  describe(c) {
    const m = c.model;
    return `GPT L${m.L} H${m.H} d${m.d} ff${m.ff}${m.attn === "linear" ? " linear attention" : ""}`;
  },
  trainingBytes(c) {
    const d = c.data, t = c.train;
    // the evaluation batch has activations of its own unless it has the training batch's size
    const evalB = t.eval_every > 0 && t.eval_batch !== t.batch ? t.eval_batch : 0;
    return gptTrainingBytes(gptConfigOf(c), t.batch + evalB, 2 * d.m * d.n, t.backend === "webgpu");
  },
  specs: (c) => gptParamSpecs(gptConfigOf(c)),
  decays: gptDecays,
  groupMatches: gptGroupMatches,
  create: (c, kernels) => new Gpt(gptConfigOf(c), kernels),
  init(model, c, seed) {
    asGpt(model).init(seed, c.train.init_std);
  },
  save(file, c, params, meta) {
    saveGptCheckpoint(file, gptConfigOf(c), params, meta);
  },
  load(file, c) {
    const want = gptConfigOf(c);
    const ck = loadGptCheckpoint(file, { heads: want.H, attn: want.attn });
    const have = ck.cfg;
    if (have.L !== want.L || have.d !== want.d || have.ff !== want.ff || have.vocab !== want.vocab || have.block !== want.block) {
      throw new AbruptError(`${file} has GPT L${have.L} d${have.d} ff${have.ff} vocab ${have.vocab} block ${have.block}, the run needs L${want.L} d${want.d} ff${want.ff} vocab ${want.vocab} block ${want.block}`);
    }
    return ck.params;
  },
  events: { field: "eval_mse_mask", window: 5, sparse: true, band: [0.5, Infinity], label: "eval greedy MSE at hidden cells" },
  measureColumns: ["eval_acc_mask", "eval_mse_mask", "eval_nonvalue_mask"],
  curveSpec(lines, c, marks) {
    return gptCurveSpec(lines, { rank: c.data.rank, marks, title: runTitle(c, gptFamily.describe(c)) });
  },
  trainer: <Buf>(c: RunConfig, model: FamilyModel<Buf>, evalSeed: number) => gptTrainer(c, model, evalSeed),
};
