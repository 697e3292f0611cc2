// The trainer: metrics, checkpoints, bit-identical resume, frozen groups,
// NaN handling, and that training actually reduces the loss.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveConfig, checkpointSteps, lrAt } from "../src/train/config.js";
import { readMetrics } from "../src/train/metrics.js";
import { listCheckpoints } from "../src/store/run.js";
import { train } from "../src/train/train.js";
import { loadCheckpoint } from "../src/store/checkpoint.js";
import { paramSpecs } from "../src/model/params.js";
import { summarizeDrop } from "../src/train/summary.js";
import { AbruptError } from "../src/errors.js";
import type { MetricsLine } from "../src/train/metrics.js";

const tiny = (backend: "cpu" | "ref", extra: Record<string, unknown> = {}) =>
  resolveConfig("cpu", undefined, {
    model: { L: 2, H: 2, d: 16, ff: 32, positions: 16 },
    data: { m: 3, n: 4, rank: 1, p_mask: 0.3 },
    train: { steps: 24, batch: 8, lr: 3e-3, warmup: 4, seed: 11, eval_every: 5, eval_batch: 16, ckpt_every: 10, ckpt_log: 0, backend, threads: 0, ...extra },
  });

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), "abrupt-train-")); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });
const strip = (l: MetricsLine) => ({ ...l, ms: 0 });

for (const backend of ["ref", "cpu"] as const) {
  test(`${backend}: resume continues bit-identically`, async () => {
    const cfg = tiny(backend);
    const a = tmp();
    await train(cfg, { outDir: a, quiet: true });
    const b = tmp();
    const r1 = await train(cfg, { outDir: b, quiet: true, stopAfter: 13 });
    assert.equal(r1.status, "stopped");
    assert.deepEqual(listCheckpoints(b), [10, 13]);
    const r2 = await train(cfg, { outDir: b, quiet: true, resume: true });
    assert.equal(r2.status, "finished");
    const la = readMetrics(join(a, "metrics.jsonl")).lines.map(strip);
    const lb = readMetrics(join(b, "metrics.jsonl")).lines.map(strip);
    assert.equal(la.length, 24);
    assert.deepEqual(lb, la);
    const pa = loadCheckpoint(join(a, "checkpoints", "step-0000024.safetensors")).params;
    const pb = loadCheckpoint(join(b, "checkpoints", "step-0000024.safetensors")).params;
    assert.deepEqual(pb, pa);
  });
}

test("metrics lines have the documented fields; eval every k steps; L is the hidden/observed mix", async () => {
  const dir = tmp();
  await train(tiny("cpu"), { outDir: dir, quiet: true });
  const raw = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(raw.length, 24);
  for (const l of raw) {
    for (const k of ["step", "loss", "loss_mask", "loss_obs", "mask_abs", "lr", "ms"]) assert.equal(typeof l[k], "number", k);
    assert.equal("eval_loss" in l, l.step % 5 === 0);
    // L lies between L_obs and L_mask
    assert.ok(l.loss <= Math.max(l.loss_mask, l.loss_obs) + 1e-9 && l.loss >= Math.min(l.loss_mask, l.loss_obs) - 1e-9);
  }
  assert.equal(raw[0].lr, 3e-3 / 4);
  assert.equal(raw[5].lr, 3e-3);
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  assert.equal(cfg.data.m, 3);
  assert.equal(cfg.data.p_mask, 0.3);
  assert.equal(JSON.parse(readFileSync(join(dir, "status.json"), "utf8")).status, "finished");
  // Adam state is kept for the newest checkpoint only (keep_optimizer: last)
  const files = readdirSync(join(dir, "checkpoints")).sort();
  assert.deepEqual(files, ["step-0000010.safetensors", "step-0000020.safetensors", "step-0000024.adam.safetensors", "step-0000024.safetensors"]);
});

test("training reduces the loss (40 steps, tiny model)", async () => {
  const dir = tmp();
  const cfg = tiny("cpu", { steps: 60, batch: 32, lr: 3e-3, eval_every: 0 });
  await train(cfg, { outDir: dir, quiet: true });
  const lines = readMetrics(join(dir, "metrics.jsonl")).lines;
  const mean = (xs: MetricsLine[]) => xs.reduce((s, l) => s + l.loss, 0) / xs.length;
  assert.ok(mean(lines.slice(-10)) < 0.5 * mean(lines.slice(0, 5)), `${mean(lines.slice(0, 5))} → ${mean(lines.slice(-10))}`);
});

