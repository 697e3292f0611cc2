// Low-rank matrix completion posed as masked language modelling (SPEC §1).
// X = U Vᵀ with U [m,r], V [n,r]; rounded to `prec` decimals (the regression
// target); each entry hidden with probability pMask (token 0 = MASK); the
// m×n matrix is read row by row into m·n tokens.

import { AbruptError } from "../errors.js";
import { Rng } from "./rng.js";

export const MASK_ID = 0;
export const VALUE_MIN = -10;
export const VALUE_MAX = 10;
/** 1 MASK id + 2001 values -10.00 … 10.00 at step 0.01 */
export const VOCAB = 2002;

export type Factor = "uniform" | "gaussian" | "laplace";

export interface DataConfig {
  m: number;
  n: number;
  rank: number;
  pMask: number;
  /** decimals the targets are rounded to (2 in the paper) */
  prec: number;
  factor: Factor;
  /** clamp values outside [-10, 10] instead of failing */
  clamp: boolean;
}

export interface Batch {
  B: number;
  m: number;
  n: number;
  /** m*n */
  T: number;
  /** [B,T] token ids; MASK_ID at hidden cells */
  tokens: Int32Array;
  /** [B,T] rounded values of X (all cells) */
  targets: Float32Array;
  /** [B,T] 1 = hidden, 0 = observed */
  hidden: Uint8Array;
}

export function allocBatch(B: number, m: number, n: number): Batch {
  const T = m * n;
  return {
    B, m, n, T,
    tokens: new Int32Array(B * T),
    targets: new Float32Array(B * T),
    hidden: new Uint8Array(B * T),
  };
}

export function roundTo(x: number, prec: number): number {
  const s = 10 ** prec;
  return Math.round(x * s) / s;
}

/** Token id of a value: 1 + round((v + 10)·100); out-of-range values throw unless clamp. */
export function tokenOf(v: number, clamp = false): number {
  if (!Number.isFinite(v)) throw new AbruptError(`value ${v} cannot be tokenised`);
  if (v < VALUE_MIN || v > VALUE_MAX) {
    if (!clamp) {
      throw new AbruptError(
        `value ${v} is outside the vocabulary range [${VALUE_MIN}, ${VALUE_MAX}] (use --clamp to clamp)`,
      );
    }
    v = Math.min(VALUE_MAX, Math.max(VALUE_MIN, v));
  }
  return 1 + Math.round((v - VALUE_MIN) * 100);
}

/** Value a token id stands for (NaN for MASK). */
export function valueOf(id: number): number {
  if (id === MASK_ID) return NaN;
  return roundTo((id - 1) / 100 + VALUE_MIN, 2);
}

function drawFactor(rng: Rng, factor: Factor): number {
  switch (factor) {
    case "uniform":
      return rng.range(-1, 1);
    case "gaussian":
      return 0.5 * rng.normal();
    case "laplace":
      return rng.laplace(0.25);
  }
}

export function validateDataConfig(c: DataConfig): void {
  const int = (x: number) => Number.isInteger(x) && x > 0;
  if (!int(c.m) || !int(c.n)) throw new AbruptError(`m and n must be positive integers (got m=${c.m}, n=${c.n})`);
  if (!int(c.rank) || c.rank > Math.min(c.m, c.n)) {
    throw new AbruptError(`rank must be an integer in [1, min(m, n)] = [1, ${Math.min(c.m, c.n)}] (got ${c.rank})`);
  }
  if (!(c.pMask >= 0 && c.pMask < 1)) throw new AbruptError(`p_mask must be in [0, 1) (got ${c.pMask})`);
  if (!Number.isInteger(c.prec) || c.prec < 0 || c.prec > 2) {
    throw new AbruptError(`prec must be 0, 1 or 2 (the vocabulary has step 0.01; got ${c.prec})`);
  }
}

/**
 * Draws one batch. Per sample, in this order: U (m×r, row-major), V (n×r),
 * then the mask (m·n uniforms, hidden if < pMask) unless `mask` is given
 * ([T], 1 = hidden), which is then used for every sample.
 */
