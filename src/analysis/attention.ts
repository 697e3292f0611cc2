// Experiment 4, attention: which cells each head attends to (SPEC §4, "after
// the drop, heads attend to the query cell's row or column; with structured
// masks, to the observed cells of that row/column").
//
// Read from `blocks.{l}.attn.pattern` ([B,H,T,T], query × key) after each
// forward pass over one batch, for random masks (the data's p_mask) and/or a
// structured mask (the same for every sample). Layers and heads are 0-based,
// as in the hook names. Per head, with A the attention of query q = (i, j):
//   self      A[q, q]
//   row       Σ A[q, (i, j')], j' ≠ j   (the query cell itself excluded: it is `self`)
//   col       Σ A[q, (i', j)], i' ≠ i
//   obsRow    like row, over the cells of row i observed in that sample
//   obsCol    like col, observed cells only
//   obsRowCol obsRow + obsCol (the "optimal positions" of SPEC §5)
//   entropy   −Σ A log A / log T (1 = uniform)
// each the mean over samples and queries, over all queries ("all") and over
// hidden queries only ("hidden"; null if no cell is hidden). A uniform
// pattern scores row (n−1)/T, col (m−1)/T, self 1/T.
//
// Labels (thresholds SCORE_THRESHOLD = 0.5, UNIFORM_ENTROPY = 0.9):
//   all.row or all.col above 0.5 → "row" / "column"; else obsRowCol of
//   hidden queries (all queries if none is hidden) above 0.5 → "row+col
//   observed" (such a head may attend to itself at observed queries, so this
//   comes before self); else all.self above 0.5 → "self/diagonal"; else
//   all.entropy above 0.9 → "uniform"; else "other". `score` is the value
//   that decided the label ("other": the largest of self, row, col,
//   obsRowCol).
//
// JSON schema:
// {
//   batch, m, n, T, L, H, thresholds: { score, uniformEntropy },
//   conditions: [{
//     mask: "random" | "structured",
//     spec: { rows, cols, keep } | null,          // the structured mask
//     hiddenFraction,                             // of all cells of the batch
//     queryCell: [i, j], querySamples,            // samples averaged in queryAttention
//     queryHiddenOnly,                            // true: only samples where the query cell is hidden
//     labels: { row: count, column: count, ... },
//     heads: [{ layer, head, label, score,
//               all: Scores, hidden: Scores | null }],  // Scores = { self, row, col, obsRow, obsCol, obsRowCol, entropy }
//     meanPattern: number[L][H][T*T],            // batch mean, row-major (query, key)
//     queryAttention: number[L][H][T],           // mean attention of the query cell over the m×n cells
//   }]
// }

import { z } from "zod";
import { type Batch, structuredMask, sampleBatch } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import type { VlSpec } from "../viz/plot.js";
import { type AnalysisContext, type AnalysisOutput, type AnyBert } from "./context.js";
import { type Experiment, count } from "./experiment.js";
import { forwardBatch } from "./forward.js";
import { gptAttention } from "./gpt-attention.js";

export interface StructuredMaskSpec {
  rows?: number[];
  cols?: number[];
  keep?: Array<[number, number]>;
}

export const AttentionOptionsSchema = z.object({
  /** matrices in the batch */
  batch: count(256),
  /**
   * "both" (the default): random masks and the default structured mask;
   * "random": masks drawn with the data's p_mask; "structured": the default
   * structured mask (see defaultStructuredSpec); or a structured mask spec
   * (JSON, checked by the experiment).
   */
  mask: z.union([z.enum(["both", "random", "structured"]), z.custom<StructuredMaskSpec>()]).default("both"),
  /**
   * [row, col] (0-based) of the query cell drawn on the matrix; null
   * (default): the first hidden cell of the structured mask, and the
   * centre cell (⌊m/2⌋, ⌊n/2⌋) for random masks.
   */
  queryCell: z.tuple([z.number(), z.number()]).nullable().default(null),
});
export type AttentionOptions = z.output<typeof AttentionOptionsSchema>;
export const ATTENTION_DEFAULTS: AttentionOptions = AttentionOptionsSchema.parse({});

