// Linear probes on tiny models whose hidden states hold the probed quantity
// linearly by construction (written there through hooks), and the shared
// linear algebra they rest on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type DataConfig, MASK_ID, allocBatch, valueOf } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import type { ModelConfig } from "../src/model/params.js";
import type { AnalysisContext } from "../src/analysis/context.js";
import { pca, pearson, ridgeSolve, symEigen } from "../src/analysis/linalg.js";
import { PROBE_DEFAULTS, probe, probeTargets, runProbes, topLeftSingular } from "../src/analysis/probe.js";
import { renderSvg } from "../src/viz/plot.js";

const data: DataConfig = { m: 4, n: 4, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };
const cfg: ModelConfig = { vocab: 2002, positions: 16, L: 2, H: 2, d: 12, ff: 16, lnEps: 1e-12 };

/**
 * A model whose embed.out is replaced by embed.sum (no LayerNorm), with
 * channel 0 of the token embedding = the token's value (0 for MASK) and of
 * the position embedding = 0; so channel 0 of layer 0 is the masked input.
 * If `rowAt1`, blocks.0.ln2.out channels 0..n-1 are overwritten with the
 * cell's row of the masked input (read from embed.sum through act()).
 */
function constructed(rowAt1: boolean): Bert {
  const model = new Bert(cfg, refKernels);
  model.init(5, 0.3);
  const C = cfg.d;
  for (let id = 0; id < cfg.vocab; id++) model.paramViews.wte[id * C] = id === MASK_ID ? 0 : valueOf(id);
  for (let t = 0; t < cfg.positions; t++) model.paramViews.wpe[t * C] = 0;
  model.addHook("embed.out", (a) => a.set(model.act("embed.sum")));
  if (rowAt1) {
    model.addHook("blocks.0.ln2.out", (a, info) => {
      const [B, T] = info.shape as [number, number, number];
      const emb = model.act("embed.sum");
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          const i = Math.floor(t / data.n);
          for (let c = 0; c < data.n; c++) a[(b * T + t) * C + c] = emb[(b * T + i * data.n + c) * C]!;
        }
      }
    });
  }
  return model;
}

const get = (rs: Awaited<ReturnType<typeof runProbes>>, layer: number, group: string, target: string, model = "trained") =>
  rs.find((r) => r.layer === layer && r.group === group && r.target === target && r.model === model)!;

test("probe: a value written linearly into layer 0 is recovered exactly at observed cells; hidden cells carry no information", async () => {
  const rs = await runProbes([{ name: "trained", model: constructed(false) }], data, refKernels, new Rng(3), { train: 256, test: 64, batch: 32, ridge: 1e-6 });
  const obs = get(rs, 0, "observed", "value");
  assert.ok(obs.mse < 1e-8, `observed value MSE ${obs.mse}`);
  assert.ok(obs.r2 > 1 - 1e-6);
  // hidden cells: only the position is known, E[X_ij | position] = 0, so the
  // probe predicts ≈ 0 and its MSE ≈ Var(X_ij) = r/9
  const hid = get(rs, 0, "hidden", "value");
  assert.ok(Math.abs(hid.mse / (2 / 9) - 1) < 0.2, `hidden value MSE ${hid.mse} vs r/9`);
  assert.ok(hid.r2 < 0.02 && hid.r2 > -0.15, `hidden value R² ${hid.r2}`);
  assert.equal(hid.cos, null);
  assert.ok(obs.nTrain + hid.nTrain === 256 * 16 && obs.nTest + hid.nTest === 64 * 16);
  assert.ok(Math.abs(hid.nTrain / (256 * 16) - 0.3) < 0.05);
});

test("probe: a row of the masked input written into layer 1 is recovered exactly (|cos| = 1); at layer 0 hidden cells cannot know it", async () => {
  const rs = await runProbes([{ name: "trained", model: constructed(true) }], data, refKernels, new Rng(4), { train: 192, test: 64, batch: 64, ridge: 1e-6 });
  for (const group of ["hidden", "observed"]) {
    const r = get(rs, 1, group, "row");
    assert.ok(r.mse < 1e-8, `${group} row MSE at layer 1: ${r.mse}`);
    assert.ok(Math.abs(r.cos! - 1) < 1e-5, `${group} row |cos| at layer 1: ${r.cos}`);
  }
  const r0 = get(rs, 0, "hidden", "row");
  assert.ok(r0.mse > 0.05 && r0.cos! < 0.9, `hidden row at layer 0: MSE ${r0.mse}, |cos| ${r0.cos}`);
});

