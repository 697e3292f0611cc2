// Metrics of the GPT variant (SPEC §2): the training losses split by part of
// the sequence, and the evaluation by greedy generation of the m·n tokens
// after SEP from the prompt [masked X, SEP].
//
// Position t of the model's input predicts token t + 1 of the sequence, so
// positions 0 .. m·n-1 predict the masked X and SEP ("prompt"), and position
// m·n + i predicts cell i of X ("answer": hidden or observed cell).
//
// Generated tokens that are not value tokens (MASK, SEP, the unused 402 and
// 403) decode to no value: they count as wrong for the accuracies, are left
// out of the MSEs, and their share is reported (`nonvalue`, `nonvalue_mask`).
// An MSE with no value token to average is NaN.

import { type GptBatch, gptPrompts, gptValueOf } from "../data/sequence.js";
import type { Gpt } from "../model/gpt.js";

export interface GptLossMetrics {
  /** mean next-token loss over all 2·m·n positions (the training loss) */
  loss: number;
  /** over the positions predicting masked X and SEP */
  loss_prompt: number;
  /** over the positions predicting X */
  loss_answer: number;
  /** over the positions predicting X at hidden cells */
  loss_mask: number;
  /** over the positions predicting X at observed cells */
  loss_obs: number;
}

/** The losses of a batch from the per-position losses rowLoss [B, T] (Gpt.loss().rowLoss, on the host). */
export function gptLossMetrics(rowLoss: Float32Array, batch: GptBatch): GptLossMetrics {
  const { B, T, cells } = batch;
  const s = { all: 0, prompt: 0, answer: 0, mask: 0, obs: 0 };
  let nMask = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const l = rowLoss[b * T + t]!;
      s.all += l;
      if (t < cells) s.prompt += l;
      else {
        s.answer += l;
        if (batch.hidden[b * cells + t - cells]) {
          s.mask += l;
          nMask++;
        } else s.obs += l;
      }
    }
  }
  const nObs = B * cells - nMask;
  return {
    loss: s.all / (B * T),
    loss_prompt: s.prompt / (B * cells),
    loss_answer: s.answer / (B * cells),
    loss_mask: nMask > 0 ? s.mask / nMask : NaN,
    loss_obs: nObs > 0 ? s.obs / nObs : NaN,
  };
}

export interface GptEvalMetrics {
  /** exact-token accuracy over all generated cells */
  acc: number;
  /** at observed cells (copying) */
  acc_obs: number;
  /** at hidden cells (completion) */
  acc_mask: number;
  /** mean squared error of the decoded values against X (rounded), over cells with a value token */
  mse: number;
  mse_obs: number;
  mse_mask: number;
  /** share of generated tokens that are not value tokens, over all cells and over hidden cells */
  nonvalue: number;
  nonvalue_mask: number;
}

/** Scores generated tokens [B, m·n] against a batch (see the rules at the top). */
export function scoreGeneration(generated: Int32Array, batch: GptBatch): GptEvalMetrics {
  const { B, cells, S, seq } = batch;
  const c = { n: [0, 0], hit: [0, 0], sse: [0, 0], valued: [0, 0] }; // [observed, hidden]
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < cells; i++) {
      const h = batch.hidden[b * cells + i]!;
      const tok = generated[b * cells + i]!;
      c.n[h]!++;
      if (tok === seq[b * S + cells + 1 + i]) c.hit[h]!++;
      const v = gptValueOf(tok);
      if (!Number.isNaN(v)) {
        c.valued[h]!++;
        c.sse[h]! += (v - batch.values[b * cells + i]!) ** 2;
      }
    }
  }
  const [nObs, nMask] = c.n as [number, number];
  const ratio = (x: number, n: number) => (n > 0 ? x / n : NaN);
  return {
    acc: ratio(c.hit[0]! + c.hit[1]!, nObs + nMask),
    acc_obs: ratio(c.hit[0]!, nObs),
    acc_mask: ratio(c.hit[1]!, nMask),
    mse: ratio(c.sse[0]! + c.sse[1]!, c.valued[0]! + c.valued[1]!),
    mse_obs: ratio(c.sse[0]!, c.valued[0]!),
    mse_mask: ratio(c.sse[1]!, c.valued[1]!),
    nonvalue: 1 - ratio(c.valued[0]! + c.valued[1]!, nObs + nMask),
    nonvalue_mask: 1 - ratio(c.valued[1]!, nMask),
  };
}

/** Greedy generation of the m·n tokens after SEP for every sample, and their scores. */
export async function evaluateGpt<Buf>(model: Gpt<Buf>, batch: GptBatch): Promise<{ generated: Int32Array; metrics: GptEvalMetrics }> {
  const generated = await model.generate(gptPrompts(batch), batch.B, batch.cells + 1, batch.cells);
  return { generated, metrics: scoreGeneration(generated, batch) };
}