export function sampleBatch(rng: Rng, c: DataConfig, B: number, out?: Batch, mask?: Uint8Array): Batch {
  const { m, n, rank: r } = c;
  const T = m * n;
  const batch = out ?? allocBatch(B, m, n);
  if (batch.B !== B || batch.m !== m || batch.n !== n) throw new Error("sampleBatch: batch buffer has the wrong shape");
  if (mask && mask.length !== T) throw new AbruptError(`mask has ${mask.length} cells, expected ${T}`);
  const U = new Float64Array(m * r);
  const V = new Float64Array(n * r);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < U.length; i++) U[i] = drawFactor(rng, c.factor);
    for (let i = 0; i < V.length; i++) V[i] = drawFactor(rng, c.factor);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let x = 0;
        for (let k = 0; k < r; k++) x += U[i * r + k]! * V[j * r + k]!;
        const t = b * T + i * n + j;
        const v = roundTo(x, c.prec);
        batch.targets[t] = v;
        const h = mask ? mask[i * n + j]! : rng.uniform() < c.pMask ? 1 : 0;
        batch.hidden[t] = h;
        batch.tokens[t] = h ? MASK_ID : tokenOf(v, c.clamp);
      }
    }
  }
  return batch;
}

/**
 * A structured mask ([m·n], 1 = hidden): the listed rows and columns are
 * hidden entirely, except the cells in `keep` ([row, col], 0-based), which
 * stay observed. E.g. rows 3 and 6 hidden except (3,1) and (6,5).
 */
export function structuredMask(
  m: number, n: number,
  spec: { rows?: number[]; cols?: number[]; keep?: Array<[number, number]> },
): Uint8Array {
  const mask = new Uint8Array(m * n);
  for (const i of spec.rows ?? []) {
    if (!(Number.isInteger(i) && i >= 0 && i < m)) throw new AbruptError(`mask row ${i} is outside 0..${m - 1}`);
    for (let j = 0; j < n; j++) mask[i * n + j] = 1;
  }
  for (const j of spec.cols ?? []) {
    if (!(Number.isInteger(j) && j >= 0 && j < n)) throw new AbruptError(`mask column ${j} is outside 0..${n - 1}`);
    for (let i = 0; i < m; i++) mask[i * n + j] = 1;
  }
  for (const [i, j] of spec.keep ?? []) {
    if (!(i >= 0 && i < m && j >= 0 && j < n)) throw new AbruptError(`kept cell (${i}, ${j}) is outside the ${m}×${n} matrix`);
    mask[i * n + j] = 0;
  }
  return mask;
}

/**
 * A batch from user matrices (null = hidden). All matrices must share one
 * shape. Targets at hidden cells are NaN (unknown).
 */
export function batchFromMatrices(matrices: Array<Array<Array<number | null>>>, clamp = false): Batch {
  if (matrices.length === 0) throw new AbruptError("no matrices given");
  const m = matrices[0]!.length;
  const n = m > 0 ? matrices[0]![0]!.length : 0;
  if (m === 0 || n === 0) throw new AbruptError("matrix 0 is empty");
  const batch = allocBatch(matrices.length, m, n);
  matrices.forEach((X, b) => {
    if (X.length !== m) throw new AbruptError(`matrix ${b} has ${X.length} rows, expected ${m} like matrix 0`);
    X.forEach((row, i) => {
      if (row.length !== n) throw new AbruptError(`matrix ${b} row ${i} has ${row.length} cells, expected ${n}`);
      row.forEach((v, j) => {
        const t = b * batch.T + i * n + j;
        if (v === null) {
          batch.hidden[t] = 1;
          batch.tokens[t] = MASK_ID;
          batch.targets[t] = NaN;
        } else {
          if (typeof v !== "number") throw new AbruptError(`matrix ${b} cell (${i}, ${j}) is not a number or null`);
          batch.hidden[t] = 0;
          batch.tokens[t] = tokenOf(v, clamp);
          batch.targets[t] = v;
        }
      });
    });
  });
  return batch;
}
