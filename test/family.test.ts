// The model seam (src/family/): `--model` picks a family and its presets,
// each family checks its config with one line, the trainer trains a GPT
// through the same loop as the BERT (metrics, minGPT checkpoints,
// bit-identical resume), and a GPT's events come from its sparse eval signal.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FAMILIES, familyOf } from "../src/family/index.js";
import { gptConfigOf } from "../src/family/gpt.js";
import { resolveConfig, presets, type PartialRunConfig } from "../src/train/config.js";
import { EventTracker, detectEvents } from "../src/train/events.js";
import { type MetricsLine, readMetrics } from "../src/train/metrics.js";
import { train } from "../src/train/train.js";
import { loadGptCheckpoint } from "../src/store/gpt-checkpoint.js";
import { checkpointPath } from "../src/store/run.js";
import { oneLine, runCli } from "./helpers/cli.js";
import { MetricsCache, summarizeRun } from "../src/server/runs.js";
import { writeReport } from "../src/server/report.js";
import { startServer } from "../src/server/server.js";

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), "abrupt-family-")); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });

test("--model picks the family and its default preset; presets belong to one family", () => {
  const bert = resolveConfig(undefined, undefined, {});
  assert.equal(bert.family, undefined, "a BERT run's config has no family key (its config.json is unchanged)");
  assert.equal(familyOf(bert).name, "bert");
  assert.equal(bert.preset, "cpu");

  const g = resolveConfig(undefined, undefined, { family: "gpt" });
  assert.equal(g.preset, "gpt-cpu");
  assert.equal(g.family, "gpt");
  assert.deepEqual(gptConfigOf(g), { vocab: 405, block: 19, L: 2, H: 2, d: 64, ff: 256, lnEps: 1e-5, attn: "softmax" });

  // SPEC §2's run
  const p = resolveConfig("gpt", undefined, {});
  assert.equal(p.family, "gpt");
  assert.deepEqual([p.data.m, p.data.n, p.data.rank, p.data.p_mask], [7, 7, 2, 0.3]);
  assert.deepEqual([p.model.L, p.model.H, p.model.d, p.model.ff, p.model.positions], [2, 2, 256, 1024, 99]);
  assert.deepEqual([p.train.batch, p.train.lr, p.train.steps], [256, 1e-4, 100000]);

  assert.throws(() => resolveConfig(undefined, undefined, { family: "lstm" }), /--model: unknown model "lstm" \(models: bert, gpt\)/);
  assert.throws(() => resolveConfig("cpu", undefined, { family: "gpt" }), /preset "cpu" trains the BERT, not the GPT \(gpt presets: gpt, gpt-cpu\)/);
  assert.throws(() => resolveConfig("gpt", undefined, { family: "bert" }), /preset "gpt" trains the GPT, not the BERT/);
  for (const [name, pr] of Object.entries(presets())) {
    const c = resolveConfig(name, undefined, {});
    assert.equal(familyOf(c).name, pr.family ?? "bert", name);
  }
});

