// The GPT variant's sequences (SPEC §2, "GPT variant"): one matrix becomes
//   [masked X (m·n tokens, 0 = MASK), SEP, X (m·n tokens)]   (2·m·n + 1 tokens)
// with its own small vocabulary: 0 = MASK, a value v with |v| <= 2 at step
// 0.01 is 1 + round(100·v) + 200 (ids 1..401), SEP = 404; 402 and 403 are
// unused; 405 ids. (The reference truncates 100·v + 201 to an integer, which
// puts some values one id low; we round.) The model reads the sequence less
// its last token and predicts the sequence less its first: next-token
// cross-entropy over all 2·m·n positions, the prompt included.
//
// The matrices, masks and PRNG draws are the BERT's (sampleBatch), so a seed
// gives the same matrices to both models.

import { AbruptError } from "../errors.js";
import { type Batch, type DataConfig, allocBatch, sampleBatch } from "./matrix.js";
import type { Rng } from "./rng.js";

export const GPT_MASK_ID = 0;
export const GPT_SEP_ID = 404;
export const GPT_VOCAB = 405;
/** values are in [-GPT_VALUE_MAX, GPT_VALUE_MAX] */
export const GPT_VALUE_MAX = 2;
const STEPS = 100 * GPT_VALUE_MAX; // 200 hundredths each side of 0

/** Token id of a value: 1 + round(100 v) + 200; |v| > 2 throws unless clamp. */
export function gptTokenOf(v: number, clamp = false): number {
  if (!Number.isFinite(v)) throw new AbruptError(`value ${v} cannot be tokenised`);
  let h = Math.round(100 * v);
  if (Math.abs(h) > STEPS) {
    if (!clamp) throw new AbruptError(`value ${v} is outside the GPT vocabulary's range [-${GPT_VALUE_MAX}, ${GPT_VALUE_MAX}] (use --clamp to clamp)`);
    h = Math.max(-STEPS, Math.min(STEPS, h));
  }
  return 1 + h + STEPS;
}

/** The value a token id stands for, or NaN when it is not a value token (MASK, SEP, 402, 403). */
export function gptValueOf(id: number): number {
  if (!(Number.isInteger(id) && id >= 1 && id <= 1 + 2 * STEPS)) return NaN;
  return (id - 1 - STEPS) / 100;
}

export interface GptBatch {
  B: number;
  m: number;
  n: number;
  /** m·n: cells per matrix, tokens per half of the sequence */
  cells: number;
  /** 2·m·n + 1: tokens per sequence */
  S: number;
  /** S - 1: positions the model reads (and predicts) */
  T: number;
  /** [B, S] the sequences */
  seq: Int32Array;
  /** [B, T] seq without its last token: the model's input */
  inputs: Int32Array;
  /** [B, T] seq without its first token: the next-token targets */
  targets: Int32Array;
  /** [B, cells] X rounded to prec decimals (view of base.targets) */
  values: Float32Array;
  /** [B, cells] 1 = hidden, 0 = observed (view of base.hidden) */
  hidden: Uint8Array;
  /** the BERT batch the matrices were drawn into */
  base: Batch;
}

export function allocGptBatch(B: number, m: number, n: number): GptBatch {
  const base = allocBatch(B, m, n);
  const cells = m * n, S = 2 * cells + 1, T = S - 1;
  return {
    B, m, n, cells, S, T,
    seq: new Int32Array(B * S), inputs: new Int32Array(B * T), targets: new Int32Array(B * T),
    values: base.targets, hidden: base.hidden, base,
  };
}

