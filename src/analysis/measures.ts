// The plateau progress measures of SPEC §5 as plain functions on arrays, so
// that the checkpoint analysis (progress.ts) and the trainer (every
// --progress-every K steps, from the step's own forward activations) compute
// the same numbers. Definitions (after Gopalani & Hu, "What Happens During
// the Loss Plateau?"):
//
// - attention progress of a head: for each HIDDEN query cell q = (i, j) with
//   at least one observed cell in row i or column j (its "optimal keys",
//   the targets of src/model/attn-bias.ts), Σ_{k optimal} |A[q,k]| / Σ_k |A[q,k]|;
//   averaged over those queries of the batch. (Σ_k |A| is 1 after softmax;
//   it matters only for patterns replaced through hooks.)
// - collapse of an activation [B,T,C]: mean pairwise cosine similarity of the
//   T positions' vectors of a sample (pairs of nonzero vectors), averaged
//   over samples.
// - repetition: fraction of adjacent outputs (t, t+1 in the row-major
//   sequence, across row ends too) that are equal after rounding to the
//   data's precision (`prec` decimals: the targets' grid), averaged over
//   samples.

import type { Batch } from "../data/matrix.js";
import type { Bert } from "../model/bert.js";

/** Per sample: [hidden query, its optimal keys (observed cells of its row and column)]. */
export type OptimalKeys = Array<Array<[number, number[]]>>;

export function optimalKeys(hidden: Uint8Array, B: number, m: number, n: number): OptimalKeys {
  const T = m * n;
  const all: OptimalKeys = [];
  for (let b = 0; b < B; b++) {
    const list: Array<[number, number[]]> = [];
    for (let q = 0; q < T; q++) {
      if (!hidden[b * T + q]) continue;
      const i = Math.floor(q / n), j = q % n;
      const ks: number[] = [];
      for (let c = 0; c < n; c++) if (!hidden[b * T + i * n + c]) ks.push(i * n + c);
      for (let r = 0; r < m; r++) if (r !== i && !hidden[b * T + r * n + j]) ks.push(r * n + j);
      if (ks.length > 0) list.push([q, ks]);
    }
    all.push(list);
  }
  return all;
}

/** Number of queries counted by the attention progress. */
export function queryCount(opt: OptimalKeys): number {
  return opt.reduce((s, l) => s + l.length, 0);
}

/**
 * mass[h] += Σ over the counted queries of Σ_{k optimal} |A| / Σ_k |A|, for
 * one layer's pattern att [B,H,T,T] (a row with Σ|A| = 0 adds 0).
 */
export function addAttnMass(mass: Float64Array, att: Float32Array, opt: OptimalKeys, H: number, T: number): void {
  for (let b = 0; b < opt.length; b++) {
    for (const [q, ks] of opt[b]!) {
      for (let h = 0; h < H; h++) {
        const row = ((b * H + h) * T + q) * T;
        let all = 0;
        for (let k = 0; k < T; k++) all += Math.abs(att[row + k]!);
        if (all === 0) continue;
        let on = 0;
        for (const k of ks) on += Math.abs(att[row + k]!);
        mass[h]! += on / all;
      }
    }
  }
}

/** Σ over samples of the mean pairwise cosine similarity of x [B,T,C] over positions (1 for a sample with < 2 nonzero vectors). */
export function collapseSum(x: Float32Array, B: number, T: number, C: number): number {
  // Σ_{t<t'} cos = (‖Σ u_t‖² − Σ‖u_t‖²)/2 over the unit vectors u_t
  const sum = new Float64Array(C);
  let total = 0;
  for (let b = 0; b < B; b++) {
    sum.fill(0);
    let nz = 0;
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * C;
      let nrm = 0;
      for (let c = 0; c < C; c++) nrm += x[o + c]! * x[o + c]!;
      if (nrm === 0) continue;
      nz++;
      const inv = 1 / Math.sqrt(nrm);
      for (let c = 0; c < C; c++) sum[c]! += x[o + c]! * inv;
    }
    let ss = 0;
    for (let c = 0; c < C; c++) ss += sum[c]! * sum[c]!;
    total += nz > 1 ? (ss - nz) / (nz * (nz - 1)) : 1;
  }
  return total;
}

