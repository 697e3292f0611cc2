// Experiment 4 on a GPT run, attention: where the position generating a
// cell looks (gpt-common.ts: position m·n + i·n + j predicts X's cell (i, j)).
//
// Read from `blocks.{l}.attn.pattern` ([B,H,T,T], query × key, T = 2·m·n,
// causal) after each forward pass over one batch (teacher forcing), for
// random masks and/or a structured mask, as the BERT's attention.ts. Per
// head, with A the attention row of the position q generating cell (i, j):
//   obsRow     Σ A[q, (i, j')] over the observed prompt cells j' ≠ j of row i
//   obsCol     Σ A[q, (i', j)] over the observed prompt cells i' ≠ i of column j
//   obsRowCol  obsRow + obsCol: the row and column score of the cell being generated
//   self       A[q, (i, j)]: the cell's own prompt token (MASK when hidden; the answer when observed)
//   prompt     Σ over the m·n prompt positions
//   sep        A[q, SEP]
//   answer     Σ over the answer positions after SEP (X's cells before (i, j))
//   answerRowCol  Σ over those of them in row i or column j
//   entropy    −Σ A log A / log(q + 1) (1 = uniform over the keys it can see)
//   uniform    obsRowCol of uniform causal attention: |observed row/col cells| / (q + 1)
// each the mean over samples and generated cells, over all cells ("all")
// and over hidden cells ("hidden"; null if none is hidden).
//
// Labels (SCORE_THRESHOLD 0.5, UNIFORM_ENTROPY 0.9): hidden obsRowCol above
// 0.5 → "row+col observed"; else all.self above 0.5 → "self/copy"; else
// all.answer above 0.5 → "answer"; else all.entropy above 0.9 → "uniform";
// else "other".
//
// JSON: as the BERT's (batch, m, n, T, L, H, thresholds, conditions[] with
// mask, spec, hiddenFraction, queryCell, querySamples, queryHiddenOnly,
// labels, heads [{layer, head, label, score, all, hidden}], meanPattern
// [L][H][T·T]), with `family: "gpt"`, Scores as above, and queryAttention
// [L][H][m·n]: the attention of the position generating the query cell on the
// prompt's cells.

import type { GptBatch } from "../data/sequence.js";
import type { VlSpec } from "../viz/plot.js";
import {
  type AttentionCondition, type AttentionOptions, SCORE_THRESHOLD, type StructuredMaskSpec, UNIFORM_ENTROPY,
  assembleCondition, checkBatchSize, fmt, gridFigures, maskConditions, queryFigure, round,
} from "./attention.js";
import { type AnalysisContext, type AnalysisOutput, type AnyGpt, gptOf } from "./context.js";
import { forwardBatch } from "./forward.js";
import { gptTokens, sampleGpt } from "./gpt-common.js";

export interface GptScores {
  obsRow: number;
  obsCol: number;
  obsRowCol: number;
  self: number;
  prompt: number;
  sep: number;
  answer: number;
  answerRowCol: number;
  entropy: number;
  uniform: number;
}
const KEYS = ["obsRow", "obsCol", "self", "prompt", "sep", "answer", "answerRowCol", "entropy", "uniform"] as const;
const NS = KEYS.length + 1; // the statistics and a count

export type GptHeadLabel = "row+col observed" | "self/copy" | "answer" | "uniform" | "other";

type GptCondition = AttentionCondition<GptScores, GptHeadLabel>;

export function labelGptHead(all: GptScores, hidden: GptScores | null): { label: GptHeadLabel; score: number } {
  const obs = (hidden ?? all).obsRowCol;
  if (obs > SCORE_THRESHOLD) return { label: "row+col observed", score: obs };
  if (all.self > SCORE_THRESHOLD) return { label: "self/copy", score: all.self };
  if (all.answer > SCORE_THRESHOLD) return { label: "answer", score: all.answer };
  if (all.entropy > UNIFORM_ENTROPY) return { label: "uniform", score: all.entropy };
  return { label: "other", score: Math.max(obs, all.self, all.answer) };
}

