// Attention scores on tiny models whose patterns are known: all-zero Q/K
// weights (exactly uniform attention) and patterns forced through a hook
// (row, column, self, observed row+col). 4×5 matrices so rows and columns
// cannot be confused; batch 70 > CHUNK so the chunked passes are covered.
import { test } from "node:test";
import assert from "node:assert/strict";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import type { ModelConfig } from "../src/model/params.js";
import { type DataConfig, sampleBatch, structuredMask } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import type { AnalysisContext } from "../src/analysis/context.js";
import { ATTENTION_DEFAULTS, attention, defaultStructuredSpec } from "../src/analysis/attention.js";
import { CHUNK } from "../src/analysis/forward.js";
import { renderSvg } from "../src/viz/plot.js";

const cfg: ModelConfig = { vocab: 2002, positions: 20, L: 2, H: 2, d: 8, ff: 16, lnEps: 1e-12 };
const data: DataConfig = { m: 4, n: 5, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };
const T = 20, B = 70, SEED = 5;

function ctxOf(model: Bert): AnalysisContext {
  return { source: { kind: "checkpoint", file: "none" }, data, kernels: refKernels, seed: SEED, outDir: "/tmp", step: -1, model: () => model };
}

function model(seed = 1): Bert {
  const m = new Bert(cfg, refKernels);
  m.init(seed, 0.3);
  return m;
}

type Json = {
  conditions: Array<{
    mask: string;
    queryCell: [number, number];
    queryHiddenOnly: boolean;
    heads: Array<{ layer: number; head: number; label: string; score: number; all: Record<string, number>; hidden: Record<string, number> | null }>;
    meanPattern: number[][][];
    queryAttention: number[][][];
  }>;
};