test("each family checks its config with one line", () => {
  const gpt = (over: PartialRunConfig) => () => resolveConfig("gpt-cpu", undefined, over);
  assert.throws(gpt({ train: { attn_bias: { c: 2, from: 0, layers: null } } }), /train\.attn_bias \(--attn-bias\) is for the BERT/);
  assert.throws(gpt({ model: { vocab: 2002 } }), /model\.vocab of a GPT must be 405/);
  assert.throws(gpt({ data: { m: 4, n: 4 } }), /reads 32 tokens but model\.positions \(its block size\) is 19/);
  assert.throws(gpt({ data: { rank: 3 } }), /values must lie in \[-2, 2\].*set data\.clamp/);
  assert.doesNotThrow(gpt({ data: { rank: 3, clamp: true } }));
  assert.throws(gpt({ data: { factor: "gaussian" } }), /values must lie in \[-2, 2\]/);
  assert.throws(() => resolveConfig("cpu", undefined, { model: { attn: "linear" } }), /model\.attn is the GPT's/);
  assert.throws(() => resolveConfig("cpu", undefined, { model: { vocab: 405 } }), /model\.vocab must be at least 2002/);
  // weight decay: the linear weights of each family
  assert.deepEqual(FAMILIES["gpt"]!.specs(resolveConfig("gpt-cpu", undefined, { model: { L: 1 } })).filter((s) => FAMILIES["gpt"]!.decays(s.name)).map((s) => s.name),
    ["transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight", "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight", "lm_head.weight"]);
});

test("the CLI: an unknown --model, --attn-bias on a GPT, --model on resume: one line, nothing written", () => {
  const d = tmp();
  const out = join(d, "never");
  oneLine(runCli("train", "--model", "lstm", "--out", out, "--quiet"), /unknown model "lstm" \(models: bert, gpt\)/);
  oneLine(runCli("train", "--model", "gpt", "--attn-bias", "2", "--steps", "5", "--out", out, "--quiet"), /attn_bias \(--attn-bias\) is for the BERT/);
  oneLine(runCli("train", "--model", "gpt", "--preset", "cpu", "--out", out, "--quiet"), /preset "cpu" trains the BERT, not the GPT/);
  assert.equal(existsSync(out), false);
});

const tiny: PartialRunConfig = {
  model: { d: 16, ff: 32 },
  train: { steps: 40, batch: 16, eval_every: 20, eval_batch: 16, ckpt_every: 20, ckpt_log: 0, threads: 1, warmup: 0, lr_decay: "none" },
};

test("train --model gpt: the same loop trains the GPT, logs its metrics, writes minGPT checkpoints and resumes bit-identically", async () => {
  const d = tmp();
  const cfg = resolveConfig("gpt-cpu", undefined, tiny);
  const whole = join(d, "whole");
  const r = await train(cfg, { outDir: whole, quiet: true });
  assert.equal(r.status, "finished");
  const lines = readMetrics(join(whole, "metrics.jsonl")).lines;
  assert.equal(lines.length, 40);
  const first = lines[0]!, last = lines[39]!;
  // next-token cross-entropy: about ln 405 at the start, lower after 40 steps of Adam at lr 1e-3
  assert.ok(Math.abs(first.loss - Math.log(405)) < 0.3, `first loss ${first.loss}`);
  assert.ok(last.loss < first.loss - 0.5, `loss ${first.loss} → ${last.loss}`);
  const e = last as unknown as Record<string, number>;
  for (const k of ["loss_prompt", "loss_answer", "loss_mask", "loss_obs", "eval_loss", "eval_acc", "eval_acc_obs", "eval_acc_mask", "eval_nonvalue"]) {
    assert.equal(typeof e[k], "number", k);
  }
  // an MSE with no value token generated is NaN (null in the log), and only then
  for (const k of ["eval_mse", "eval_mse_mask"]) {
    if (e[k] === null) assert.equal(e["eval_nonvalue"], 1, k);
    else assert.ok(e[k]! >= 0, k);
  }
  assert.ok(e["eval_acc"]! >= 0 && e["eval_acc"]! <= 1);
  assert.equal((lines[9] as unknown as Record<string, unknown>)["eval_acc"], undefined, "eval fields only at eval steps");
  // the loss over all positions is the mean of the prompt's and the answer's halves (equal sizes)
  const h = first as unknown as Record<string, number>;
  assert.ok(Math.abs(first.loss - (h["loss_prompt"]! + h["loss_answer"]!) / 2) < 1e-9);

  const ck = loadGptCheckpoint(checkpointPath(whole, 40));
  assert.deepEqual(ck.cfg, gptConfigOf(cfg));
  assert.equal(JSON.parse(ck.meta["run_config"]!).family, "gpt");
  const summary = JSON.parse(readFileSync(join(whole, "config.json"), "utf8"));
  assert.equal(summary.family, "gpt");

  // stopped at 20 and resumed: the same losses and parameters
  const part = join(d, "part");
  const s = await train(cfg, { outDir: part, quiet: true, stopAfter: 20 });
  assert.equal(s.status, "stopped");
  await train(cfg, { outDir: part, quiet: true, resume: true });
  const again = readMetrics(join(part, "metrics.jsonl")).lines;
  assert.deepEqual(again.map((l) => l.loss), lines.map((l) => l.loss));
  assert.deepEqual(loadGptCheckpoint(checkpointPath(part, 40)).params, ck.params);
});

test("a sparse event signal: the average runs over the eval values, the time over every step", () => {
  const signal = FAMILIES["gpt"]!.events;
  const lines: MetricsLine[] = [];
  const c = 1 / 9;
  for (let s = 1; s <= 3000; s++) {
    const l = { step: s, loss: 1, loss_mask: 1, loss_obs: 1, lr: 1e-3, ms: 10 } as MetricsLine;
    // eval every 100 steps: 1.8·r/9 on the plateau, 0.05·r/9 from step 2000
    if (s % 100 === 0) (l as unknown as Record<string, number>)["eval_mse_mask"] = s < 2000 ? 1.8 * c : 0.05 * c;
    lines.push(l);
  }
  const ev = detectEvents(lines, 1, signal);
  assert.equal(ev.window, 5);
  assert.equal(ev.plateau_start, 500, "the fifth evaluation fills the window");
  // the average of the last 5 evaluations, in units of r/9, once k of them are at 0.05
  const avg = (k: number) => (k * 0.05 + (5 - k) * 1.8) / 5;
  const kDrop = [1, 2, 3, 4, 5].find((k) => avg(k) < 0.2)!;
  assert.equal(ev.drop, 2000 + 100 * (kDrop - 1));
  assert.equal(ev.plateau_end, 1900 + 100 * [1, 2, 3, 4, 5].filter((k) => avg(k) >= 0.5).length);
  assert.equal(ev.seconds, 30, "every step's time counts");
  assert.equal(ev.drop_seconds, ev.drop! * 10 / 1000);
  // the BERT's signal over the same lines: L_mask = 1 is far above its band, no plateau
  assert.equal(detectEvents(lines, 1).plateau_start, null);
  const t = new EventTracker(1, signal);
  for (const l of lines) t.pushLine(l);
  assert.deepEqual(t.result(), ev);
});

test("a GPT run in the dashboard's summary and in `abrupt report`: its family, no MSE copy levels, its own curve and story", async () => {
  const d = tmp();
  const run = join(d, "g");
  await train(resolveConfig("gpt-cpu", undefined, tiny), { outDir: run, quiet: true });
  const mc = new MetricsCache(join(run, "metrics.jsonl"));
  mc.update();
  const s = summarizeRun(d, "g", mc);
  assert.equal(s.family, "gpt");
  assert.equal(s.copyLevel, null, "a GPT's losses are cross-entropies: no MSE copy levels");
  assert.equal(s.phases!.window, 5, "phases from the GPT's event signal");
  assert.equal(s.stepsDone, 40);
  // the dashboard's rows: the losses, then the GPT's measure columns (eval greedy accuracy, MSE, non-value share at hidden cells)
  const srv = await startServer({ runsDir: d, port: 0, pollMs: 100 });
  try {
    const res = await fetch(new URL("api/runs/g/metrics", srv.url));
    const { rows } = await res.json() as { rows: Array<Array<number | null>> };
    assert.equal(rows.length, 40);
    const lines = readMetrics(join(run, "metrics.jsonl")).lines;
    const at40 = lines[39] as unknown as Record<string, number>;
    const five = (x: number | null) => (x === null ? null : Number(x.toPrecision(5)));
    assert.deepEqual(rows[39], [40, at40["loss"]!, at40["loss_mask"]!, at40["loss_obs"]!, at40["eval_loss"]!, at40["eval_acc_mask"]!, at40["eval_mse_mask"] ?? null, at40["eval_nonvalue_mask"]!].map(five));
    assert.deepEqual(rows[9]!.slice(4), [null, null, null, null], "no eval at step 10: no eval columns");
  } finally {
    await srv.close();
  }
  const out = join(d, "g.html");
  await writeReport(run, { out, seed: 0, opt: [] });
  const html = readFileSync(out, "utf8");
  assert.match(html, /GPT L2 H2 d16 ff32/);
  assert.doesNotMatch(html, /BERT L\d/);
  assert.match(html, /next-token cross-entropy/);
  assert.match(html, /greedy MSE \(eval set\)/);
  assert.match(html, /a separator, then the whole matrix, 19 tokens/);
  assert.match(html, /abrupt analyze all/);
});
