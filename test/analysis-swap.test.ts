// Switching components between two tiny checkpoints: swapping between
// identical checkpoints changes nothing; swapping everything (or attn +
// non-attn) gives exactly the other model's losses; a qkv swap equals a
// hand-built hybrid; the loaded models are never changed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import type { ModelConfig } from "../src/model/params.js";
import { type DataConfig, sampleBatch } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import { type AnalysisContext, lossSplit, makeContext } from "../src/analysis/context.js";
import { SWAP_DEFAULTS, partTensors, swap } from "../src/analysis/swap.js";
import type { Losses } from "../src/analysis/ablate.js";
import { saveCheckpoint } from "../src/store/checkpoint.js";
import { renderSvg } from "../src/viz/plot.js";

const cfg: ModelConfig = { vocab: 2002, positions: 20, L: 2, H: 2, d: 8, ff: 16, lnEps: 1e-12 };
const data: DataConfig = { m: 4, n: 5, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };
const B = 70, T = 20, SEED = 3;

function pair() {
  const a = new Bert(cfg, refKernels);
  a.init(1, 0.3);
  const b = new Bert(cfg, refKernels);
  b.init(2, 0.3);
  const models = new Map([[100, a], [200, b]]);
  const ctx: AnalysisContext = {
    source: { kind: "checkpoint", file: "none" }, data, kernels: refKernels, seed: SEED, outDir: "/tmp", step: 200,
    model: (s = 200) => models.get(s)!,
  };
  return { a, b, ctx };
}

type Json = { A: Losses; B: Losses; parts: Array<{ part: string; tensors: string[]; params: number; AwithB: Losses; BwithA: Losses }> };

test("swap: everything (all, attn+non-attn) from the other checkpoint gives its losses exactly; cached models unchanged", async () => {
  const { a, b, ctx } = pair();
  const pa = a.params.slice(), pb = b.params.slice();
  const out = await swap(ctx, { stepA: 100, stepB: 200, parts: ["all", "attn+non-attn", "qkv", "attn", "non-attn"], batch: B });
  const j = out.json as unknown as Json;
  assert.notDeepEqual(j.A, j.B);
  for (const part of ["all", "attn+non-attn"]) {
    const r = j.parts.find((p) => p.part === part)!;
    assert.deepEqual(r.AwithB, j.B, part);
    assert.deepEqual(r.BwithA, j.A, part);
  }
  // attn and non-attn are complementary: A with B's attn is B with A's non-attn
  const attn = j.parts.find((p) => p.part === "attn")!, non = j.parts.find((p) => p.part === "non-attn")!;
  assert.deepEqual(attn.AwithB, non.BwithA);
  assert.deepEqual(attn.BwithA, non.AwithB);
  assert.equal(attn.params + non.params, a.params.length);
  assert.deepEqual(a.params, pa);
  assert.deepEqual(b.params, pb);

  // qkv by hand: A with B's query/key/value weights and biases, through the named views
  const h = new Bert(cfg, refKernels);
  h.params.set(a.params);
  for (let l = 0; l < cfg.L; l++) {
    h.paramViews.layers[l]!.qkvW.set(b.paramViews.layers[l]!.qkvW);
    h.paramViews.layers[l]!.qkvB.set(b.paramViews.layers[l]!.qkvB);
  }
  const batch = sampleBatch(new Rng(SEED), data, B);
  const o = new Float32Array(B * T);
  for (let b0 = 0; b0 < B; b0 += 10) o.set(h.forward(batch.tokens.subarray(b0 * T, (b0 + 10) * T), 10, T), b0 * T);
  const expect = lossSplit(o, batch.targets, batch.hidden);
  const qkv = j.parts.find((p) => p.part === "qkv")!;
  assert.deepEqual(qkv.tensors, ["blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.1.attn.qkv.weight", "blocks.1.attn.qkv.bias"]);
  assert.ok(Math.abs(qkv.AwithB.loss - expect.loss) <= 1e-6 * expect.loss, `${qkv.AwithB.loss} vs ${expect.loss}`);
  assert.ok(Math.abs(qkv.AwithB.loss_mask - expect.loss_mask) <= 1e-6 * expect.loss_mask);
  assert.notDeepEqual(qkv.AwithB, j.A);
  assert.notDeepEqual(qkv.AwithB, j.B);
  assert.ok((await renderSvg(out.figures[0]!.spec)).includes("<svg"));
  assert.ok(out.findings[0]!.startsWith("A (step 100): L "), out.findings[0]);
});

test("swap: identical checkpoints (saved and loaded through makeContext) change nothing", async () => {
  const dir = mkdtempSync(join(tmpdir(), "abrupt-swap-"));
  const m = new Bert(cfg, refKernels);
  m.init(5, 0.3);
  const file = join(dir, "m.safetensors");
  saveCheckpoint(file, cfg, m.params, {});
  const ctx = makeContext({ kind: "checkpoint", file }, data, refKernels, SEED, dir, -1);
  const j = (await swap(ctx, { ...SWAP_DEFAULTS, stepA: -1, stepB: -1, batch: 16 })).json as unknown as Json;
  assert.deepEqual(j.parts.map((p) => p.part), ["qkv", "attn", "non-attn"]);
  for (const p of j.parts) {
    assert.deepEqual(p.AwithB, j.A);
    assert.deepEqual(p.BwithA, j.A);
  }
  assert.deepEqual(j.A, j.B);
});

test("swap: parts are checked; mlp/ln/group selectors work; missing steps and other shapes are AbruptErrors", async () => {
  assert.deepEqual(partTensors(cfg, "mlp").map((s) => s.name), ["blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias", "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc1.bias", "blocks.1.mlp.fc2.weight", "blocks.1.mlp.fc2.bias"]);
  assert.deepEqual(partTensors(cfg, "blocks.1.attn+readout").map((s) => s.name), ["blocks.1.attn.qkv.weight", "blocks.1.attn.qkv.bias", "blocks.1.attn.proj.weight", "blocks.1.attn.proj.bias", "readout.weight", "readout.bias"]);
  assert.ok(partTensors(cfg, "non-attn").every((s) => !s.name.includes(".attn.")));
  assert.throws(() => partTensors(cfg, "heads"), (e: Error) => e instanceof AbruptError && /unknown part "heads"/.test(e.message));
  const { ctx } = pair();
  await assert.rejects(async () => await swap(ctx, { ...SWAP_DEFAULTS, batch: 4 }), (e: Error) => e instanceof AbruptError && /stepA and stepB/.test(e.message));
  const other = new Bert({ ...cfg, ff: 8 }, refKernels);
  const ctx2: AnalysisContext = { ...ctx, model: (s?: number) => (s === 1 ? other : ctx.model(200)) };
  await assert.rejects(async () => await swap(ctx2, { ...SWAP_DEFAULTS, stepA: 1, stepB: 200, batch: 4 }), (e: Error) => e instanceof AbruptError && /different model shapes/.test(e.message));
});
