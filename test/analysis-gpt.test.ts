// The analyses on GPT runs: hand-built attention patterns (through the
// pattern hook) give known row/column scores and attention progress; a
// planted linear signal in the residual stream is recovered by the probe and
// absent at the embeddings; zeroing a head with zero projection columns
// changes nothing while every other head changes the answer cross-entropy,
// which matches the model's own loss; patching the embeddings of the prompt
// from X makes the run on −X generate X's completion exactly; and the CLI
// runs what applies on a real (tiny) GPT run and refuses the rest in one line.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type DataConfig, sampleBatch } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { GPT_VOCAB, sampleGptBatch } from "../src/data/sequence.js";
import { refKernels } from "../src/kernels/ref.js";
import { Gpt, type GptConfig } from "../src/model/gpt.js";
import type { HookFn } from "../src/model/hooks.js";
import { train } from "../src/train/train.js";
import { resolveConfig } from "../src/train/config.js";
import { gptLossMetrics } from "../src/train/gpt-metrics.js";
import type { AnalysisContext } from "../src/analysis/context.js";
import { ABLATE_DEFAULTS, type AblatedLosses, ablate } from "../src/analysis/ablate.js";
import { gptAttentionScores } from "../src/analysis/gpt-attention.js";
import { PATCH_DEFAULTS, type PatchRun } from "../src/analysis/patch.js";
import { gptPatch } from "../src/analysis/patch.js";
import { gptProbeLayers, gptReader, probeReaders } from "../src/analysis/probe.js";
import { gptProgressAt } from "../src/analysis/progress.js";
import { oneLine, runCli } from "./helpers/cli.js";

const data: DataConfig = { m: 3, n: 3, rank: 1, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };
const cells = 9, T = 18;
const cfg: GptConfig = { vocab: GPT_VOCAB, block: 19, L: 1, H: 2, d: 8, ff: 16, lnEps: 1e-5, attn: "softmax" };
const SEED = 5;

function gpt(seed = 1, std = 0.3): Gpt {
  const m = new Gpt(cfg, refKernels);
  m.init(seed, std);
  return m;
}

const ctxOf = (model: Gpt): AnalysisContext => ({
  source: { kind: "checkpoint", file: "none" }, data, kernels: refKernels, seed: SEED, outDir: "/tmp", step: -1,
  model: () => { throw new Error("not a BERT"); }, family: "gpt", gpt: () => model,
});

/**
 * A pattern hook: head 0 of the position generating cell (i, j) attends
 * uniformly to the observed prompt cells of row i and column j (to itself
 * when there are none), head 1 only to SEP; prompt positions attend to
 * themselves. `hidden` gives each forward's samples' masks in turn.
 */
function rowColPattern(hiddenOf: (b: number) => Uint8Array): HookFn {
  return (att, info) => {
    const nb = info.shape[0]!;
    att.fill(0);
    for (let b = 0; b < nb; b++) {
      const hid = hiddenOf(b);
      for (let q = 0; q < T; q++) {
        const r0 = (b * 2 + 0) * T * T + q * T, r1 = (b * 2 + 1) * T * T + q * T;
        if (q < cells) { att[r0 + q] = 1; att[r1 + q] = 1; continue; }
        att[r1 + cells] = 1;
        const c = q - cells, i = Math.floor(c / 3), j = c % 3;
        const ks: number[] = [];
        for (let jj = 0; jj < 3; jj++) if (jj !== j && !hid[i * 3 + jj]) ks.push(i * 3 + jj);
        for (let ii = 0; ii < 3; ii++) if (ii !== i && !hid[ii * 3 + j]) ks.push(ii * 3 + j);
        if (ks.length === 0) att[r0 + q] = 1;
        for (const k of ks) att[r0 + k] = 1 / ks.length;
      }
    }
  };
}

