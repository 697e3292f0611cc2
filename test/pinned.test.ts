// Numbers pinned against an independent computation in the test: predict's
// cell order on a non-square input, one Adam step of the trainer (lr with
// warm-up and cosine decay, bias correction by the step number), the train
// and eval metrics of metrics.jsonl, and the step a NaN loss is reported at.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { predict } from "../src/predict/predict.js";
import { MASK_ID, type Batch, sampleBatch, tokenOf } from "../src/data/matrix.js";
import { Rng, type RngState } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import { getKernels } from "../src/kernels/index.js";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import { loadCheckpoint, loadOptimizerState } from "../src/store/checkpoint.js";
import { dataConfigOf, resolveConfig } from "../src/train/config.js";
import { readMetrics } from "../src/train/metrics.js";
import { ckptName } from "../src/store/run.js";
import { seedsOf, train } from "../src/train/train.js";

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), "abrupt-pinned-")); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });

test("predict on a 3×5 input returns model.forward's output of cell (i, j) at [b][i][j]", async () => {
  const model = new Bert({ vocab: 2002, positions: 15, L: 1, H: 2, d: 8, ff: 16, lnEps: 1e-12 }, refKernels);
  model.init(3, 0.5); // large weights: every cell's output differs
  const rng = new Rng(9);
  const matrices = [0, 1].map(() => Array.from({ length: 3 }, () => Array.from({ length: 5 }, () => (rng.uniform() < 0.3 ? null : Math.round(rng.range(-1, 1) * 100) / 100))));
  const got = await predict(model, matrices);
  assert.equal(got.length, 2);
  const tokens = new Int32Array(2 * 15);
  matrices.forEach((X, b) => X.forEach((row, i) => row.forEach((v, j) => { tokens[b * 15 + i * 5 + j] = v === null ? MASK_ID : tokenOf(v); })));
  const out = model.forward(tokens, 2, 15);
  for (let b = 0; b < 2; b++) {
    assert.equal(got[b]!.length, 3);
    for (let i = 0; i < 3; i++) {
      assert.equal(got[b]![i]!.length, 5);
      for (let j = 0; j < 5; j++) assert.equal(got[b]![i]![j], out[b * 15 + i * 5 + j], `matrix ${b} cell (${i}, ${j})`);
    }
  }
  assert.notEqual(got[0]![0]![1], got[0]![1]![0]);
});

const tiny = (extra: Record<string, unknown>) => resolveConfig("cpu", undefined, {
  model: { L: 1, H: 2, d: 16, ff: 32, positions: 12 },
  data: { m: 3, n: 4, rank: 1, p_mask: 0.3 },
  train: { batch: 8, lr: 2e-3, seed: 4, eval_every: 0, eval_batch: 16, ckpt_every: 1, ckpt_log: 0, keep_optimizer: "all", backend: "cpu", threads: 1, ...extra },
});

/** The checkpoint and Adam state (with the data PRNG) a run saved at `step`. */
function stateAt(dir: string, step: number) {
  const base = join(dir, "checkpoints", ckptName(step));
  const ck = loadCheckpoint(`${base}.safetensors`);
  const os = loadOptimizerState(`${base}.adam.safetensors`, ck.params.length);
  return { params: ck.params, m: os.m, v: os.v, rng: JSON.parse(os.meta["rng"]!) as RngState };
}

test("one training step equals an Adam update computed here from the gradient (warm-up, cosine decay, bias correction)", async () => {
  const [lr, warmup, decayStart, steps, lrFinal] = [2e-3, 3, 4, 9, 0.1];
  const cfg = tiny({ steps, lr, warmup, lr_decay: "cosine", decay_start: decayStart, lr_final: lrFinal });
  const dir = tmp();
  await train(cfg, { outDir: dir, quiet: true });
  const logged = readMetrics(join(dir, "metrics.jsonl")).lines;
  // the schedule, written out: linear warm-up, constant, cosine to lr·lrFinal at the last step
  const lrOf = (t: number) => t < warmup ? lr * t / warmup
    : t <= decayStart ? lr
      : lr * (lrFinal + (1 - lrFinal) * 0.5 * (1 + Math.cos(Math.PI * (t - decayStart) / (steps - decayStart))));
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  const k = getKernels("cpu");
  k.setThreads?.(1);
  const model = new Bert({ ...cfg.model }, k);
  for (let t = 2; t <= steps; t++) {
    const prev = stateAt(dir, t - 1);
    const next = stateAt(dir, t);
    assert.ok(Math.abs(logged[t - 1]!.lr - lrOf(t)) <= 1e-15, `lr of step ${t}: ${logged[t - 1]!.lr} vs ${lrOf(t)}`);
    // step t's gradient: its batch comes from the PRNG state saved with step t-1
    const batch = sampleBatch(new Rng(prev.rng), dataConfigOf(cfg), cfg.train.batch);
    model.setParams(prev.params);
    model.zeroGrad();
    const out = model.forward(batch.tokens, batch.B, batch.T);
    const dout = new Float32Array(out.length);
    k.mse(dout, out, batch.targets, out.length, 1 / out.length);
    model.backward(dout);
    const g = model.grads;
    const c1 = 1 - b1 ** t, c2 = 1 - b2 ** t;
    let worst = 0, worstM = 0;
    for (let i = 0; i < g.length; i++) {
      const m = b1 * prev.m[i]! + (1 - b1) * g[i]!;
      const v = b2 * prev.v[i]! + (1 - b2) * g[i]! * g[i]!;
      const p = prev.params[i]! - lrOf(t) * (m / c1) / (Math.sqrt(v / c2) + eps);
      worst = Math.max(worst, Math.abs(next.params[i]! - p));
      // relative to the size of the terms (m may cancel to ~0)
      const mScale = b1 * Math.abs(prev.m[i]!) + (1 - b1) * Math.abs(g[i]!) + 1e-30;
      worstM = Math.max(worstM, Math.abs(next.m[i]! - m) / mScale, Math.abs(next.v[i]! - v) / (v + 1e-30));
    }
    assert.ok(worst <= 1e-3 * lrOf(t) + 1e-7, `step ${t}: parameters off by ${worst} (lr ${lrOf(t)})`);
    assert.ok(worstM <= 1e-5, `step ${t}: Adam moments off by ${worstM} (relative)`);
  }
});