/** The scores of every layer and head of `model` on one batch (exposed for tests). */
export async function gptAttentionScores(model: AnyGpt, batch: GptBatch, kind: "random" | "structured", spec: StructuredMaskSpec | null, qc: [number, number]): Promise<GptCondition> {
  const { L, H } = model.cfg;
  const { B, T, m, n, cells } = batch;
  const sums = new Float64Array(L * H * 2 * NS); // per (l, h): [all cells, hidden cells] × NS
  const patSum = new Float64Array(L * H * T * T);
  const qSumHid = new Float64Array(L * H * cells), qSumAll = new Float64Array(L * H * cells);
  const qCell = qc[0] * n + qc[1];
  let qHidCount = 0;
  const v = new Float64Array(NS - 1);

  await forwardBatch(model, gptTokens(batch), {
    after: async (b0, nb) => {
      for (let b = 0; b < nb; b++) if (batch.hidden[(b0 + b) * cells + qCell]) qHidCount++;
      for (let l = 0; l < L; l++) {
        const att = await model.actHost(`blocks.${l}.attn.pattern`); // [nb, H, T, T]
        for (let b = 0; b < nb; b++) {
          const hid = batch.hidden.subarray((b0 + b) * cells, (b0 + b + 1) * cells);
          for (let h = 0; h < H; h++) {
            const base = (b * H + h) * T * T;
            const lh = l * H + h;
            const pat = patSum.subarray(lh * T * T, (lh + 1) * T * T);
            for (let q = 0; q < T; q++) for (let k = 0; k <= q; k++) pat[q * T + k]! += att[base + q * T + k]!;
            for (let c = 0; c < cells; c++) {
              const q = cells + c;
              const A = att.subarray(base + q * T, base + (q + 1) * T);
              const i = Math.floor(c / n), j = c % n;
              let obsRow = 0, obsCol = 0, nObs = 0, prompt = 0, answer = 0, answerRowCol = 0, ent = 0;
              for (let jj = 0; jj < n; jj++) if (jj !== j && !hid[i * n + jj]) { obsRow += A[i * n + jj]!; nObs++; }
              for (let ii = 0; ii < m; ii++) if (ii !== i && !hid[ii * n + j]) { obsCol += A[ii * n + j]!; nObs++; }
              for (let k = 0; k < cells; k++) prompt += A[k]!;
              for (let k = cells + 1; k <= q; k++) {
                answer += A[k]!;
                const kc = k - cells - 1; // the X cell that answer position holds
                if (Math.floor(kc / n) === i || kc % n === j) answerRowCol += A[k]!;
              }
              for (let k = 0; k <= q; k++) if (A[k]! > 0) ent -= A[k]! * Math.log(A[k]!);
              v[0] = obsRow; v[1] = obsCol; v[2] = A[c]!; v[3] = prompt; v[4] = A[cells]!; v[5] = answer; v[6] = answerRowCol;
              v[7] = ent / Math.log(q + 1); v[8] = nObs / (q + 1);
              for (let which = 0; which <= hid[c]!; which++) {
                const o = (lh * 2 + which) * NS;
                for (let s = 0; s < NS - 1; s++) sums[o + s]! += v[s]!;
                sums[o + NS - 1]! += 1;
              }
            }
            const Aq = att.subarray(base + (cells + qCell) * T, base + (cells + qCell) * T + cells);
            for (let k = 0; k < cells; k++) {
              qSumAll[lh * cells + k]! += Aq[k]!;
              if (hid[qCell]) qSumHid[lh * cells + k]! += Aq[k]!;
            }
          }
        }
      }
    },
  });

  const scoresAt = (o: number): GptScores | null => {
    const c = sums[o + NS - 1]!;
    if (c === 0) return null;
    const r = Object.fromEntries(KEYS.map((k, s) => [k, sums[o + s]! / c])) as Omit<GptScores, "obsRowCol">;
    return { ...r, obsRowCol: r.obsRow + r.obsCol };
  };
  return assembleCondition({ kind, spec, qc, L, H, T, B, qLen: cells, ns: NS, hidden: batch.hidden, scoresAt, label: labelGptHead, patSum, qSumAll, qSumHid, qHidCount });
}