test("gpt attention: a hand-built row/column head scores 1 on the observed cells of the generated cell's row and column (0 where it has none), a SEP head 0", async () => {
  const model = gpt();
  const batch = sampleGptBatch(new Rng(SEED), data, 40);
  let b0 = 0; // forwardBatch runs the 40 samples in one chunk
  model.addHook("blocks.0.attn.pattern", rowColPattern((b) => batch.hidden.subarray((b0 + b) * cells, (b0 + b + 1) * cells)));
  const c = await gptAttentionScores(model, batch, "random", null, [1, 1]);
  // the expected hidden obsRowCol of head 0: the share of hidden cells with an observed cell in their row or column
  let nh = 0, withKeys = 0, uni = 0;
  for (let b = 0; b < 40; b++) {
    for (let k = 0; k < cells; k++) {
      if (!batch.hidden[b * cells + k]) continue;
      nh++;
      const i = Math.floor(k / 3), j = k % 3;
      let n = 0;
      for (let x = 0; x < 3; x++) {
        if (x !== j && !batch.hidden[b * cells + i * 3 + x]) n++;
        if (x !== i && !batch.hidden[b * cells + x * 3 + j]) n++;
      }
      if (n > 0) withKeys++;
      uni += n / (cells + k + 1);
    }
  }
  assert.ok(nh > 20 && withKeys < nh + 1);
  const [h0, h1] = c.heads;
  assert.ok(Math.abs(h0!.hidden!.obsRowCol - withKeys / nh) < 1e-5, `${h0!.hidden!.obsRowCol} vs ${withKeys / nh}`);
  assert.ok(Math.abs(h0!.hidden!.uniform - uni / nh) < 1e-9);
  assert.equal(h0!.label, "row+col observed");
  assert.ok(Math.abs(h1!.all.sep - 1) < 1e-6 && h1!.all.obsRowCol === 0 && h1!.all.answer === 0);
  assert.ok(Math.abs(h1!.all.prompt) < 1e-9 && h1!.all.entropy === 0);
  assert.equal(c.meanPattern[0]![1]![(cells + 3) * T + cells], 1); // head 1, a generating position, on SEP
});

test("gpt progress: the attention progress of the row/column head is 1, of the SEP head 0; losses are the answer cross-entropies", async () => {
  const model = gpt();
  const batch = sampleGptBatch(new Rng(SEED + 1), data, 24);
  let b0 = 0;
  model.addHook("blocks.0.attn.pattern", rowColPattern((b) => batch.hidden.subarray((b0 + b) * cells, (b0 + b + 1) * cells)));
  const runs: number[] = [];
  const run0 = model.run.bind(model);
  model.run = async (tok, B, TT) => { b0 = runs.length * 8; runs.push(B); return run0(tok, B, TT); };
  const p = await gptProgressAt(model, batch, 8);
  assert.deepEqual(runs, [8, 8, 8]);
  assert.ok(Math.abs(p.attnByHead[0]![0]! - 1) < 1e-6, String(p.attnByHead[0]![0]));
  assert.equal(p.attnByHead[0]![1], 0);
  assert.ok(p.attnUniform > 0 && p.attnUniform < 0.5);
  model.clearHooks();
  const plain = gpt();
  plain.forward(batch.inputs, 24, T);
  const lm = gptLossMetrics(plain.loss(batch.targets, false).rowLoss as Float32Array, batch);
  const q = await gptProgressAt(plain, batch, 7);
  assert.ok(Math.abs(q.loss - lm.loss_answer) < 1e-4 * lm.loss_answer, `${q.loss} vs ${lm.loss_answer}`);
  assert.ok(Math.abs(q.loss_mask - lm.loss_mask) < 1e-4 * lm.loss_mask);
  assert.ok(q.collapse > -1 && q.collapse <= 1 && q.repetition >= 0 && q.repetition <= 1);
});

test("gpt probe: a value planted in the last residual stream at the generating positions is recovered (R² ≈ 1); the embeddings do not hold it", async () => {
  const model = gpt(2, 0.02);
  // the probe draws its batches from Rng(SEED) in order (train, then test, 32 at a time): replay them
  const replay = new Rng(SEED);
  model.addHook("ln_f.out", (act, info) => {
    const nb = info.shape[0]!;
    const b = sampleBatch(replay, data, nb);
    for (let s = 0; s < nb; s++) for (let k = 0; k < cells; k++) act[(s * T + cells + k) * cfg.d] = 3 * b.targets[s * cells + k]!;
  });
  const rs = await probeReaders([gptReader("trained", model, false)], data, refKernels, new Rng(SEED), { train: 128, test: 64, batch: 32, ridge: 1e-6 });
  const layers = gptProbeLayers(model);
  assert.deepEqual(layers, ["embed.out", "blocks.0.resid_post", "ln_f.out"]);
  const r2 = (layer: number, group: string) => rs.find((r) => r.layer === layer && r.group === group && r.target === "value")!.r2;
  for (const g of ["hidden", "observed"]) {
    assert.ok(r2(2, g) > 0.999, `${g} ln_f R² ${r2(2, g)}`);
    assert.ok(r2(0, g) < 0.5, `${g} embed R² ${r2(0, g)}`);
  }
});