const close = (a: number, b: number, what: string, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test("attention: zero Q/K weights give uniform attention; scores are (n−1)/T, (m−1)/T, 1/T and the observed share per sample", async () => {
  assert.ok(B > CHUNK);
  const mdl = model();
  for (const w of mdl.paramViews.layers) { w.qkvW.fill(0, 0, 2 * cfg.d * cfg.d); w.qkvB.fill(0, 0, 2 * cfg.d); } // q = k = 0
  const out = await attention(ctxOf(mdl), { ...ATTENTION_DEFAULTS, batch: B, mask: "random" });
  const json = out.json as unknown as Json;
  // expected observed row+col mass for hidden queries, from the same batch
  const batch = sampleBatch(new Rng(SEED), data, B);
  let sum = 0, cnt = 0;
  for (let b = 0; b < B; b++) {
    for (let q = 0; q < T; q++) {
      if (!batch.hidden[b * T + q]) continue;
      const qi = Math.floor(q / 5), qj = q % 5;
      let obs = 0;
      for (let k = 0; k < T; k++) {
        if (k === q || batch.hidden[b * T + k]) continue;
        if (Math.floor(k / 5) === qi || k % 5 === qj) obs++;
      }
      sum += obs / T;
      cnt++;
    }
  }
  const c = json.conditions[0]!;
  assert.equal(c.mask, "random");
  assert.equal(c.heads.length, 4);
  for (const h of c.heads) {
    close(h.all.row!, 4 / T, "row");
    close(h.all.col!, 3 / T, "col");
    close(h.all.self!, 1 / T, "self");
    close(h.all.entropy!, 1, "entropy");
    close(h.hidden!.obsRowCol!, sum / cnt, "observed row+col, hidden queries");
    assert.equal(h.label, "uniform");
  }
  for (const p of c.meanPattern.flat()) for (const v of p) close(v, 1 / T, "mean pattern", 1e-5);
  assert.ok(out.findings.some((f) => f.startsWith("random masks: no head has a row, column or observed-row/column score above 0.5")), out.findings.join("\n"));
  assert.ok(out.findings.includes("random masks: 4 uniform (of 4 heads)"), out.findings.join("\n"));
});

/**
 * Forces layer 0 head 0 to attend uniformly to the other cells of the query's
 * row, head 1 to its column, layer 1 head 0 to itself, and layer 1 head 1
 * (hidden queries) 0.4 to the observed cells of the row, 0.4 to those of the
 * column, 0.2 to itself (observed queries: itself). The hooks follow the
 * samples chunk by chunk, from the batch the experiment draws.
 */
function forcePatterns(mdl: Bert, hidden: Uint8Array): () => void {
  const { m, n } = data;
  let seen = [0, 0];
  const forced = (l: number) => (att: Float32Array, info: { shape: number[] }) => {
    const nb = info.shape[0]!;
    for (let b = 0; b < nb; b++) {
      const hid = hidden.subarray((seen[l]! + b) * T, (seen[l]! + b + 1) * T);
      for (let h = 0; h < 2; h++) {
        for (let q = 0; q < T; q++) {
          const A = att.subarray(((b * 2 + h) * T + q) * T, ((b * 2 + h) * T + q + 1) * T);
          A.fill(0);
          const qi = Math.floor(q / n), qj = q % n;
          if (l === 0 && h === 0) for (let j = 0; j < n; j++) { if (j !== qj) A[qi * n + j] = 1 / (n - 1); }
          else if (l === 0 && h === 1) for (let i = 0; i < m; i++) { if (i !== qi) A[i * n + qj] = 1 / (m - 1); }
          else if (l === 1 && h === 0) A[q] = 1;
          else if (!hid[q]) A[q] = 1;
          else {
            A[q] = 0.2;
            const rowObs = [...Array(n).keys()].map((j) => qi * n + j).filter((k) => k !== q && !hid[k]);
            const colObs = [...Array(m).keys()].map((i) => i * n + qj).filter((k) => k !== q && !hid[k]);
            for (const k of rowObs) A[k]! += 0.4 / rowObs.length;
            for (const k of colObs) A[k]! += 0.4 / colObs.length;
            if (!rowObs.length) A[q]! += 0.4;
            if (!colObs.length) A[q]! += 0.4;
          }
        }
      }
    }
    seen[l]! += nb;
  };
  const r0 = mdl.addHook("blocks.0.attn.pattern", forced(0));
  const r1 = mdl.addHook("blocks.1.attn.pattern", forced(1));
  return () => { r0(); r1(); seen = [0, 0]; };
}

test("attention: forced row, column, self and observed-row+col heads get exact scores and labels (structured mask)", async () => {
  const mdl = model(2);
  const spec = defaultStructuredSpec(4, 5);
  assert.deepEqual(spec, { rows: [2, 3], cols: [], keep: [[2, 1], [3, 3]] });
  const mask = structuredMask(4, 5, spec);
  const remove = forcePatterns(mdl, sampleBatch(new Rng(SEED), data, B, undefined, mask).hidden);
  const out = await attention(ctxOf(mdl), { ...ATTENTION_DEFAULTS, batch: B, mask: "structured" });
  remove();
  const c = (out.json as unknown as Json).conditions[0]!;
  assert.equal(c.mask, "structured");
  const head = (l: number, h: number) => c.heads.find((x) => x.layer === l && x.head === h)!;
  const rowHead = head(0, 0), colHead = head(0, 1), selfHead = head(1, 0), obsHead = head(1, 1);
  close(rowHead.all.row!, 1, "row head row score");
  close(rowHead.all.col!, 0, "row head col score");
  assert.equal(rowHead.label, "row");
  close(colHead.all.col!, 1, "column head col score");
  assert.equal(colHead.label, "column");
  close(selfHead.all.self!, 1, "self head");
  close(selfHead.all.entropy!, 0, "self head entropy");
  assert.equal(selfHead.label, "self/diagonal");
  // every hidden cell of this mask has observed cells in its row and its column
  close(obsHead.hidden!.row!, 0.4, "obs head row (hidden)");
  close(obsHead.hidden!.col!, 0.4, "obs head col (hidden)");
  close(obsHead.hidden!.self!, 0.2, "obs head self (hidden)");
  close(obsHead.hidden!.obsRowCol!, 0.8, "obs head observed row+col (hidden)");
  assert.equal(obsHead.label, "row+col observed");
  close(obsHead.score, 0.8, "obs head score");
  // 12 observed queries attend to themselves, 8 hidden ones 0.2: mean self (12 + 8·0.2)/20
  close(obsHead.all.self!, (12 + 8 * 0.2) / 20, "obs head self (all)");

  // mean pattern of the row head: 1/4 on the other cells of the query's row
  const p = c.meanPattern[0]![0]!;
  assert.equal(p[7 * T + 5], 0.25); // query (1,2) → key (1,0)
  assert.equal(p[7 * T + 7], 0);
  assert.equal(p[7 * T + 2], 0); // (0,2) is in its column, not its row
  // default query cell: the first hidden cell, (2,0); the column head puts 1/3 on (0,0), (1,0), (3,0)
  assert.deepEqual(c.queryCell, [2, 0]);
  assert.equal(c.queryHiddenOnly, true);
  assert.deepEqual(c.queryAttention[0]![1], [1 / 3, 0, 0, 0, 0, 1 / 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 / 3, 0, 0, 0, 0].map((x) => Math.round(x * 1e5) / 1e5));

  assert.ok(out.findings.includes("structured masks: layer 0 head 0: row head, row score 1.00"), out.findings.join("\n"));
  assert.ok(out.findings.includes("structured masks: layer 1 head 1: row+col observed head, observed row+col score 0.800"), out.findings.join("\n"));
  assert.deepEqual(out.figures.map((f) => f.name), ["grid-structured", "query-structured", "scores"]);
  for (const f of out.figures) {
    const svg = await renderSvg(f.spec);
    assert.ok(svg.includes("<svg") && svg.length > 2000, f.name);
  }
});

test("attention: random masks follow the per-sample mask; 'both' runs two conditions", async () => {
  const mdl = model(3);
  const batch = sampleBatch(new Rng(SEED), data, B);
  const remove = forcePatterns(mdl, batch.hidden);
  const out = await attention(ctxOf(mdl), { ...ATTENTION_DEFAULTS, batch: B, mask: "random", queryCell: [1, 4] });
  remove();
  const c = (out.json as unknown as Json).conditions[0]!;
  const obsHead = c.heads.find((x) => x.layer === 1 && x.head === 1)!;
  // expected observed row+col mass of hidden queries: 0.4 per non-empty observed row / column
  let sum = 0, cnt = 0;
  for (let b = 0; b < B; b++) {
    const hid = batch.hidden.subarray(b * T, (b + 1) * T);
    for (let q = 0; q < T; q++) {
      if (!hid[q]) continue;
      const qi = Math.floor(q / 5), qj = q % 5;
      let rowObs = false, colObs = false;
      for (let k = 0; k < T; k++) {
        if (k === q || hid[k]) continue;
        if (Math.floor(k / 5) === qi) rowObs = true;
        if (k % 5 === qj) colObs = true;
      }
      sum += (rowObs ? 0.4 : 0) + (colObs ? 0.4 : 0);
      cnt++;
    }
  }
  close(obsHead.hidden!.obsRowCol!, sum / cnt, "observed row+col, random masks");
  assert.deepEqual(c.queryCell, [1, 4]);
  assert.equal(c.heads.find((x) => x.layer === 0 && x.head === 0)!.label, "row");

  const both = await attention(ctxOf(model(3)), { ...ATTENTION_DEFAULTS, batch: 8 });
  assert.deepEqual((both.json as unknown as Json).conditions.map((x) => x.mask), ["random", "structured"]);
});

test("attention: bad options are AbruptErrors", async () => {
  const ctx = ctxOf(model());
  await assert.rejects(async () => await attention(ctx, { ...ATTENTION_DEFAULTS, batch: 4, queryCell: [4, 0] }), (e: Error) => e instanceof AbruptError && /outside the 4×5 matrix/.test(e.message));
  await assert.rejects(async () => await attention(ctx, { ...ATTENTION_DEFAULTS, batch: 0 }), AbruptError);
  await assert.rejects(async () => await attention(ctx, { ...ATTENTION_DEFAULTS, batch: 4, mask: "rows" as "random" }), AbruptError);
  await assert.rejects(async () => await attention(ctx, { ...ATTENTION_DEFAULTS, batch: 4, mask: { rows: [7] } }), AbruptError);
});
