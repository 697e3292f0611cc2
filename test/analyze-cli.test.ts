// `abrupt analyze` end to end on a tiny trained run: every experiment runs,
// writes JSON with step and seed, figures and report.md; results are
// deterministic; bad input gives one clear line.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./helpers/cli.js";

const run = runCli;
const top = mkdtempSync(join(tmpdir(), "abrupt-analyze-"));
const dir = join(top, "run");
after(() => rmSync(top, { recursive: true, force: true }));
const small = ["--opt", "batch=16", "--opt", "matrices=16", "--opt", "train=96", "--opt", "test=32", "--opt", "pMasks=0.2,0.4",
  "--opt", "permutations=2", "--opt", "tsneIterations=50"];

test("setup: a tiny run with checkpoints", () => {
  const r = run("train", "--m", "4", "--n", "4", "--rank", "1", "--layers", "2", "--heads", "2", "--width", "16", "--ff", "32",
    "--positions", "20", "--batch", "16", "--steps", "30", "--ckpt-every", "10", "--ckpt-log", "0", "--eval-every", "0", "--out", dir, "--quiet");
  assert.equal(r.status, 0, r.stderr);
});

test("analyze all writes every experiment and report.md", () => {
  const r = run("analyze", "all", dir, "--step", "30", "--seed", "5", ...small);
  assert.equal(r.status, 0, r.stderr);
  const report = readFileSync(join(dir, "report.md"), "utf8");
  for (const e of ["phases", "copy", "nnm", "attention", "probe", "embeddings", "patch", "ablate", "swap", "component", "ood", "progress"]) {
    assert.match(report, new RegExp(`## ${e}`), `report lacks ${e}`);
  }
  for (const e of ["copy", "nnm", "attention", "probe", "embeddings", "patch", "ablate", "ood"]) {
    const j = JSON.parse(readFileSync(join(dir, "analysis", `${e}-step-30.json`), "utf8"));
    assert.equal(j.step, 30);
    assert.equal(j.seed, 5);
    assert.ok(Array.isArray(j.findings) && j.findings.length > 0);
  }
  assert.ok(existsSync(join(dir, "analysis", "attention-step-30-scores.png")));
  assert.match(report, /component[\s\S]*not run: this run was not made with --init-from/);
});

test("an analysis is deterministic given --seed", () => {
  const a = run("analyze", "copy", dir, "--step", "20", "--seed", "3", "--opt", "batch=16", "--out", join(dir, "a1"));
  const b = run("analyze", "copy", dir, "--step", "20", "--seed", "3", "--opt", "batch=16", "--out", join(dir, "a2"));
  assert.equal(a.status, 0, a.stderr);
  assert.equal(b.status, 0, b.stderr);
  assert.equal(readFileSync(join(dir, "a1", "copy.json"), "utf8"), readFileSync(join(dir, "a2", "copy.json"), "utf8"));
});

test("copy --step all: one result per checkpoint and copy-over-training with every step", () => {
  const r = run("analyze", "copy", dir, "--step", "all", "--seed", "3", "--opt", "batch=16", "--out", join(dir, "all"));
  assert.equal(r.status, 0, r.stderr);
  const over = JSON.parse(readFileSync(join(dir, "all", "copy-over-training.json"), "utf8"));
  const steps = over.rows.map((x: { step: number }) => x.step);
  assert.deepEqual(steps, [10, 20, 30]);
  // each row is the per-step JSON's numbers
  for (const row of over.rows) {
    const one = JSON.parse(readFileSync(join(dir, "all", `copy-step-${row.step}.json`), "utf8"));
    assert.equal(row.slope, one.slope);
    assert.equal(row.replaceMse["0.44"], one.replaced[0].replaceMse);
  }
  assert.ok(existsSync(join(dir, "all", "copy-over-training-curve.png")));
  assert.match(r.stdout + r.stderr, /copy over training:/);
});

test("analyze on a lone checkpoint file", () => {
  const r = run("analyze", "attention", "--checkpoint", join(dir, "checkpoints", "step-0000030.safetensors"), "--m", "4", "--n", "4", "--rank", "1", "--opt", "batch=8", "--out", join(dir, "lone"));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(readFileSync(join(dir, "lone", "attention.json"), "utf8")).step, -1);
});

test("bad input: one line, non-zero exit", () => {
  const bad = (args: string[], re: RegExp) => {
    const r = run(...args);
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, re);
  };
  bad(["analyze", "nope", dir], /unknown experiment "nope"/);
  bad(["analyze", "copy", join(dir, "missing")], /does not exist/);
  bad(["analyze", "copy", dir, "--step", "7"], /checkpoint step 7 does not exist/);
  bad(["analyze", "copy", "--checkpoint", join(dir, "none.safetensors")], /does not exist/);
  bad(["analyze", "copy", dir, "--step", "30", "--m", "5", "--n", "5"], /too few for 5×5/);
  bad(["analyze", "patch", dir, "--step", "30", "--opt", "hooks=blocks.9.attn.out"], /blocks\.9\.attn\.out/);
  bad(["analyze", "copy", dir, "--step", "30", "--opt", "colour=3"], /unknown option "colour"/);
  bad(["analyze", "copy", dir, "--step", "30", "--opt", "batch=many"], /batch must be a number/);
});