test("frozen groups do not move during training", async () => {
  const dir = tmp();
  const cfg = tiny("cpu", { steps: 10, freeze: ["attn", "pos_emb"], ckpt_steps: [1] });
  await train(cfg, { outDir: dir, quiet: true });
  const p1 = loadCheckpoint(join(dir, "checkpoints", "step-0000001.safetensors")).params;
  const p10 = loadCheckpoint(join(dir, "checkpoints", "step-0000010.safetensors")).params;
  for (const s of paramSpecs({ ...cfg.model })) {
    const same = p1.subarray(s.offset, s.offset + s.size).every((x, i) => x === p10[s.offset + i]);
    if (/\.attn$/.test(s.group) || s.group === "pos_emb") assert.ok(same, `${s.name} moved`);
    else if (s.name !== "embed.tok.weight") assert.ok(!same, `${s.name} did not move`);
  }
});

test("a run that diverges stops with a clear error and keeps its checkpoints", async () => {
  const dir = tmp();
  const cfg = tiny("cpu", { steps: 50, lr: 1e30, warmup: 0, ckpt_every: 1, eval_every: 0, keep_optimizer: "last" });
  await assert.rejects(train(cfg, { outDir: dir, quiet: true }), (e: unknown) => e instanceof AbruptError && /loss became (NaN|Infinity)/.test(e.message));
  assert.equal(JSON.parse(readFileSync(join(dir, "status.json"), "utf8")).status, "failed");
  const steps = listCheckpoints(dir);
  assert.ok(steps.length > 0);
  // the newest checkpoint still loads and holds finite numbers
  const p = loadCheckpoint(join(dir, "checkpoints", `step-${String(steps.at(-1)).padStart(7, "0")}.safetensors`)).params;
  assert.ok(p.every(Number.isFinite));
});

test("a second run into the same folder is refused", async () => {
  const dir = tmp();
  await train(tiny("cpu", { steps: 2, warmup: 0 }), { outDir: dir, quiet: true });
  await assert.rejects(train(tiny("cpu", { steps: 2, warmup: 0 }), { outDir: dir, quiet: true }), /already holds a run/);
  assert.ok(existsSync(join(dir, "metrics.jsonl")));
});

test("config: presets, validation, checkpoint schedule", () => {
  const p = resolveConfig("paper", undefined, {});
  assert.deepEqual([p.model.L, p.model.H, p.model.d, p.model.ff, p.train.batch, p.train.lr, p.train.steps], [4, 8, 768, 3072, 256, 1e-4, 50000]);
  const s = resolveConfig("S", undefined, {});
  assert.deepEqual([s.model.L, s.model.H, s.model.d, s.train.batch], [2, 4, 128, 128]);
  assert.throws(() => resolveConfig("nope", undefined, {}), /unknown preset "nope"/);
  assert.throws(() => resolveConfig("S", undefined, { data: { rank: 8 } }), /rank \(8\) must be at most min\(m, n\) = 7/);
  assert.throws(() => resolveConfig("S", undefined, { data: { p_mask: 1 } }), /p_mask must be in \[0, 1\)/);
  assert.throws(() => resolveConfig("S", undefined, { model: { H: 3 } }), /H \(3\) must divide model.d \(128\)/);
  assert.throws(() => resolveConfig("S", undefined, { data: { m: 30, n: 30 } }), /positions/);
  const ck = checkpointSteps({ ...p.train, steps: 1000, ckpt_every: 250, ckpt_log: 4, ckpt_steps: [7] });
  assert.deepEqual([...ck].sort((a, b) => a - b), [1, 7, 10, 100, 250, 500, 750, 1000]);
});