/** Σ over samples of the fraction of adjacent outputs out [B,T] equal at `prec` decimals. */
export function repetitionSum(out: Float32Array, B: number, T: number, prec: number): number {
  if (T < 2) return 0;
  const s = 10 ** prec;
  let total = 0;
  for (let b = 0; b < B; b++) {
    let rep = 0;
    for (let t = 0; t + 1 < T; t++) if (Math.round(out[b * T + t]! * s) === Math.round(out[b * T + t + 1]! * s)) rep++;
    total += rep / (T - 1);
  }
  return total;
}

/** The five sites of SPEC §5, in the last layer l = L−1 of the post-LN BERT. */
export const COLLAPSE_SITES = ["before_attn", "attn_out", "after_attn", "after_mlp", "before_head"] as const;
export type CollapseSite = (typeof COLLAPSE_SITES)[number];

/**
 * Hook names of the collapse sites for a model of L ≥ 1 layers:
 * before_attn = the last layer's input (blocks.{L−1}.resid_pre: embed.out
 * for L = 1, else blocks.{L−2}.ln2.out); attn_out = blocks.{L−1}.attn.out;
 * after_attn = blocks.{L−1}.ln1.out (LN1(x + attn)); after_mlp =
 * blocks.{L−1}.mlp.out (the MLP's output); before_head =
 * blocks.{L−1}.ln2.out (LN2(ln1.out + mlp), what the read-out reads: the
 * "final hidden states").
 */
export function collapseSiteHooks(L: number): Record<CollapseSite, string> {
  const l = L - 1;
  return {
    before_attn: `blocks.${l}.resid_pre`,
    attn_out: `blocks.${l}.attn.out`,
    after_attn: `blocks.${l}.ln1.out`,
    after_mlp: `blocks.${l}.mlp.out`,
    before_head: `blocks.${l}.ln2.out`,
  };
}

/** The fields the trainer adds to a metrics line every --progress-every steps. */
export interface StepMeasures {
  /** the best layer's mean over heads of the attention progress */
  attn_progress: number;
  /** per layer, the mean over heads */
  attn_progress_layers: number[];
  /** the best single head */
  attn_progress_best_head: { layer: number; head: number; value: number };
  /** collapse of the final hidden states (= collapse_sites.before_head) */
  collapse: number;
  collapse_sites: Record<CollapseSite, number>;
  repetition: number;
}

/**
 * The measures of the model's LAST forward pass, which must have been on
 * `batch` (the trainer calls it right after the step's forward and backward,
 * which leaves the activations in place), with its outputs `out` [B,T]. No
 * extra forward: host backends read the activations in place, webgpu
 * downloads the L patterns and the five sites. Needs L ≥ 1.
 */
export async function stepMeasures(model: Bert<unknown>, batch: Batch, out: Float32Array, prec: number): Promise<StepMeasures> {
  const { L, H, d: C } = model.cfg;
  const { B, T, m, n } = batch;
  const sites = collapseSiteHooks(L);
  const names = [...Array.from({ length: L }, (_, l) => `blocks.${l}.attn.pattern`), ...COLLAPSE_SITES.map((s) => sites[s])];
  const acts = model.kernels.host
    ? names.map((nm) => model.act(nm) as Float32Array)
    : await Promise.all(names.map((nm) => model.actHost(nm)));
  const opt = optimalKeys(batch.hidden, B, m, n);
  const queries = queryCount(opt);
  const layers: number[] = [];
  let best = { layer: 0, head: 0, value: -Infinity };
  const mass = new Float64Array(H);
  for (let l = 0; l < L; l++) {
    mass.fill(0);
    addAttnMass(mass, acts[l]!, opt, H, T);
    let sum = 0;
    for (let h = 0; h < H; h++) {
      const v = queries ? mass[h]! / queries : NaN;
      sum += v;
      if (v > best.value) best = { layer: l, head: h, value: v };
    }
    layers.push(sum / H);
  }
  if (!queries) best = { layer: 0, head: 0, value: NaN };
  const collapse_sites = Object.fromEntries(COLLAPSE_SITES.map((s, i) => [s, collapseSum(acts[L + i]!, B, T, C) / B])) as Record<CollapseSite, number>;
  return {
    attn_progress: Math.max(...layers),
    attn_progress_layers: layers,
    attn_progress_best_head: best,
    collapse: collapse_sites.before_head,
    collapse_sites,
    repetition: repetitionSum(out, B, T, prec) / B,
  };
}
