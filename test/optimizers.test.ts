// The optional levers of SPEC §5 in the trainer: plain SGD, AdamW weight
// decay (linear weights only) and the init scale, each against the same step
// computed independently from the model's gradient on the run's first batch.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sampleBatch } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { loadCpuKernels } from "../src/kernels/cpu.js";
import { Bert } from "../src/model/bert.js";
import { paramSpecs } from "../src/model/params.js";
import { loadCheckpoint } from "../src/store/checkpoint.js";
import { type RunConfig, dataConfigOf, modelConfigOf, resolveConfig } from "../src/train/config.js";
import { seedsOf, train } from "../src/train/train.js";
import { bertDecays as decays } from "../src/family/bert.js";

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), "abrupt-opt-")); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });

const oneStep = (extra: Record<string, unknown>) =>
  resolveConfig("cpu", undefined, {
    model: { L: 2, H: 2, d: 16, ff: 32, positions: 16 },
    data: { m: 3, n: 4, rank: 1, p_mask: 0.3 },
    train: { steps: 1, batch: 8, lr: 0.05, warmup: 0, seed: 4, eval_every: 0, ckpt_every: 0, ckpt_log: 0, ckpt_steps: [1], backend: "cpu", ...extra },
  });

/** The initial parameters and the gradient of the run's first step, computed outside the trainer. */
function firstStep(cfg: RunConfig) {
  const model = new Bert(modelConfigOf(cfg), loadCpuKernels());
  const seeds = seedsOf(cfg.train.seed);
  model.init(seeds.init, cfg.train.init_std, cfg.train.readout_init);
  const batch = sampleBatch(new Rng(seeds.data), dataConfigOf(cfg), cfg.train.batch);
  model.zeroGrad();
  const out = model.forward(batch.tokens, batch.B, batch.T);
  const dpred = new Float32Array(out.length);
  model.kernels.mse(dpred, out, batch.targets, out.length, 1 / out.length);
  model.backward(dpred);
  return { p0: model.params.slice(), g: model.grads.slice(), specs: paramSpecs(model.cfg) };
}

async function trained(cfg: RunConfig): Promise<Float32Array> {
  const dir = tmp();
  await train(cfg, { outDir: dir, quiet: true });
  return loadCheckpoint(join(dir, "checkpoints", "step-0000001.safetensors")).params;
}

function assertNear(got: Float32Array, want: Float64Array, what: string, tol = 2e-6) {
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!);
    if (e > worst) { worst = e; at = i; }
  }
  assert.ok(worst <= tol, `${what}: worst |Δ| ${worst} at ${at} (${got[at]} vs ${want[at]})`);
}

test("optimizer sgd: p1 = p0 − lr (g + wd·p0), the decay on linear weights only", async () => {
  for (const wd of [0, 0.3]) {
    const cfg = oneStep({ optimizer: "sgd", weight_decay: wd });
    const { p0, g, specs } = firstStep(cfg);
    const want = new Float64Array(p0.length);
    for (const s of specs) {
      const w = decays(s.name) ? wd : 0;
      for (let i = s.offset; i < s.offset + s.size; i++) want[i] = p0[i]! - 0.05 * (g[i]! + w * p0[i]!);
    }
    assertNear(await trained(cfg), want, `sgd wd ${wd}`);
  }
});

test("weight_decay with adam is AdamW: p1 = p0·(1 − lr·wd) − lr·g/(|g| + eps) at step 1, on linear weights only", async () => {
  const wd = 0.5;
  const cfg = oneStep({ weight_decay: wd });
  const { p0, g, specs } = firstStep(cfg);
  const want = new Float64Array(p0.length);
  // Adam's first step: m = (1−β1) g, v = (1−β2) g², so the update is lr·g/(|g| + eps)
  for (const s of specs) {
    const w = decays(s.name) ? wd : 0;
    for (let i = s.offset; i < s.offset + s.size; i++) want[i] = p0[i]! * (1 - 0.05 * w) - (0.05 * g[i]!) / (Math.abs(g[i]!) + 1e-8);
  }
  assertNear(await trained(cfg), want, "adamw");
  assert.deepEqual(specs.filter((s) => decays(s.name)).map((s) => s.name),
    ["blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight",
      "blocks.1.attn.qkv.weight", "blocks.1.attn.proj.weight", "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.weight", "readout.weight"]);
});

test("init_std sets the std of the body's init (and only of the weights)", async () => {
  const big = resolveConfig("cpu", undefined, { model: { L: 2, H: 2, d: 64, ff: 256, positions: 16 }, train: { init_std: 0.1 } });
  const model = new Bert(modelConfigOf(big), loadCpuKernels());
  model.init(1, big.train.init_std, big.train.readout_init);
  const w = model.paramViews.layers[1]!.fc1W;
  let s2 = 0;
  for (const x of w) s2 += x * x;
  const sd = Math.sqrt(s2 / w.length);
  assert.ok(Math.abs(sd - 0.1) < 0.005, `std ${sd}`);
  assert.ok(model.paramViews.layers[1]!.fc1B.every((x) => x === 0) && model.paramViews.layers[0]!.ln1W.every((x) => x === 1));
  // the trainer uses it: its step-1 parameters follow from the init at 0.1 (plain sgd, lr 0.05)
  const c2 = oneStep({ optimizer: "sgd", init_std: 0.1 });
  const { p0, g } = firstStep(c2);
  assertNear(await trained(c2), Float64Array.from(p0, (p, i) => p - 0.05 * g[i]!), "sgd from init_std 0.1");
});