/** L, L_mask, L_obs, mean |output| at hidden cells, in float64. */
function metricsOf(out: Float32Array, b: Batch) {
  let se = 0, seM = 0, seO = 0, abs = 0, nM = 0;
  for (let i = 0; i < out.length; i++) {
    const e = (out[i]! - b.targets[i]!) ** 2;
    se += e;
    if (b.hidden[i]) { seM += e; abs += Math.abs(out[i]!); nM++; } else seO += e;
  }
  return { loss: se / out.length, loss_mask: seM / nM, loss_obs: seO / (out.length - nM), mask_abs: abs / nM };
}

test("the train and eval metrics in metrics.jsonl are the losses of the model on its batches", async () => {
  const cfg = tiny({ steps: 12, warmup: 2, eval_every: 5, eval_batch: 24 });
  const dir = tmp();
  await train(cfg, { outDir: dir, quiet: true });
  const lines = readMetrics(join(dir, "metrics.jsonl")).lines;
  const k = getKernels("cpu");
  k.setThreads?.(1);
  const model = new Bert({ ...cfg.model }, k);
  const evalBatch = sampleBatch(new Rng(seedsOf(cfg.train.seed).eval), dataConfigOf(cfg), cfg.train.eval_batch);
  const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-6 * Math.abs(b) + 1e-12, `${what}: ${a} vs ${b}`);
  for (const s of [5, 10]) {
    // eval at step s: the eval set through the model after step s's update
    const st = stateAt(dir, s);
    model.setParams(st.params);
    const e = metricsOf(model.forward(evalBatch.tokens, evalBatch.B, evalBatch.T), evalBatch);
    const l = lines[s - 1]!;
    close(l.eval_loss!, e.loss, `eval_loss @${s}`);
    close(l.eval_loss_mask!, e.loss_mask, `eval_loss_mask @${s}`);
    close(l.eval_loss_obs!, e.loss_obs, `eval_loss_obs @${s}`);
    close(l.eval_mask_abs!, e.mask_abs, `eval_mask_abs @${s}`);
    // train metrics of step s+1: its own batch through the model before its update
    const batch = sampleBatch(new Rng(st.rng), dataConfigOf(cfg), cfg.train.batch);
    const t = metricsOf(model.forward(batch.tokens, batch.B, batch.T), batch);
    const n = lines[s]!;
    close(n.loss, t.loss, `loss @${s + 1}`);
    close(n.loss_mask, t.loss_mask, `loss_mask @${s + 1}`);
    close(n.loss_obs, t.loss_obs, `loss_obs @${s + 1}`);
    close(n.mask_abs, t.mask_abs, `mask_abs @${s + 1}`);
    assert.equal(n.eval_loss, undefined);
  }
});

test("a NaN loss stops the run with a message naming its step and the last checkpoint", async () => {
  const dir = tmp();
  const cfg = tiny({ steps: 50, lr: 1e30, warmup: 0 });
  let message = "";
  await assert.rejects(train(cfg, { outDir: dir, quiet: true }), (e: unknown) => { message = (e as Error).message; return e instanceof AbruptError; });
  const m = /^loss became (NaN|Infinity|-Infinity) at step (\d+); stopped \(last checkpoint: (step-\d{7})\)$/.exec(message);
  assert.ok(m, message);
  const step = Number(m[2]);
  const status = JSON.parse(readFileSync(join(dir, "status.json"), "utf8")) as { status: string; step: number };
  assert.deepEqual([status.status, status.step], ["failed", step]);
  // every step before it was logged and checkpointed; the failing one was not
  const logged = readMetrics(join(dir, "metrics.jsonl")).lines;
  assert.deepEqual(logged.map((l) => l.step), Array.from({ length: step - 1 }, (_, i) => i + 1));
  assert.ok(logged.every((l) => Number.isFinite(l.loss)));
  assert.equal(m[3], ckptName(step - 1));
});
