// `abrupt predict` on GPT checkpoints: the minGPT fixture's greedy
// completions come back as values (null for a non-value token), with the
// input's nesting; bad checkpoints and inputs are one line each.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { gptValueOf } from "../src/data/sequence.js";
import { getKernels } from "../src/kernels/index.js";
import { GPT_DEFAULT, Gpt } from "../src/model/gpt.js";
import { saveGptCheckpoint } from "../src/store/gpt-checkpoint.js";
import { getFloat32, readSafetensors, writeSafetensors } from "../src/store/safetensors.js";
import { BENCH_SIZES, benchInProcess, stepFlops } from "../src/train/bench.js";
import { root, runCli } from "./helpers/cli.js";

const dir = mkdtempSync(join(tmpdir(), "abrupt-gpt-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const fixture = join(root, "test", "fixtures", "gpt_tiny.safetensors");
const fx = JSON.parse(readFileSync(join(root, "test", "fixtures", "gpt_tiny.json"), "utf8")) as {
  prompts: number[];
  softmax: { completions: number[] };
  linear: { completions: number[] };
};

function writeInput(name: string, matrices: unknown): string {
  const f = join(dir, name);
  writeFileSync(f, JSON.stringify({ matrices }));
  return f;
}

function oneLineError(r: ReturnType<typeof runCli>, re: RegExp, status = 1): void {
  assert.equal(r.status, status, `exit status ${r.status}; stderr ${r.stderr}`);
  const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("Warning:") && !l.startsWith("(node"));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^abrupt: /);
  assert.match(lines[0]!, re);
}

// the fixture's prompts as matrices (MASK = null) and its completions as values
const prompts = Array.from({ length: fx.prompts.length / 10 }, (_, b) => {
  const p = fx.prompts.slice(b * 10, b * 10 + 9);
  return [0, 1, 2].map((i) => [0, 1, 2].map((j) => (p[i * 3 + j] === 0 ? null : gptValueOf(p[i * 3 + j]!))));
});
const decoded = (c: number[]) => prompts.map((_, b) => [0, 1, 2].map((i) => [0, 1, 2].map((j) => {
  const v = gptValueOf(c[b * 9 + i * 3 + j]!);
  return Number.isNaN(v) ? null : v;
})));

test("gpt predict: a minGPT checkpoint (no config: --heads 2, --attn) prints its greedy completions as values", () => {
  const input = writeInput("in.json", prompts);
  for (const attn of ["softmax", "linear"] as const) {
    const r = runCli("predict", "--checkpoint", fixture, "--input", input, "--heads", "2", "--attn", attn);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { predictions: decoded(fx[attn].completions) });
  }
});

test("gpt predict: our checkpoint (config in the metadata), null for a non-value token", () => {
  const cfg = { ...GPT_DEFAULT, d: 16, ff: 64, block: 9 };
  const model = new Gpt(cfg, getKernels("ref"));
  model.init(1);
  // an lm_head that always prefers SEP: every cell is null
  const p = model.params.slice();
  const lm = model.specs.find((s) => s.name === "lm_head.weight")!;
  const ln = model.specs.find((s) => s.name === "transformer.ln_f.bias")!;
  p.fill(0, lm.offset, lm.offset + lm.size);
  p.fill(1, ln.offset, ln.offset + ln.size);
  p.fill(1, lm.offset + 404 * cfg.d, lm.offset + 405 * cfg.d);
  const ck = join(dir, "sep.safetensors");
  saveGptCheckpoint(ck, cfg, p, { step: "1" });
  const r = runCli("predict", "--checkpoint", ck, "--input", writeInput("2x2.json", [[[0.5, null], [-1.25, 2]], [[null, null], [0, 0.01]]]));
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { predictions: [[[null, null], [null, null]], [[null, null], [null, null]]] });
  // and one whose lm_head prefers the value 0.37
  p.fill(0, lm.offset + 404 * cfg.d, lm.offset + 405 * cfg.d);
  p.fill(1, lm.offset + 238 * cfg.d, lm.offset + 239 * cfg.d);
  saveGptCheckpoint(ck, cfg, p, { step: "1" });
  const r2 = runCli("predict", "--checkpoint", ck, "--input", join(dir, "2x2.json"), "--device", "ref");
  assert.equal(r2.status, 0, r2.stderr);
  assert.deepEqual(JSON.parse(r2.stdout).predictions[1], [[0.37, 0.37], [0.37, 0.37]]);
});

