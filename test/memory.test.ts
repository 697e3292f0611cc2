// The memory estimate (src/model/memory.ts) against what the model really
// allocates, and sizes that cannot fit: train, analyze and bench refuse them
// with one line saying how much they would take, before allocating or
// writing anything.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import { checkMemory, formatBytes, inferenceBytes, paramFloats, trainingBytes } from "../src/model/memory.js";
import { type ModelConfig, paramCount } from "../src/model/params.js";
import { AbruptError } from "../src/errors.js";
import { runCli, oneLine } from "./helpers/cli.js";

const top = mkdtempSync(join(tmpdir(), "abrupt-memory-"));
after(() => rmSync(top, { recursive: true, force: true }));


test("the estimate covers what a training step allocates, and not many times more", () => {
  const cfg: ModelConfig = { vocab: 2002, positions: 20, L: 2, H: 2, d: 16, ff: 48, lnEps: 1e-12 };
  assert.equal(paramFloats(cfg), paramCount(cfg));
  let floats = 0;
  const k = { ...refKernels, alloc: (n: number) => { floats += n; return refKernels.alloc(n); } };
  const B = 6, T = 20, evalB = 10;
  const model = new Bert(cfg, k);
  model.init(1);
  k.alloc(paramCount(cfg)); k.alloc(paramCount(cfg)); // Adam m, v
  const tokens = new Int32Array(B * T).fill(5);
  const out = model.forward(tokens, B, T);
  model.backward(out);
  model.forward(new Int32Array(evalB * T).fill(5), evalB, T);
  const need = trainingBytes(cfg, B, T, evalB, false);
  assert.ok(need.host >= 4 * floats, `estimate ${need.host} < allocated ${4 * floats}`);
  assert.ok(need.host <= 3 * 4 * floats, `estimate ${need.host} ≫ allocated ${4 * floats}`);
  const inf = inferenceBytes(cfg, T, { samples: 1000, chunk: 64 }, false);
  assert.ok(inf.host > inferenceBytes(cfg, T, { samples: 10, chunk: 64 }, false).host);
  assert.throws(() => checkMemory(trainingBytes(cfg, 1e9, T, 0, false), "batch 1e9"), (e: unknown) => e instanceof AbruptError && /^batch 1e9 needs about \d.* (GB|TB|PB)/.test(e.message));
  checkMemory(need, "a tiny model");
  assert.equal(formatBytes(1.5e9), "1.50 GB");
});

test("train: huge sizes are refused at once with how much they would take; nothing is written", () => {
  const out = join(top, "never");
  const cases: Array<[string[], RegExp]> = [
    [["--batch", "100000000"], /batch 100000000 .* needs about [\d.]+ (GB|TB|PB) of memory/],
    [["--eval-batch", "100000000"], /eval batch 100000000\).* needs about/],
    [["--width", "1000000000", "--heads", "1"], /d1000000000 .* needs about .* one buffer of/],
    [["--ff", "1000000000"], /ff1000000000 .* needs about/],
    [["--layers", "1000000000"], /BERT L1000000000 .* needs about/],
    [["--positions", "1000000000"], /positions 1000000000 needs about/],
    [["--m", "2000", "--n", "2000", "--rank", "1", "--positions", "4000000"], /of 2000×2000 matrices .* needs about/],
  ];
  for (const [flags, re] of cases) oneLine(runCli("train", ...flags, "--out", out), re);
  assert.equal(existsSync(out), false);
});

test("analyze and bench: counts that cannot fit are refused with one line", () => {
  const dir = join(top, "run");
  const r = runCli("train", "--layers", "1", "--heads", "2", "--width", "16", "--ff", "32", "--positions", "16", "--m", "4", "--n", "4", "--rank", "1",
    "--batch", "8", "--eval-batch", "8", "--steps", "2", "--ckpt-log", "0", "--out", dir, "--quiet");
  assert.equal(r.status, 0, r.stderr);
  oneLine(runCli("analyze", "copy", dir, "--step", "2", "--opt", "batch=1000000000000"), /copy: option batch must be an integer in 1\.\.\d+ \(got 1000000000000\)/);
  oneLine(runCli("analyze", "probe", dir, "--step", "2", "--opt", "train=16000000", "--opt", "batch=16000000"), /probe on 16000\d+ 4×4 matrices .* needs about .* of memory/);
  oneLine(runCli("analyze", "nnm", dir, "--step", "2", "--opt", "matrices=-3"), /nnm: option matrices must be an integer/);
  oneLine(runCli("analyze", "embeddings", dir, "--step", "2", "--opt", "tsneIterations=1e12"), /embeddings: option tsneIterations must be an integer in 1\.\.1000000/);
  oneLine(runCli("bench", "--steps", "0"), /--steps must be at least 1 \(got 0\)/);
  oneLine(runCli("bench", "--sizes", "XL"), /unknown bench size "XL"/);
  assert.equal(existsSync(join(dir, "analysis", "copy.json")), false);
});
