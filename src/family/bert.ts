// The BERT of SPEC §2 as a model family: masked cells regressed by a scalar
// read-out, MSE over all cells, the events on L_mask, the progress measures
// during training and the attention intervention (SPEC §5).

import { type Batch, allocBatch, sampleBatch } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import { Bert } from "../model/bert.js";
import { trainingBytes } from "../model/memory.js";
import { groupMatches, paramSpecs } from "../model/params.js";
import { loadCheckpoint, saveCheckpoint } from "../store/checkpoint.js";
import { type RunConfig, attnBiasOn, dataConfigOf, modelConfigOf } from "../train/config.js";
import { batchMetrics, evalFields } from "../train/metrics.js";
import { stepMeasures } from "../analysis/measures.js";
import type { FamilyModel, ModelFamily, RunTrainer } from "./types.js";
import { lossCurveSpec } from "../viz/plot.js";
import { runTitle } from "../train/config.js";

const modelOf = modelConfigOf;

const asBert = <Buf>(m: FamilyModel<Buf>) => m as unknown as Bert<Buf>;

function bertTrainer<Buf>(cfg: RunConfig, fm: FamilyModel<Buf>, evalSeed: number): RunTrainer {
  const model = asBert(fm);
  const k = model.kernels;
  const t = cfg.train;
  const data = dataConfigOf(cfg);
  const B = t.batch;
  const batch: Batch = allocBatch(B, data.m, data.n);
  const T = batch.T;
  const evalBatch = t.eval_every > 0 ? sampleBatch(new Rng(evalSeed), data, t.eval_batch) : null;
  const dpred = k.alloc(B * T);
  const targets = k.alloc(B * T);
  // the attention intervention, on from its step (training forward, evaluation and the measures alike)
  const attnBias = t.attn_bias ? { c: t.attn_bias.c, layers: t.attn_bias.layers, m: data.m, n: data.n } : null;
  const measureEvery = model.cfg.L > 0 ? t.progress_every : 0;
  let outHost: Float32Array | null = null;
  return {
    step(rng, step, drop) {
      sampleBatch(rng, data, B, batch);
      k.upload(targets, batch.targets);
      if (attnBias) model.setAttnBias(attnBiasOn(t.attn_bias!, step, drop) ? attnBias : null);
      const out = model.forward(batch.tokens, B, T);
      const host = k.download(out); // awaited after the step is queued
      k.mse(dpred, out, targets, B * T, 1 / (B * T));
      model.backward(dpred);
      return (async () => {
        outHost = await host;
        return batchMetrics(outHost, batch);
      })();
    },
    async extras(step) {
      const line: Record<string, unknown> = {};
      // from this step's forward activations (before the eval pass, which may reuse them)
      if (measureEvery > 0 && step % measureEvery === 0 && outHost) Object.assign(line, await stepMeasures(model as Bert<unknown>, batch, outHost, cfg.data.prec));
      if (evalBatch && step % t.eval_every === 0) {
        const eo = model.forward(evalBatch.tokens, evalBatch.B, T);
        Object.assign(line, evalFields(batchMetrics(await k.download(eo), evalBatch)));
      }
      return line;
    },
  };
}

/** Linear-layer weights: the tensors weight decay applies to (as the reference's minGPT optimizer groups). */
export function bertDecays(name: string): boolean {
  return /^blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.weight$|^readout\.weight$/.test(name);
}

export const bertFamily: ModelFamily = {
  name: "bert",
  title: "BERT",
  defaultPreset: "cpu",
  presets: {}, // the BERT's presets are the base ones (src/train/config.ts)
  base: {},
  validate(c) {
    const { m, n } = c.data;
    if (c.model.attn !== undefined) throw new AbruptError(`config: model.attn is the GPT's (the BERT's attention is bidirectional softmax)`);
    if (m * n > c.model.positions) throw new AbruptError(`config: an ${m}×${n} matrix needs ${m * n} positions but model.positions is ${c.model.positions}`);
    if (c.model.vocab < 2002) throw new AbruptError(`config: model.vocab must be at least 2002 (got ${c.model.vocab})`);
    const ab = c.train.attn_bias;
    for (const l of ab?.layers ?? []) if (l >= c.model.L) throw new AbruptError(`config: train.attn_bias: layer ${l} is outside 0..${c.model.L - 1} (the model has ${c.model.L} layers)`);
  },
  describe(c) {
    const m = c.model;
    return `BERT L${m.L} H${m.H} d${m.d} ff${m.ff}`;
  },
  trainingBytes(c) {
    const t = c.train, d = c.data;
    return trainingBytes(modelOf(c), t.batch, d.m * d.n, t.eval_every > 0 ? t.eval_batch : 0, t.backend === "webgpu");
  },
  specs: (c) => paramSpecs(modelOf(c)),
  decays: bertDecays,
  groupMatches,
  create: (c, kernels) => new Bert(modelOf(c), kernels),
  init(model, c, seed) {
    asBert(model).init(seed, c.train.init_std, c.train.readout_init);
  },
  save(file, c, params, meta) {
    saveCheckpoint(file, modelOf(c), params, meta);
  },
  load(file, c) {
    const ck = loadCheckpoint(file, { heads: c.model.H });
    const have = ck.cfg, want = modelOf(c);
    if (have.L !== want.L || have.d !== want.d || have.ff !== want.ff || have.vocab !== want.vocab || have.positions !== want.positions) {
      throw new AbruptError(`${file} has BERT L${have.L} d${have.d} ff${have.ff} vocab ${have.vocab} positions ${have.positions}, the run needs L${want.L} d${want.d} ff${want.ff} vocab ${want.vocab} positions ${want.positions}`);
    }
    return ck.params;
  },
  events: { field: "loss_mask", window: 50, sparse: false, label: "L_mask" },
  measureColumns: ["attn_progress", "collapse", "repetition"],
  curveSpec(lines, c, marks) {
    const m = c.model;
    return lossCurveSpec(lines, { rank: c.data.rank, pMask: c.data.p_mask, marks, title: runTitle(c, `BERT L${m.L} H${m.H} d${m.d}`) });
  },
  trainer: <Buf>(c: RunConfig, model: FamilyModel<Buf>, evalSeed: number) => bertTrainer(c, model, evalSeed),
};