test("gpt ablate: a head with zero projection columns changes nothing; zeroing the other changes the answer cross-entropy, which matches the model's loss", async () => {
  const model = gpt(3, 0.3);
  const w = await model.getParam("transformer.h.0.attn.c_proj.weight"); // [C out, C in]
  for (let o = 0; o < cfg.d; o++) w.fill(0, o * cfg.d + 4, o * cfg.d + 8); // head 1's columns
  model.setParam("transformer.h.0.attn.c_proj.weight", w);
  const out = await ablate(ctxOf(model), { ...ABLATE_DEFAULTS, batch: 48 });
  const json = out.json as unknown as { family: string; clean: { loss: number; loss_mask: number }; heads: Array<{ head: number; zero: AblatedLosses; mean: AblatedLosses }> };
  assert.equal(json.family, "gpt");
  for (const mode of ["zero", "mean"] as const) {
    assert.equal(json.heads[1]![mode].dLoss, 0);
    assert.ok(Math.abs(json.heads[0]![mode].dLoss) > 1e-4, `${mode} ${json.heads[0]![mode].dLoss}`);
  }
  const batch = sampleGptBatch(new Rng(SEED), data, 48);
  model.forward(batch.inputs, 48, T);
  const lm = gptLossMetrics(model.loss(batch.targets, false).rowLoss as Float32Array, batch);
  assert.ok(Math.abs(json.clean.loss - lm.loss_answer) < 1e-4 * lm.loss_answer, `${json.clean.loss} vs ${lm.loss_answer}`);
  assert.ok(Math.abs(json.clean.loss_mask - lm.loss_mask) < 1e-4 * lm.loss_mask);
});

test("gpt patch: the run on −X with the prompt's embeddings from X generates exactly X's completion; other layers differ from −X's run", async () => {
  const model = gpt(4, 0.3);
  const out = await gptPatch(ctxOf(model), { ...PATCH_DEFAULTS, batch: 16, hooks: ["embed.out", "blocks.0.attn.out"] });
  const json = out.json as unknown as { baselines: { x: PatchRun; negX: PatchRun }; patched: Array<{ hook: string } & PatchRun> };
  assert.deepEqual(json.patched[0]!.toX, json.baselines.x.toX);
  assert.notDeepEqual(json.baselines.x.toX, json.baselines.negX.toX);
  await assert.rejects(gptPatch(ctxOf(model), { ...PATCH_DEFAULTS, batch: 4, hooks: ["blocks.0.attn.pattern"] }), /not per-position hook/);
});

// ------------------------------------------------------------ a real run

const dir = mkdtempSync(join(tmpdir(), "abrupt-analysis-gpt-"));
const runDir = join(dir, "run");
after(() => rmSync(dir, { recursive: true, force: true }));
before(async () => {
  const c = resolveConfig("gpt-cpu", undefined, {
    model: { d: 16, ff: 32 },
    train: { steps: 40, batch: 16, warmup: 0, lr_decay: "none", eval_every: 10, eval_batch: 32, ckpt_every: 20 },
  });
  await train(c, { outDir: runDir, quiet: true });
});

test("analyze on a GPT run: an unsupported experiment is refused in one line", () => {
  oneLine(runCli("analyze", "nnm", runDir), /nnm does not apply to GPT runs: .*nuclear-norm/);
  oneLine(runCli("analyze", "embeddings", runDir), /embeddings does not apply to GPT runs/);
});

test("analyze all on a GPT run: the GPT analyses run, the others are listed as skipped with their reason", () => {
  const r = runCli("analyze", "all", runDir, "--opt", "batch=16", "--opt", "matrices=16", "--opt", "train=64", "--opt", "test=32");
  assert.equal(r.status, 0, r.stderr);
  const report = readFileSync(join(runDir, "report.md"), "utf8");
  assert.match(report, /GPT L2 H2 d16 ff32/);
  for (const e of ["nnm", "copy", "embeddings", "swap", "component", "ood"]) {
    assert.match(report, new RegExp(`not run: ${e} does not apply to GPT runs: `));
    assert.match(r.stderr, new RegExp(`not run: ${e} does not apply to GPT runs: `));
  }
  const a = join(runDir, "analysis");
  const phases = JSON.parse(readFileSync(join(a, "phases.json"), "utf8")) as { family: string; signal: { field: string } };
  assert.equal(phases.family, "gpt");
  assert.equal(phases.signal.field, "eval_mse_mask");
  for (const e of ["attention", "probe", "patch", "ablate"]) {
    const f = join(a, `${e}-step-40.json`);
    assert.ok(existsSync(f), `${f} (stderr ${r.stderr})`);
    assert.equal((JSON.parse(readFileSync(f, "utf8")) as { family: string }).family, "gpt");
  }
  const prog = JSON.parse(readFileSync(join(a, "progress.json"), "utf8")) as { family: string; steps: Array<{ step: number; attnProgress: number }> };
  assert.equal(prog.family, "gpt");
  // its lines name the loss they print: the teacher-forced answer cross-entropy, not the training L
  assert.match(report, /repetition [^,]+, answer CE \d[^ ]* \(at hidden cells \d/);
  assert.doesNotMatch(report, /repetition [^,]+, L \d/);
  assert.ok(prog.steps.length >= 2 && prog.steps.every((s) => s.attnProgress > 0 && s.attnProgress < 1));
  assert.ok(existsSync(join(a, "attention-step-40-scores.svg")) && existsSync(join(a, "attention-step-40-scores.png")));
});