export const SCORE_THRESHOLD = 0.5;
export const UNIFORM_ENTROPY = 0.9;

export type HeadLabel = "row" | "column" | "row+col observed" | "self/diagonal" | "uniform" | "other";

export interface Scores {
  self: number;
  row: number;
  col: number;
  obsRow: number;
  obsCol: number;
  obsRowCol: number;
  entropy: number;
}

// ------------------------------------------------ shared by the experiments

export function checkBatchSize(batch: number): void {
  if (!Number.isInteger(batch) || batch < 1) throw new AbruptError(`batch must be a positive integer (got ${batch})`);
}

export const fmt = (x: number): string => (Number.isFinite(x) ? x.toPrecision(3) : String(x));
export const round = (x: number, d = 5): number => Math.round(x * 10 ** d) / 10 ** d;

// ---------------------------------------------------------------- masks

/**
 * SPEC §1's structured mask for 7×7 — rows 3 and 6 hidden except (3,1) and
 * (6,5) — and its analogue for other sizes: rows ⌊m/2⌋ and m−1 hidden except
 * (⌊m/2⌋, min(1, n−1)) and (m−1, max(0, n−2)).
 */
export function defaultStructuredSpec(m: number, n: number): StructuredMaskSpec {
  const a = Math.floor(m / 2), b = m - 1;
  return { rows: [...new Set([a, b])], cols: [], keep: [[a, Math.min(1, n - 1)], [b, Math.max(0, n - 2)]] };
}

export function checkCell(cell: [number, number], m: number, n: number, what: string): void {
  const [i, j] = cell;
  if (!(Number.isInteger(i) && Number.isInteger(j) && i >= 0 && i < m && j >= 0 && j < n)) {
    throw new AbruptError(`${what} (${i}, ${j}) is outside the ${m}×${n} matrix`);
  }
}

/**
 * The conditions an attention experiment runs (the BERT's and the GPT's):
 * random masks and/or a structured mask, from the `mask` option, each with
 * its query cell: opts.queryCell, else the first hidden cell of the
 * structured mask, else the centre cell.
 */
export function maskConditions(opts: AttentionOptions, m: number, n: number): Array<{ spec: StructuredMaskSpec | null; mask: Uint8Array | undefined; qc: [number, number] }> {
  if (opts.queryCell) checkCell(opts.queryCell, m, n, "query cell");
  const specs: Array<StructuredMaskSpec | null> = [];
  const mk = opts.mask;
  if (mk === "both" || mk === "random") specs.push(null);
  if (mk === "both" || mk === "structured") specs.push(defaultStructuredSpec(m, n));
  else if (typeof mk === "object" && mk !== null) specs.push(mk);
  else if (mk !== "random") throw new AbruptError(`mask must be "both", "random", "structured" or a {rows, cols, keep} spec (got ${JSON.stringify(mk)})`);
  return specs.map((spec) => {
    const mask = spec ? structuredMask(m, n, spec) : undefined;
    let qc: [number, number] = opts.queryCell ?? [Math.floor(m / 2), Math.floor(n / 2)];
    if (mask && !opts.queryCell) {
      const first = mask.indexOf(1);
      if (first >= 0) qc = [Math.floor(first / n), first % n];
    }
    return { spec, mask, qc };
  });
}

// ------------------------------------------------------------- analysis

/** One mask condition's result, for a model family's scores S and head labels. */
export interface AttentionCondition<S, Label extends string> {
  mask: "random" | "structured";
  spec: StructuredMaskSpec | null;
  hiddenFraction: number;
  queryCell: [number, number];
  querySamples: number;
  queryHiddenOnly: boolean;
  labels: Record<string, number>;
  heads: Array<{ layer: number; head: number; label: Label; score: number; all: S; hidden: S | null }>;
  meanPattern: number[][][];
  queryAttention: number[][][];
}

type Condition = AttentionCondition<Scores, HeadLabel>;

/**
 * A condition's result from the sums of one pass over its batch (the BERT's
 * and the GPT's): per (layer, head) the scores over all and over hidden
 * queries (`scoresAt(offset)` reads the `ns` sums at an offset of `sums`'s
 * layout, [L, H, all|hidden, ns]), their label, the mean pattern [T, T], and
 * the query cell's attention on its qLen keys, averaged over the samples
 * where that cell is hidden (all samples if it never is).
 */
