// Head ablation on tiny models: a head whose output projection columns are
// zero is provably irrelevant (ΔL exactly 0 in both modes); zeroing a head's
// output must equal zeroing its projection columns in the weights; a
// mean-pattern ablation of a uniform-attention model changes nothing, and on
// a random model it equals a hand-done two-pass replacement.
import { test } from "node:test";
import assert from "node:assert/strict";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import type { ModelConfig } from "../src/model/params.js";
import { type DataConfig, sampleBatch } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import { type AnalysisContext, lossSplit } from "../src/analysis/context.js";
import { ABLATE_DEFAULTS, type AblatedLosses, ablate } from "../src/analysis/ablate.js";
import { renderSvg } from "../src/viz/plot.js";

const cfg: ModelConfig = { vocab: 2002, positions: 20, L: 2, H: 2, d: 8, ff: 16, lnEps: 1e-12 };
const data: DataConfig = { m: 4, n: 5, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };
const T = 20, B = 70, SEED = 7, hs = 4;

const ctxOf = (model: Bert): AnalysisContext => ({
  source: { kind: "checkpoint", file: "none" }, data, kernels: refKernels, seed: SEED, outDir: "/tmp", step: -1, model: () => model,
});

function model(seed = 1): Bert {
  const m = new Bert(cfg, refKernels);
  m.init(seed, 0.3);
  return m;
}

/** zero the output-projection columns of head h in layer l (projW is [out C, in C]) */
function cutHead(m: Bert, l: number, h: number): void {
  const w = m.paramViews.layers[l]!.projW;
  for (let o = 0; o < cfg.d; o++) w.fill(0, o * cfg.d + h * hs, o * cfg.d + (h + 1) * hs);
}

type Row = { layer: number; head: number; zero?: AblatedLosses; mean?: AblatedLosses };
type Json = { clean: { loss: number; loss_mask: number; loss_obs: number }; heads: Row[]; modes: string[] };

function lossOf(m: Bert): { loss: number; loss_mask: number; loss_obs: number } {
  const batch = sampleBatch(new Rng(SEED), data, B);
  const out = new Float32Array(B * T);
  for (let b0 = 0; b0 < B; b0 += 35) out.set(m.forward(batch.tokens.subarray(b0 * T, (b0 + 35) * T), 35, T), b0 * T);
  return lossSplit(out, batch.targets, batch.hidden);
}

test("ablate: a head with zero projection columns is irrelevant (ΔL = 0 exactly, both modes); zeroing another equals cutting its weights", async () => {
  const m = model(1);
  cutHead(m, 0, 1);
  cutHead(m, 1, 1);
  const out = await ablate(ctxOf(m), { ...ABLATE_DEFAULTS, batch: B });
  const json = out.json as unknown as Json;
  assert.deepEqual(json.modes, ["zero", "mean"]);
  assert.equal(json.heads.length, 4);
  const clean = lossOf(m);
  assert.ok(Math.abs(json.clean.loss - clean.loss) < 1e-6 * clean.loss, `${json.clean.loss} vs ${clean.loss}`);
  for (const r of json.heads) {
    if (r.head === 1) {
      for (const mode of ["zero", "mean"] as const) {
        assert.equal(r[mode]!.dLoss, 0, `${r.layer}.${r.head} ${mode}`);
        assert.equal(r[mode]!.dLossMask, 0);
        assert.equal(r[mode]!.dLossObs, 0);
      }
    } else {
      // zeroing head 0's output = cutting its projection columns
      const cut = model(1);
      cutHead(cut, 0, 1);
      cutHead(cut, 1, 1);
      cutHead(cut, r.layer, 0);
      const expect = lossOf(cut);
      assert.ok(Math.abs(r.zero!.loss - expect.loss) <= 1e-6 * expect.loss, `${r.zero!.loss} vs ${expect.loss}`);
      assert.ok(Math.abs(r.zero!.loss_mask - expect.loss_mask) <= 1e-6 * expect.loss_mask);
      assert.ok(Math.abs(r.zero!.dLoss) > 1e-4, `head ${r.layer}.0 should matter: ΔL ${r.zero!.dLoss}`);
      assert.ok(Math.abs(r.mean!.dLoss) > 1e-5, `head ${r.layer}.0 mean ablation should matter: ΔL ${r.mean!.dLoss}`);
    }
  }
  assert.equal(out.figures.length, 1);
  assert.ok((await renderSvg(out.figures[0]!.spec)).includes("<svg"));
  assert.ok(out.findings.some((f) => f.startsWith("zeroing the output: 2 of 4 heads change L_mask by at most 1%")), out.findings.join("\n"));
});

test("ablate: mean-pattern ablation of uniform attention changes nothing; on a random model it equals a two-pass replacement", async () => {
  const u = model(2);
  for (const w of u.paramViews.layers) { w.qkvW.fill(0, 0, 2 * cfg.d * cfg.d); w.qkvB.fill(0, 0, 2 * cfg.d); } // q = k = 0: every pattern 1/T
  const ju = (await ablate(ctxOf(u), { heads: ["1.0"], mode: "both", batch: B })).json as unknown as Json;
  assert.equal(ju.heads[0]!.mean!.dLoss, 0);
  assert.ok(Math.abs(ju.heads[0]!.zero!.dLoss) > 1e-4);

  const m = model(3);
  const j = (await ablate(ctxOf(m), { heads: ["0.1"], mode: "mean", batch: B })).json as unknown as Json;
  assert.deepEqual(j.modes, ["mean"]);
  assert.equal(j.heads[0]!.zero, undefined);
  // by hand: mean over the batch of layer 0 head 1's pattern, then a pass with it
  const batch = sampleBatch(new Rng(SEED), data, B);
  const mean = new Float64Array(T * T);
  m.forward(batch.tokens, B, T);
  const att = m.act("blocks.0.attn.pattern");
  for (let b = 0; b < B; b++) for (let i = 0; i < T * T; i++) mean[i]! += att[(b * 2 + 1) * T * T + i]! / B;
  const remove = m.addHook("blocks.0.attn.pattern", (a) => {
    for (let b = 0; b < B; b++) for (let i = 0; i < T * T; i++) a[(b * 2 + 1) * T * T + i] = mean[i]!;
  });
  const out = m.forward(batch.tokens, B, T);
  remove();
  const expect = lossSplit(out, batch.targets, batch.hidden);
  assert.ok(Math.abs(j.heads[0]!.mean!.loss - expect.loss) <= 1e-5 * expect.loss, `${j.heads[0]!.mean!.loss} vs ${expect.loss}`);
  assert.ok(Math.abs(j.heads[0]!.mean!.loss_mask - expect.loss_mask) <= 1e-5 * expect.loss_mask);
  assert.ok(Math.abs(j.heads[0]!.mean!.dLoss) > 1e-5);
  // the experiment leaves no hook behind
  const again = lossOf(m);
  assert.ok(Math.abs(again.loss - j.clean.loss) <= 1e-6 * again.loss);
});

test("ablate: bad heads and modes are AbruptErrors", async () => {
  const ctx = ctxOf(model());
  const bad = (heads: string[], re: RegExp) => assert.rejects(async () => await ablate(ctx, { heads, mode: "zero", batch: 4 }), (e: Error) => e instanceof AbruptError && re.test(e.message));
  await bad(["2.0"], /layer 2 is outside 0..1/);
  await bad(["0.2"], /head 2 is outside 0..1/);
  await bad(["01"], /LAYER.HEAD/);
  await bad([], /no heads/);
  await assert.rejects(async () => await ablate(ctx, { heads: null, mode: "half" as "zero", batch: 4 }), AbruptError);
});
