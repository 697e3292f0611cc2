// What the GPT versions of the analyses share. A GPT reads [masked X (m·n
// tokens), SEP, X less its last cell] (T = 2·m·n positions) and its logits
// at position m·n + k predict X's cell k = i·n + j: that is the position
// "generating" cell (i, j). The prompt's position k holds cell k of the
// masked input, so the observed cells of row i and column j (what a
// completion of (i, j) needs) are prompt positions, numbered as the BERT's
// cells.
//
// Measures by teacher forcing (one forward pass over the true sequence):
// the cross-entropy and the argmax accuracy at the m·n answer positions, by
// hidden and observed cells. Greedy generation (Gpt.generate, scoreGeneration)
// is what the GPT's evaluation logs; patch uses it.

import { Rng } from "../data/rng.js";
import { type GptBatch, sampleGptBatch } from "../data/sequence.js";
import type { AnalysisContext } from "./context.js";
import type { Tokens } from "./forward.js";
import { type OptimalKeys, optimalKeys } from "./measures.js";

/** `B` GPT sequences from Rng(ctx.seed): the BERT analyses' matrices for the same seed (`mask` [m·n]: the same mask for all). */
export function sampleGpt(ctx: Pick<AnalysisContext, "seed" | "data">, B: number, mask?: Uint8Array): GptBatch {
  return sampleGptBatch(new Rng(ctx.seed), ctx.data, B, undefined, mask);
}

/** The model's input of a GPT batch, for forwardBatch / runWithCache. */
export function gptTokens(b: GptBatch): Tokens {
  return { tokens: b.inputs, B: b.B, T: b.T };
}

/** Teacher-forced scores at the answer positions: mean cross-entropy and argmax accuracy, over all, hidden and observed cells. */
export interface AnswerScores {
  loss: number;
  loss_mask: number;
  loss_obs: number;
  acc: number;
  acc_mask: number;
  acc_obs: number;
}

/** AnswerScores of logits [B, T, V] on batch `b`. */
export function answerScores(logits: Float32Array, b: GptBatch): AnswerScores {
  const { B, T, cells } = b;
  const V = logits.length / (B * T);
  const s = [0, 0], hit = [0, 0], cnt = [0, 0]; // [observed, hidden]
  for (let bi = 0; bi < B; bi++) {
    for (let k = 0; k < cells; k++) {
      const t = cells + k;
      const row = (bi * T + t) * V;
      const target = b.targets[bi * T + t]!;
      let mx = -Infinity, arg = 0;
      for (let v = 0; v < V; v++) if (logits[row + v]! > mx) { mx = logits[row + v]!; arg = v; }
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[row + v]! - mx);
      const h = b.hidden[bi * cells + k]!;
      s[h]! += Math.log(z) + mx - logits[row + target]!;
      if (arg === target) hit[h]!++;
      cnt[h]!++;
    }
  }
  const r = (x: number, n: number) => (n > 0 ? x / n : NaN);
  return {
    loss: r(s[0]! + s[1]!, cnt[0]! + cnt[1]!), loss_mask: r(s[1]!, cnt[1]!), loss_obs: r(s[0]!, cnt[0]!),
    acc: r(hit[0]! + hit[1]!, cnt[0]! + cnt[1]!), acc_mask: r(hit[1]!, cnt[1]!), acc_obs: r(hit[0]!, cnt[0]!),
  };
}

/**
 * Per sample: [the position generating a hidden cell, the prompt positions of
 * the observed cells of its row and column] (those with at least one), as
 * measures.ts's optimalKeys with the query moved to its generating position.
 */
export function generatingKeys(b: GptBatch): OptimalKeys {
  return optimalKeys(b.hidden, b.B, b.m, b.n).map((list) => list.map(([q, ks]) => [b.cells + q, ks] as [number, number[]]));
}