export function assembleCondition<S, Label extends string>(a: {
  kind: "random" | "structured"; spec: StructuredMaskSpec | null; qc: [number, number];
  L: number; H: number; T: number; B: number; qLen: number; ns: number; hidden: Uint8Array;
  scoresAt: (offset: number) => S | null; label: (all: S, hidden: S | null) => { label: Label; score: number };
  patSum: Float64Array; qSumAll: Float64Array; qSumHid: Float64Array; qHidCount: number;
}): AttentionCondition<S, Label> {
  const { L, H, T, B, qLen, ns } = a;
  const heads: AttentionCondition<S, Label>["heads"] = [];
  const labels: Record<string, number> = {};
  const meanPattern: number[][][] = [];
  const queryAttention: number[][][] = [];
  const queryHiddenOnly = a.qHidCount > 0;
  const qSum = queryHiddenOnly ? a.qSumHid : a.qSumAll;
  const qCount = queryHiddenOnly ? a.qHidCount : B;
  for (let l = 0; l < L; l++) {
    meanPattern.push([]);
    queryAttention.push([]);
    for (let h = 0; h < H; h++) {
      const lh = l * H + h;
      const all = a.scoresAt(lh * 2 * ns)!;
      const hidden = a.scoresAt((lh * 2 + 1) * ns);
      const { label, score } = a.label(all, hidden);
      labels[label] = (labels[label] ?? 0) + 1;
      heads.push({ layer: l, head: h, label, score, all, hidden });
      meanPattern[l]!.push(Array.from(a.patSum.subarray(lh * T * T, (lh + 1) * T * T), (x) => round(x / B)));
      queryAttention[l]!.push(Array.from(qSum.subarray(lh * qLen, (lh + 1) * qLen), (x) => round(x / qCount)));
    }
  }
  let nh = 0;
  for (let i = 0; i < a.hidden.length; i++) nh += a.hidden[i]!;
  return {
    mask: a.kind, spec: a.spec, hiddenFraction: nh / a.hidden.length,
    queryCell: a.qc, querySamples: qCount, queryHiddenOnly, labels, heads, meanPattern, queryAttention,
  };
}

export function labelHead(all: Scores, hidden: Scores | null): { label: HeadLabel; score: number } {
  if (all.row > SCORE_THRESHOLD && all.row >= all.col) return { label: "row", score: all.row };
  if (all.col > SCORE_THRESHOLD) return { label: "column", score: all.col };
  const obs = (hidden ?? all).obsRowCol;
  if (obs > SCORE_THRESHOLD) return { label: "row+col observed", score: obs };
  if (all.self > SCORE_THRESHOLD) return { label: "self/diagonal", score: all.self };
  if (all.entropy > UNIFORM_ENTROPY) return { label: "uniform", score: all.entropy };
  return { label: "other", score: Math.max(all.row, all.col, all.self, obs) };
}

const NS = 7; // self, row, col, obsRow, obsCol, entropy, count

