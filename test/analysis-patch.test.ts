// Activation patching X → −X on a tiny model: patching the last layer's
// resid_post (or embed.out, which everything downstream depends on alone)
// must give exactly the outputs of the run on X; patching something partial
// must not; the baselines must match hand-computed MSEs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import type { ModelConfig } from "../src/model/params.js";
import { type DataConfig, MASK_ID, sampleBatch, valueOf } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import type { AnalysisContext } from "../src/analysis/context.js";
import { PATCH_DEFAULTS, type PatchRun, negateBatch, patch } from "../src/analysis/patch.js";
import { CHUNK } from "../src/analysis/forward.js";
import { renderSvg } from "../src/viz/plot.js";

const cfg: ModelConfig = { vocab: 2002, positions: 20, L: 2, H: 2, d: 8, ff: 16, lnEps: 1e-12 };
const data: DataConfig = { m: 4, n: 5, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };
const T = 20, B = 70, SEED = 9;

function setup() {
  const model = new Bert(cfg, refKernels);
  model.init(4, 0.3);
  const ctx: AnalysisContext = { source: { kind: "checkpoint", file: "none" }, data, kernels: refKernels, seed: SEED, outDir: "/tmp", step: -1, model: () => model };
  return { model, ctx };
}

type Json = { hooks: string[]; baselines: { x: PatchRun; negX: PatchRun }; patched: Array<{ hook: string } & PatchRun> };

test("patch: the last ln2.out or embed.out from X gives exactly the X run; attn.out of layer 0 does not", async () => {
  assert.ok(B > CHUNK);
  const { model, ctx } = setup();
  const out = await patch(ctx, { hooks: ["blocks.1.ln2.out", "embed.out", "blocks.0.attn.out"], batch: B });
  const j = out.json as unknown as Json;
  assert.deepEqual(j.patched.map((p) => p.hook), ["blocks.1.ln2.out", "embed.out", "blocks.0.attn.out"]);
  const [last, emb, attn0] = j.patched;
  const strip = (r: PatchRun) => ({ toX: r.toX, toNegX: r.toNegX });
  assert.deepEqual(strip(last!), j.baselines.x);
  assert.deepEqual(strip(emb!), j.baselines.x);
  assert.notDeepEqual(strip(attn0!), j.baselines.x);
  assert.notDeepEqual(strip(attn0!), j.baselines.negX);

  // baselines by hand: model on X and on −X, MSE to ±X
  const x = sampleBatch(new Rng(SEED), data, B);
  const neg = negateBatch(x, false);
  for (let i = 0; i < x.tokens.length; i++) {
    assert.equal(neg.hidden[i], x.hidden[i]);
    if (x.hidden[i]) assert.equal(neg.tokens[i], MASK_ID);
    else assert.equal(valueOf(neg.tokens[i]!), -valueOf(x.tokens[i]!) + 0); // + 0: −0 → 0
  }
  const mse = (o: Float32Array, sign: number, which: "all" | "hidden" | "observed") => {
    let s = 0, c = 0;
    for (let i = 0; i < o.length; i++) {
      if (which === "hidden" && !x.hidden[i]) continue;
      if (which === "observed" && x.hidden[i]) continue;
      s += (o[i]! - sign * x.targets[i]!) ** 2;
      c++;
    }
    return s / c;
  };
  const oX = model.forward(x.tokens, B, T).slice();
  const oN = model.forward(neg.tokens, B, T).slice();
  for (const which of ["all", "hidden", "observed"] as const) {
    const near = (a: number, b: number) => assert.ok(Math.abs(a - b) <= 1e-6 * b, `${which}: ${a} vs ${b}`);
    near(j.baselines.x.toX[which], mse(oX, 1, which));
    near(j.baselines.x.toNegX[which], mse(oX, -1, which));
    near(j.baselines.negX.toX[which], mse(oN, 1, which));
    near(j.baselines.negX.toNegX[which], mse(oN, -1, which));
  }
  assert.ok(out.findings.some((f) => f.startsWith("run on −X with blocks.1.ln2.out from X:")), out.findings.join("\n"));
  assert.ok((await renderSvg(out.figures[0]!.spec)).includes("<svg"));
});

test("patch: default hooks are every layer's attn.out; the model keeps no hook", async () => {
  const { model, ctx } = setup();
  const x = sampleBatch(new Rng(SEED), data, 8);
  const before = model.forward(x.tokens, 8, T).slice();
  const j = (await patch(ctx, { ...PATCH_DEFAULTS, batch: 8 })).json as unknown as Json;
  assert.deepEqual(j.hooks, ["blocks.0.attn.out", "blocks.1.attn.out"]);
  assert.deepEqual(model.forward(x.tokens, 8, T).slice(), before);
});

test("patch: an unknown hook is an AbruptError naming the valid ones", async () => {
  const { ctx } = setup();
  await assert.rejects(async () => await patch(ctx, { hooks: ["blocks.4.attn.out"], batch: 4 }), (e: Error) => e instanceof AbruptError && /unknown hook "blocks.4.attn.out"/.test(e.message) && e.message.includes("blocks.1.attn.out"));
  await assert.rejects(async () => await patch(ctx, { hooks: [], batch: 4 }), AbruptError);
});
