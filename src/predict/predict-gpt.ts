// `abrupt predict` for a GPT checkpoint: the same input as for the BERT
// (masked matrices, null = hidden); each matrix becomes the prompt
// [masked X, SEP], the model generates the m·n tokens of X greedily, and every
// cell prints as the value its generated token stands for, or null where the
// token is not a value token (MASK, SEP, 402, 403).

import { type GptBatch, gptBatchFromMatrices, gptPrompts, gptValueOf } from "../data/sequence.js";
import { AbruptError } from "../errors.js";
import type { Kernels } from "../kernels/types.js";
import { Gpt, gptParamSpecs } from "../model/gpt.js";
import { loadGptCheckpoint } from "../store/gpt-checkpoint.js";
import { refuseNonFinite, trainedOnOf } from "./predict.js";

/** Matrices per generation batch (the activations are allocated per batch shape). */
const CHUNK = 256;

export async function predictGpt<Buf>(
  model: Gpt<Buf>,
  matrices: Array<Array<Array<number | null>>>,
  clamp = false,
): Promise<Array<Array<Array<number | null>>>> {
  const all = gptBatchFromMatrices(matrices, clamp);
  const { m, n, cells } = all;
  const P = cells + 1;
  const block = model.cfg.block;
  if (P > block) throw new AbruptError(`the prompt of a ${m}×${n} matrix ([masked X, SEP], ${P} tokens) is longer than the model's block size ${block}`);
  if (2 * cells > block) throw new AbruptError(`a ${m}×${n} matrix needs ${2 * cells} positions (the prompt of ${P} tokens, then ${cells} generated), more than the model's block size ${block}`);
  const prompts = gptPrompts(all);
  const res: Array<Array<Array<number | null>>> = [];
  for (let b0 = 0; b0 < all.B; b0 += CHUNK) {
    const B = Math.min(CHUNK, all.B - b0);
    const gen = await model.generate(prompts.subarray(b0 * P, (b0 + B) * P), B, P, cells);
    for (let b = 0; b < B; b++) res.push(decodeMatrix(gen.subarray(b * cells, (b + 1) * cells), all));
  }
  return res;
}

function decodeMatrix(tokens: Int32Array, shape: Pick<GptBatch, "m" | "n">): Array<Array<number | null>> {
  const M: Array<Array<number | null>> = [];
  for (let i = 0; i < shape.m; i++) {
    const row: Array<number | null> = [];
    for (let j = 0; j < shape.n; j++) {
      const v = gptValueOf(tokens[i * shape.n + j]!);
      row.push(Number.isNaN(v) ? null : v);
    }
    M.push(row);
  }
  return M;
}

/**
 * The GPT of a checkpoint, refused if a weight is NaN or infinite, and the
 * matrix size it was trained on (from its run config, if any).
 */
export function loadGptPredictor<Buf>(
  file: string, kernels: Kernels<Buf>, opts: { heads?: number; attn?: "softmax" | "linear" } = {},
): { model: Gpt<Buf>; trainedOn: { m: number; n: number } | null } {
  const ck = loadGptCheckpoint(file, opts);
  refuseNonFinite(file, ck.params, gptParamSpecs(ck.cfg));
  const model = new Gpt(ck.cfg, kernels);
  model.setParams(ck.params);
  return { model, trainedOn: trainedOnOf(ck.meta) };
}