async function analyseCondition(model: AnyBert, batch: Batch, kind: "random" | "structured", spec: StructuredMaskSpec | null, qc: [number, number]): Promise<Condition> {
  const { L, H } = model.cfg;
  const { B, T, m, n } = batch;
  const logT = Math.log(T);
  // per (l, h): sums over [all queries, hidden queries] of the NS statistics
  const sums = new Float64Array(L * H * 2 * NS);
  const patSum = new Float64Array(L * H * T * T);
  const qSumHid = new Float64Array(L * H * T), qSumAll = new Float64Array(L * H * T);
  const qIdx = qc[0] * n + qc[1];
  let qHidCount = 0;

  await forwardBatch(model, batch, {
    after: async (b0, nb) => {
      for (let b = 0; b < nb; b++) if (batch.hidden[(b0 + b) * T + qIdx]) qHidCount++;
      for (let l = 0; l < L; l++) {
        const att = await model.actHost(`blocks.${l}.attn.pattern`); // [nb, H, T, T]
        for (let b = 0; b < nb; b++) {
          const hid = batch.hidden.subarray((b0 + b) * T, (b0 + b + 1) * T);
          for (let h = 0; h < H; h++) {
            const base = ((b * H + h) * T) * T;
            const lh = l * H + h;
            const pat = patSum.subarray(lh * T * T, (lh + 1) * T * T);
            for (let q = 0; q < T; q++) {
              const A = att.subarray(base + q * T, base + (q + 1) * T);
              const qi = Math.floor(q / n), qj = q % n;
              let row = 0, col = 0, obsRow = 0, obsCol = 0, ent = 0;
              for (let j = 0; j < n; j++) {
                const k = qi * n + j;
                if (k === q) continue;
                row += A[k]!;
                if (!hid[k]) obsRow += A[k]!;
              }
              for (let i = 0; i < m; i++) {
                const k = i * n + qj;
                if (k === q) continue;
                col += A[k]!;
                if (!hid[k]) obsCol += A[k]!;
              }
              for (let k = 0; k < T; k++) {
                const a = A[k]!;
                if (a > 0) ent -= a * Math.log(a);
                pat[q * T + k]! += a;
              }
              for (let which = 0; which <= hid[q]!; which++) {
                const o = (lh * 2 + which) * NS;
                sums[o]! += A[q]!;
                sums[o + 1]! += row;
                sums[o + 2]! += col;
                sums[o + 3]! += obsRow;
                sums[o + 4]! += obsCol;
                sums[o + 5]! += T > 1 ? ent / logT : 1;
                sums[o + 6]! += 1;
              }
            }
            const Aq = att.subarray(base + qIdx * T, base + (qIdx + 1) * T);
            for (let k = 0; k < T; k++) {
              qSumAll[lh * T + k]! += Aq[k]!;
              if (hid[qIdx]) qSumHid[lh * T + k]! += Aq[k]!;
            }
          }
        }
      }
    },
  });

  const scoresAt = (o: number): Scores | null => {
    const c = sums[o + NS - 1]!;
    if (c === 0) return null;
    const v = (s: number) => sums[o + s]! / c;
    return { self: v(0), row: v(1), col: v(2), obsRow: v(3), obsCol: v(4), obsRowCol: v(3) + v(4), entropy: v(5) };
  };
  return assembleCondition({ kind, spec, qc, L, H, T, B, qLen: T, ns: NS, hidden: batch.hidden, scoresAt, label: labelHead, patSum, qSumAll, qSumHid, qHidCount });
}

// -------------------------------------------------------------- figures

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

/** Layer × head thumbnails of the mean T×T pattern, split so each figure holds ≤ 50k cells. */
export function gridFigures(c: Pick<Condition, "mask" | "meanPattern">, L: number, H: number, T: number, n: number): Array<{ name: string; spec: VlSpec }> {
  const perFig = Math.max(1, Math.floor(50000 / (H * T * T)));
  const figs: Array<{ name: string; spec: VlSpec }> = [];
  const thumb = Math.max(80, Math.min(160, 3 * T));
  for (let l0 = 0; l0 < L; l0 += perFig) {
    const l1 = Math.min(L, l0 + perFig);
    const values: Array<{ layer: number; head: number; q: number; k: number; wn: number }> = [];
    for (let l = l0; l < l1; l++) {
      for (let h = 0; h < H; h++) {
        const p = c.meanPattern[l]![h]!;
        const mx = Math.max(...p) || 1;
        for (let q = 0; q < T; q++) for (let k = 0; k < T; k++) values.push({ layer: l, head: h, q, k, wn: round(p[q * T + k]! / mx, 3) });
      }
    }
    const name = `grid-${c.mask}` + (perFig < L ? `-l${l0}${l1 - 1 > l0 ? `-${l1 - 1}` : ""}` : "");
    figs.push({
      name,
      spec: {
        $schema: SCHEMA,
        title: { text: `mean attention pattern per layer × head (${c.mask} masks)`, subtitle: `query (rows) × key (columns), ${T} tokens read row by row, ${n} per matrix row; colour relative to each head's maximum` },
        data: { values },
        facet: { row: { field: "layer", type: "ordinal", title: "layer" }, column: { field: "head", type: "ordinal", title: "head" } },
        spec: {
          width: thumb, height: thumb,
          mark: { type: "rect", aria: false },
          encoding: {
            x: { field: "k", type: "ordinal", axis: null, title: "key" },
            y: { field: "q", type: "ordinal", axis: null, title: "query" },
            color: { field: "wn", type: "quantitative", scale: { scheme: "viridis", domain: [0, 1] }, title: "attention / head max" },
          },
        },
        spacing: 4,
      } as VlSpec,
    });
  }
  return figs;
}