/** Fills seq, inputs and targets of `batch` from its values and hidden cells. */
function tokenise(batch: GptBatch, clamp: boolean): void {
  const { B, cells, S, T, seq, values, hidden } = batch;
  for (let b = 0; b < B; b++) {
    const s = b * S;
    for (let i = 0; i < cells; i++) {
      const v = values[b * cells + i]!;
      const tok = hidden[b * cells + i] ? GPT_MASK_ID : gptTokenOf(v, clamp);
      seq[s + i] = tok;
      // the answer half holds every cell; a cell the user left unknown (NaN) has no answer token
      seq[s + cells + 1 + i] = Number.isNaN(v) ? GPT_MASK_ID : gptTokenOf(v, clamp);
    }
    seq[s + cells] = GPT_SEP_ID;
    batch.inputs.set(seq.subarray(s, s + T), b * T);
    batch.targets.set(seq.subarray(s + 1, s + S), b * T);
  }
}

/**
 * Draws one batch with the BERT's sampler (same PRNG draws, same matrices
 * and masks for the same seed; `mask` [m·n] fixes the mask for every sample)
 * and writes the GPT sequences. Values with |v| > 2 are an error unless
 * c.clamp (then their tokens are clamped; `values` keep the true values).
 */
export function sampleGptBatch(rng: Rng, c: DataConfig, B: number, out?: GptBatch, mask?: Uint8Array): GptBatch {
  const batch = out ?? allocGptBatch(B, c.m, c.n);
  if (batch.B !== B || batch.m !== c.m || batch.n !== c.n) throw new Error("sampleGptBatch: batch buffer has the wrong shape");
  // the BERT's tokens range over [-10, 10]; ours are checked in tokenise
  sampleBatch(rng, { ...c, clamp: true }, B, batch.base, mask);
  tokenise(batch, c.clamp);
  return batch;
}

/**
 * The GPT sequences of a BERT batch (its matrices and masks; `base.targets`
 * are the values), e.g. to run both models on the same data or on a changed
 * copy of a batch. The batch is shared, not copied.
 */
export function gptBatchOf(base: Batch, clamp = false): GptBatch {
  const cells = base.m * base.n, S = 2 * cells + 1, T = S - 1, B = base.B;
  const batch: GptBatch = {
    B, m: base.m, n: base.n, cells, S, T,
    seq: new Int32Array(B * S), inputs: new Int32Array(B * T), targets: new Int32Array(B * T),
    values: base.targets, hidden: base.hidden, base,
  };
  tokenise(batch, clamp);
  return batch;
}

/**
 * A batch from user matrices (null = hidden), as batchFromMatrices for the
 * BERT. The answer half at hidden cells is MASK (the value is unknown): only
 * the prompt [masked X, SEP] is meant to be read.
 */
export function gptBatchFromMatrices(matrices: Array<Array<Array<number | null>>>, clamp = false): GptBatch {
  if (matrices.length === 0) throw new AbruptError("no matrices given");
  const m = matrices[0]!.length;
  const n = m > 0 ? matrices[0]![0]!.length : 0;
  if (m === 0 || n === 0) throw new AbruptError("matrix 0 is empty");
  const batch = allocGptBatch(matrices.length, m, n);
  matrices.forEach((X, b) => {
    if (X.length !== m) throw new AbruptError(`matrix ${b} has ${X.length} rows, expected ${m} like matrix 0`);
    X.forEach((row, i) => {
      if (row.length !== n) throw new AbruptError(`matrix ${b} row ${i} has ${row.length} cells, expected ${n}`);
      row.forEach((v, j) => {
        const t = b * batch.cells + i * n + j;
        if (v !== null && typeof v !== "number") throw new AbruptError(`matrix ${b} cell (${i}, ${j}) is not a number or null`);
        batch.hidden[t] = v === null ? 1 : 0;
        batch.values[t] = v === null ? NaN : v;
      });
    });
  });
  tokenise(batch, clamp);
  return batch;
}

/** The prompts [B, cells + 1] = [masked X, SEP] of each sequence. */
export function gptPrompts(batch: GptBatch): Int32Array {
  const P = batch.cells + 1;
  const out = new Int32Array(batch.B * P);
  for (let b = 0; b < batch.B; b++) out.set(batch.seq.subarray(b * batch.S, b * batch.S + P), b * P);
  return out;
}