function gptScoresFigure(conds: GptCondition[]): { name: string; spec: VlSpec } {
  const values: Array<Record<string, number | string>> = [];
  const names = ["observed row+col (hidden cells)", "uniform reference", "self (prompt cell)", "answer so far"];
  for (const c of conds) {
    for (const hd of c.heads) {
      const hs = hd.hidden ?? hd.all;
      const add = (score: string, v: number) => values.push({ mask: c.mask, score, layer: hd.layer, head: hd.head, v: round(v, 3) });
      add(names[0]!, hs.obsRowCol);
      add(names[1]!, hs.uniform);
      add(names[2]!, hd.all.self);
      add(names[3]!, hd.all.answer);
    }
  }
  const enc = { x: { field: "head", type: "ordinal", title: "head" }, y: { field: "layer", type: "ordinal", title: "layer" } };
  return {
    name: "scores",
    spec: {
      $schema: "https://vega.github.io/schema/vega-lite/v6.json",
      title: { text: "GPT: attention of the position generating a cell on the prompt's observed cells of its row and column", subtitle: `mean over generated cells; label threshold ${SCORE_THRESHOLD}` },
      data: { values },
      facet: { row: { field: "mask", type: "nominal", title: "mask" }, column: { field: "score", type: "nominal", title: null, sort: names } },
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

/** The attention experiment on a GPT context (same options as the BERT's). */
export async function gptAttention(ctx: AnalysisContext, opts: AttentionOptions): Promise<AnalysisOutput> {
  checkBatchSize(opts.batch);
  const { m, n } = ctx.data;
  const cells = m * n, T = 2 * cells;
  const model = gptOf(ctx);
  const { L, H } = model.cfg;
  const conds: GptCondition[] = [];
  const figures: AnalysisOutput["figures"] = [];
  for (const { spec, mask, qc } of maskConditions(opts, m, n)) {
    const c = await gptAttentionScores(model, sampleGpt(ctx, opts.batch, mask), spec ? "structured" : "random", spec, qc);
    conds.push(c);
    figures.push(...gridFigures(c, L, H, T, n), queryFigure(c, L, H, m, n, mask ?? null));
  }
  figures.push(gptScoresFigure(conds));

  const findings: string[] = [];
  const where = (x: { layer: number; head: number }) => `layer ${x.layer} head ${x.head}`;
  for (const c of conds) {
    const tag = `${c.mask} masks`;
    const sc = (h: GptCondition["heads"][number]) => h.hidden ?? h.all;
    const best = c.heads.reduce((a, x) => (sc(x).obsRowCol > sc(a).obsRowCol ? x : a));
    findings.push(
      `${tag}: ${sc(best).obsRowCol > SCORE_THRESHOLD ? "row/column head found" : "no row/column head"}: the position generating a hidden cell puts at most ${fmt(sc(best).obsRowCol)} of its attention on the observed cells of that cell's row and column (${where(best)}: row ${fmt(sc(best).obsRow)}, column ${fmt(sc(best).obsCol)}; uniform causal attention gives ${fmt(sc(best).uniform)}; threshold ${SCORE_THRESHOLD})`,
    );
    for (const h of c.heads.filter((x) => x.label !== "other" && x.label !== "uniform")) findings.push(`${tag}: ${where(h)}: ${h.label} head, score ${fmt(h.score)}`);
    findings.push(`${tag}: ${Object.entries(c.labels).map(([k, x]) => `${x} ${k}`).join(", ")} (of ${L * H} heads)`);
  }
  return {
    json: { family: "gpt", batch: opts.batch, m, n, T, L, H, thresholds: { score: SCORE_THRESHOLD, uniformEntropy: UNIFORM_ENTROPY }, conditions: conds },
    figures,
    findings,
  };
}