/** Per head, the query cell's attention drawn on the m×n matrix. */
export function queryFigure(c: Pick<Condition, "mask" | "queryCell" | "queryAttention" | "queryHiddenOnly" | "querySamples">, L: number, H: number, m: number, n: number, hiddenCells: Uint8Array | null): { name: string; spec: VlSpec } {
  const values: Array<Record<string, number>> = [];
  const [qi, qj] = c.queryCell;
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      const a = c.queryAttention[l]![h]!;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          values.push({ layer: l, head: h, i, j, w: a[i * n + j]!, query: i === qi && j === qj ? 1 : 0, hid: hiddenCells?.[i * n + j] ?? 0 });
        }
      }
    }
  }
  const cell = Math.max(10, Math.min(20, Math.floor(140 / Math.max(m, n))));
  const enc = {
    x: { field: "j", type: "ordinal", title: "column", axis: { labelFontSize: 8 } },
    y: { field: "i", type: "ordinal", title: "row", axis: { labelFontSize: 8 } },
  };
  const what = c.queryHiddenOnly ? `mean over the ${c.querySamples} samples where it is hidden` : `mean over all ${c.querySamples} samples`;
  return {
    name: `query-${c.mask}`,
    spec: {
      $schema: SCHEMA,
      title: { text: `attention of query cell (${qi}, ${qj}) per layer × head (${c.mask} masks)`, subtitle: `${what}; query cell outlined${hiddenCells ? ", hidden cells dotted" : ""}` },
      data: { values },
      facet: { row: { field: "layer", type: "ordinal", title: "layer" }, column: { field: "head", type: "ordinal", title: "head" } },
      spec: {
        width: cell * n, height: cell * m,
        layer: [
          { mark: { type: "rect", aria: false }, encoding: { ...enc, color: { field: "w", type: "quantitative", scale: { scheme: "blues" }, title: "attention" } } },
          { transform: [{ filter: "datum.query == 1" }], mark: { type: "rect", fill: null, stroke: "#e45756", strokeWidth: 2 }, encoding: enc },
          ...(hiddenCells ? [{ transform: [{ filter: "datum.hid == 1" }], mark: { type: "point", filled: true, size: 6, color: "#888" }, encoding: enc }] : []),
        ],
      },
      spacing: 6,
    } as VlSpec,
  };
}

function scoresFigure(conds: Condition[]): { name: string; spec: VlSpec } {
  const values: Array<Record<string, number | string>> = [];
  for (const c of conds) {
    for (const hd of c.heads) {
      const add = (score: string, v: number) => values.push({ mask: c.mask, score, layer: hd.layer, head: hd.head, v: round(v, 3) });
      add("row", hd.all.row);
      add("column", hd.all.col);
      add("self", hd.all.self);
      add("observed row+col (hidden queries)", (hd.hidden ?? hd.all).obsRowCol);
    }
  }
  const enc = {
    x: { field: "head", type: "ordinal", title: "head" },
    y: { field: "layer", type: "ordinal", title: "layer" },
  };
  return {
    name: "scores",
    spec: {
      $schema: SCHEMA,
      title: { text: "attention mass per head on the query cell's row, column, itself, and observed row/column cells", subtitle: `mean over queries; label threshold ${SCORE_THRESHOLD}` },
      data: { values },
      facet: { row: { field: "mask", type: "nominal", title: "mask" }, column: { field: "score", type: "nominal", title: null, sort: ["row", "column", "self", "observed row+col (hidden queries)"] } },
      spec: {
        width: { step: 22 }, height: { step: 22 },
        layer: [
          { mark: "rect", encoding: { ...enc, color: { field: "v", type: "quantitative", scale: { scheme: "oranges", domain: [0, 1] }, title: "score" } } },
          { mark: { type: "text", fontSize: 7 }, encoding: { ...enc, text: { field: "v", format: ".2f" }, color: { condition: { test: "datum.v > 0.6", value: "white" }, value: "black" } } },
        ],
      },
    } as VlSpec,
  };
}