test("gpt predict: bad checkpoints and inputs are one line", () => {
  const st = readSafetensors(fixture);
  const without = (drop: string, reshape?: [string, number[]]) => {
    const tensors: Array<[string, { dtype: "F32"; shape: readonly number[]; data: Float32Array }]> = [];
    for (const [name, t] of st.tensors) {
      if (name === drop || name.startsWith("grad.")) continue;
      const shape = reshape && reshape[0] === name ? reshape[1] : t.shape;
      tensors.push([name, { dtype: "F32", shape, data: getFloat32(st, name).subarray(0, shape.reduce((a, b) => a * b, 1)) }]);
    }
    const f = join(dir, `bad-${drop || "shape"}.safetensors`);
    writeSafetensors(f, tensors, { format: "pt" });
    return f;
  };
  const input = writeInput("ok.json", prompts.slice(0, 1));
  oneLineError(runCli("predict", "--checkpoint", without("transformer.h.1.ln_2.weight"), "--input", input, "--heads", "2"), /missing tensor "transformer\.h\.1\.ln_2\.weight" \(expected shape \[32\]\)/);
  oneLineError(runCli("predict", "--checkpoint", without("", ["transformer.wpe.weight", [17, 32]]), "--input", input, "--heads", "2"), /a 3×3 matrix needs 18 positions \(the prompt of 10 tokens, then 9 generated\), more than the model.s block size 17/);
  oneLineError(runCli("predict", "--checkpoint", without("", ["transformer.h.0.mlp.c_proj.weight", [32, 64]]), "--input", input, "--heads", "2"), /tensor "transformer\.h\.0\.mlp\.c_proj\.weight": expected shape \[32,128\], found \[32,64\]/);
  // 4×4 matrices: the prompt (17) fits the block (19), the 16 generated do not; 5×5: the prompt does not fit either
  oneLineError(runCli("predict", "--checkpoint", fixture, "--input", writeInput("4x4.json", [Array.from({ length: 4 }, () => [0, 0, null, 0])]), "--heads", "2"), /a 4×4 matrix needs 32 positions \(the prompt of 17 tokens, then 16 generated\), more than the model's block size 19/);
  oneLineError(runCli("predict", "--checkpoint", fixture, "--input", writeInput("5x5.json", [Array.from({ length: 5 }, () => [0, 0, null, 0, 0])]), "--heads", "2"), /the prompt of a 5×5 matrix \(\[masked X, SEP\], 26 tokens\) is longer than the model's block size 19/);
  const wide = writeInput("wide.json", [[[2.5, null, 0], [0, 0, 0], [0, 0, -0.5]]]);
  oneLineError(runCli("predict", "--checkpoint", fixture, "--input", wide, "--heads", "2"), /value 2\.5 is outside the GPT vocabulary's range \[-2, 2\] \(use --clamp to clamp\)/);
  const clamped = runCli("predict", "--checkpoint", fixture, "--input", wide, "--heads", "2", "--clamp");
  assert.equal(clamped.status, 0, clamped.stderr);
  oneLineError(runCli("predict", "--checkpoint", fixture, "--input", input, "--heads", "3"), /heads 3 does not divide d=32/);
  oneLineError(runCli("predict", "--checkpoint", fixture, "--input", input, "--attn", "cosine"), /attention must be softmax or linear/, 2); // a usage error
  oneLineError(runCli("predict", "--checkpoint", join(root, "test", "fixtures", "bert_tiny.safetensors"), "--input", input, "--attn", "linear"), /--attn is for GPT checkpoints/);
});

test("bench: the GPT size G is SPEC's GPT step; a small GPT size runs in process", async () => {
  assert.deepEqual(BENCH_SIZES["G"], { L: 2, H: 2, d: 256, ff: 1024, B: 256, m: 7, n: 7, gpt: true });
  // 3× the forward products: 2 layers on 256·98 positions, the 405-way head
  const N = 256 * 98;
  assert.equal(stepFlops(BENCH_SIZES["G"]!), 3 * (2 * (2 * N * (4 * 256 * 256 + 2 * 256 * 1024) + 4 * 256 * 98 * 98 * 256) + 2 * N * 256 * 405));
  BENCH_SIZES["g-test"] = { L: 1, H: 2, d: 16, ff: 64, B: 4, m: 3, n: 3, gpt: true };
  try {
    const r = await benchInProcess("g-test", "cpu", 2, 1);
    assert.equal(r.msAll.length, 2);
    assert.ok(r.msPerStep > 0);
  } finally {
    delete BENCH_SIZES["g-test"];
  }
});