test("probe targets: masked row/column with zeros at hidden cells, value, and the sign-fixed top singular vector", async () => {
  const b = allocBatch(1, 2, 3);
  // X = u vᵀ with u = (1, -2), v = (0.1, 0.2, 0.3): rank 1, top left singular vector ±u/|u|
  const X = [0.1, 0.2, 0.3, -0.2, -0.4, -0.6];
  b.targets.set(X);
  b.hidden.set([0, 1, 0, 0, 0, 1]);
  const { Y, K } = probeTargets(b);
  assert.equal(K, 1 + 3 + 2 + 2);
  // cell (1, 2): value -0.6; row 1 masked = (-0.2, -0.4, 0); column 2 masked = (0.3, 0)
  const y = Array.from(Y.subarray(5 * K, 6 * K));
  const u = [-1 / Math.sqrt(5), 2 / Math.sqrt(5)]; // ±(1, −2)/√5 with its largest-|.| component made positive
  const want = [-0.6, -0.2, -0.4, 0, 0.3, 0, ...u];
  want.forEach((w, k) => assert.ok(Math.abs(y[k]! - w) < 1e-6, `component ${k}: ${y[k]} vs ${w}`));
  const sv = topLeftSingular(X, 2, 3);
  assert.ok(Math.abs(sv[0]! - u[0]!) < 1e-12 && Math.abs(sv[1]! - u[1]!) < 1e-12);
});

test("probe: the experiment runs end to end with a random-init control, rejects bad options, and its figures render", async () => {
  const model = constructed(false);
  const ctx: AnalysisContext = {
    source: { kind: "checkpoint", file: "none" }, data, kernels: refKernels, seed: 9, outDir: "/tmp", step: -1, model: () => model,
  };
  const out = await probe(ctx, { ...PROBE_DEFAULTS, train: 64, test: 32, batch: 32 });
  const results = out.json.results as Awaited<ReturnType<typeof runProbes>>;
  assert.equal(results.length, 2 * 3 * 2 * 4); // models × layers × groups × targets
  // the trained (constructed) model holds observed values exactly at layer 0; the control does not
  assert.ok(get(results, 0, "observed", "value").mse < 1e-8);
  assert.ok(get(results, 0, "observed", "value", "control").mse > 1e-3);
  assert.equal(out.findings.length, 8);
  await assert.rejects(async () => await probe(ctx, { ...PROBE_DEFAULTS, train: 0 }), AbruptError);
  await assert.rejects(async () => await probe(ctx, { ...PROBE_DEFAULTS, ridge: -1 }), AbruptError);
  const svg = await renderSvg(out.figures[0]!.spec);
  assert.ok(svg.includes("<svg") && svg.includes("layer"));
});

test("linalg: ridge solve satisfies its normal equations; Jacobi eigen-decomposition reconstructs the matrix", async () => {
  const rng = new Rng(1);
  const p = 6, k = 2, N = 40;
  const F = Array.from({ length: N * p }, () => rng.normal());
  const Y = Array.from({ length: N * k }, () => rng.normal());
  const ftf = new Float64Array(p * p), fty = new Float64Array(p * k);
  for (let r = 0; r < N; r++) {
    for (let a = 0; a < p; a++) {
      for (let b = 0; b < p; b++) ftf[a * p + b]! += F[r * p + a]! * F[r * p + b]!;
      for (let c = 0; c < k; c++) fty[a * k + c]! += F[r * p + a]! * Y[r * k + c]!;
    }
  }
  const { W, lambda } = ridgeSolve(ftf, fty, p, k, 1e-3);
  for (let a = 0; a < p; a++) {
    for (let c = 0; c < k; c++) {
      let s = lambda * W[a * k + c]!;
      for (let b = 0; b < p; b++) s += ftf[a * p + b]! * W[b * k + c]!;
      assert.ok(Math.abs(s - fty[a * k + c]!) < 1e-9);
    }
  }
  // a singular system (duplicated feature) is still solved thanks to the ridge
  const sing = new Float64Array([1, 1, 1, 1]);
  const r = ridgeSolve(sing, new Float64Array([2, 2]), 2, 1);
  assert.ok(Math.abs(r.W[0]! - 1) < 1e-4 && Math.abs(r.W[1]! - 1) < 1e-4);

  const n = 7;
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) A[i * n + j] = A[j * n + i] = rng.normal();
  const { values, vectors } = symEigen(A, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < n; c++) s += values[c]! * vectors[c * n + i]! * vectors[c * n + j]!;
      assert.ok(Math.abs(s - A[i * n + j]!) < 1e-10, `A[${i},${j}]`);
    }
  }
  for (let c = 1; c < n; c++) assert.ok(values[c - 1]! >= values[c]!);
});

test("linalg: PCA finds a planted top direction (both Gram routes) and its explained variance", async () => {
  const rng = new Rng(2);
  for (const [rows, cols] of [[200, 5], [5, 30]] as const) {
    const dir = Array.from({ length: cols }, (_, j) => (j === 1 ? 3 : j === 3 ? -4 : 0)).map((x) => x / 5);
    const X = new Float64Array(rows * cols);
    const t = new Float64Array(rows);
    for (let i = 0; i < rows; i++) {
      t[i] = 10 * rng.normal();
      for (let j = 0; j < cols; j++) X[i * cols + j] = 7 + t[i]! * dir[j]! + 0.001 * rng.normal();
    }
    const p = pca(X, rows, cols, 2);
    // sign: largest-|.| loading positive, i.e. −dir
    for (let j = 0; j < cols; j++) assert.ok(Math.abs(p.components[j]! + dir[j]!) < 1e-3, `${rows}×${cols} component ${j}`);
    assert.ok(p.explained[0]! > 0.999);
    assert.ok(Math.abs(Math.abs(pearson(Array.from({ length: rows }, (_, i) => p.scores[i * 2]!), t)) - 1) < 1e-6);
  }
});