// ------------------------------------------------------------ experiment

export async function attention(ctx: AnalysisContext, opts: AttentionOptions): Promise<AnalysisOutput> {
  checkBatchSize(opts.batch);
  const { m, n } = ctx.data;
  const T = m * n;
  const model = ctx.model();
  const { L, H } = model.cfg;
  const conds: Condition[] = [];
  const figures: AnalysisOutput["figures"] = [];
  for (const { spec, mask, qc } of maskConditions(opts, m, n)) {
    const batch = sampleBatch(new Rng(ctx.seed), ctx.data, opts.batch, undefined, mask);
    const c = await analyseCondition(model, batch, spec ? "structured" : "random", spec, qc);
    conds.push(c);
    figures.push(...gridFigures(c, L, H, T, n), queryFigure(c, L, H, m, n, mask ?? null));
  }
  figures.push(scoresFigure(conds));

  const findings: string[] = [];
  const where = (x: { layer: number; head: number }) => `layer ${x.layer} head ${x.head}`;
  const scoreName: Record<string, string> = { row: "row", column: "column", "self/diagonal": "self", "row+col observed": "observed row+col" };
  for (const c of conds) {
    const tag = `${c.mask} masks`;
    const named = c.heads.filter((h) => h.label in scoreName).sort((a, b) => b.score - a.score);
    for (const h of named) findings.push(`${tag}: ${where(h)}: ${h.label} head, ${scoreName[h.label]} score ${fmt(h.score)}`);
    const bestOf = (f: (h: Condition["heads"][number]) => number, what: string) => {
      const b = c.heads.reduce((a, x) => (f(x) > f(a) ? x : a));
      return `${what} ${fmt(f(b))} at ${where(b)}`;
    };
    // the paper's acceptance question, answered every time: is there a row head and a column head?
    const bestRow = c.heads.reduce((a, x) => (x.all.row > a.all.row ? x : a));
    const bestCol = c.heads.reduce((a, x) => (x.all.col > a.all.col ? x : a));
    findings.push(
      `${tag}: ${bestRow.all.row > SCORE_THRESHOLD ? "row head found" : "no row head"} (best row score ${fmt(bestRow.all.row)} at ${where(bestRow)}); ` +
        `${bestCol.all.col > SCORE_THRESHOLD ? "column head found" : "no column head"} (best column score ${fmt(bestCol.all.col)} at ${where(bestCol)}); threshold ${SCORE_THRESHOLD}, uniform attention gives row ${fmt((n - 1) / T)}, column ${fmt((m - 1) / T)}`,
    );
    if (!named.some((h) => h.label !== "self/diagonal")) {
      findings.push(`${tag}: no head has a row, column or observed-row/column score above ${SCORE_THRESHOLD} (best: ${bestOf((h) => h.all.row, "row")}; ${bestOf((h) => h.all.col, "column")}; ${bestOf((h) => (h.hidden ?? h.all).obsRowCol, "observed row+col")}; uniform attention gives row ${fmt((n - 1) / T)}, column ${fmt((m - 1) / T)})`);
    }
    findings.push(`${tag}: ${Object.entries(c.labels).map(([k, v]) => `${v} ${k}`).join(", ")} (of ${L * H} heads)`);
  }
  return {
    json: { batch: opts.batch, m, n, T, L, H, thresholds: { score: SCORE_THRESHOLD, uniformEntropy: UNIFORM_ENTROPY }, conditions: conds },
    figures,
    findings,
  };
}

export const experiment: Experiment<typeof AttentionOptionsSchema> = {
  name: "attention",
  summary: "mean attention patterns, row/column scores, head labels",
  options: AttentionOptionsSchema,
  steps: "post",
  families: ["bert", "gpt"],
  run: (ctx, o) => (ctx.family === "gpt" ? gptAttention(ctx, o) : attention(ctx, o)),
};