test("learning-rate schedule: warm-up ramp, constant (paper) or cosine to lr·lr_final; metrics record it", async () => {
  const c = resolveConfig("paper", undefined, { train: { steps: 1000, lr: 2e-3, warmup: 100 } });
  assert.equal(c.train.lr_decay, "none", "the paper keeps the lr constant");
  const preset = resolveConfig("cpu", undefined, {}).train;
  assert.deepEqual([preset.lr_decay, preset.decay_start, preset.lr_final, preset.steps, preset.batch], ["cosine", 8000, 0, 16000, 128]);
  assert.equal(lrAt(preset, 8000), 1e-3);
  const old = resolveConfig("cpu4x4", undefined, {}).train;
  assert.deepEqual([old.lr_decay, old.decay_start, old.lr_final, old.steps, old.batch], ["cosine", 30000, 0, 50000, 64]);
  assert.equal(lrAt(old, 30000), 1e-3);
  assert.ok(lrAt(old, 40000) < 0.51e-3 && lrAt(old, 40000) > 0.49e-3);
  assert.ok(lrAt(preset, 12000) < 0.51e-3 && lrAt(preset, 12000) > 0.49e-3);
  assert.ok(Math.abs(lrAt(c.train, 50) - 1e-3) < 1e-15);
  assert.equal(lrAt(c.train, 100), 2e-3);
  assert.equal(lrAt(c.train, 999), 2e-3);
  const k = resolveConfig("cpu", undefined, { train: { steps: 1100, lr: 2e-3, warmup: 100, lr_decay: "cosine", lr_final: 0.1, decay_start: 0 } });
  assert.equal(lrAt(k.train, 100), 2e-3);
  assert.ok(Math.abs(lrAt(k.train, 600) - 2e-3 * 0.55) < 1e-12, "half way: lr·(final + (1-final)/2)");
  assert.ok(Math.abs(lrAt(k.train, 1100) - 2e-4) < 1e-12);
  assert.ok(lrAt(k.train, 300) > lrAt(k.train, 301));
  const d = resolveConfig("cpu", undefined, { train: { steps: 3000, lr: 1e-3, warmup: 100, lr_decay: "cosine", lr_final: 0, decay_start: 2000 } });
  assert.equal(lrAt(d.train, 1999), 1e-3);
  assert.equal(lrAt(d.train, 2000), 1e-3);
  assert.ok(Math.abs(lrAt(d.train, 2500) - 5e-4) < 1e-12);
  assert.equal(lrAt(d.train, 3000), 0);
  assert.throws(() => resolveConfig("cpu", undefined, { train: { lr_decay: "linear" as "cosine" } }), /lr_decay/);
  assert.throws(() => resolveConfig("cpu", undefined, { train: { lr_final: 2 } }), /lr_final/);
  const dir = tmp();
  await train(tiny("cpu", { steps: 12, warmup: 2, lr_decay: "cosine", lr_final: 0.5, decay_start: 0 }), { outDir: dir, quiet: true });
  const lrs = readMetrics(join(dir, "metrics.jsonl")).lines.map((l) => l.lr);
  assert.equal(lrs.length, 12);
  assert.ok(Math.abs(lrs[11]! - 1.5e-3) < 1e-12, `last lr ${lrs[11]}`);
  assert.ok(lrs[5]! > lrs[9]!);
});

test("drop summary finds a synthetic plateau and drop", () => {
  const lines: MetricsLine[] = [];
  for (let s = 1; s <= 2000; s++) {
    const lm = s < 300 ? 1 : s < 1200 ? 2 / 9 * (1 + 0.05 * Math.sin(s)) : 0.005;
    lines.push({ step: s, loss: lm * 0.3, loss_mask: lm, loss_obs: 0.01, mask_abs: 0, lr: 0, ms: 10 });
  }
  const sm = summarizeDrop(lines, 2);
  assert.ok(sm.plateau && Math.abs(sm.plateau.start - 349) <= 5 && Math.abs(sm.plateau.end - 1210) <= 15, JSON.stringify(sm.plateau));
  assert.ok(sm.drop && sm.drop.step > 1200 && sm.drop.step < 1260);
  assert.ok(sm.phenomenon);
  const flat = summarizeDrop(lines.slice(0, 1100), 2);
  assert.equal(flat.drop, null);
  assert.equal(flat.phenomenon, false);
});

test("--init-from RUN@STEP --train-only GROUP: others come from the checkpoint and stay frozen; the group starts fresh", async () => {
  const a = tmp();
  await train(tiny("cpu", { steps: 10 }), { outDir: a, quiet: true });
  const pa = loadCheckpoint(join(a, "checkpoints", "step-0000010.safetensors")).params;
  const b = tmp();
  const cfgB = tiny("cpu", { steps: 5, seed: 3, init_from: `${a}@10`, train_only: ["mlp"], ckpt_steps: [1] });
  await train(cfgB, { outDir: b, quiet: true });
  const p1 = loadCheckpoint(join(b, "checkpoints", "step-0000001.safetensors")).params;
  const p5 = loadCheckpoint(join(b, "checkpoints", "step-0000005.safetensors")).params;
  for (const s of paramSpecs({ ...cfgB.model })) {
    const eq = (x: Float32Array, y: Float32Array) => x.subarray(s.offset, s.offset + s.size).every((v, i) => v === y[s.offset + i]);
    if (/\.mlp$/.test(s.group)) {
      assert.ok(!eq(p1, pa), `${s.name} should start fresh`);
      assert.ok(!eq(p5, p1), `${s.name} should train`);
    } else {
      assert.ok(eq(p5, pa), `${s.name} should equal the checkpoint and stay frozen`);
    }
  }
  assert.throws(() => tiny("cpu", { train_only: ["mlp"] }), /train_only needs train.init_from/);
  await assert.rejects(train(tiny("cpu", { steps: 2, init_from: `${a}@7` }), { outDir: tmp(), quiet: true }), /does not exist/);
});
