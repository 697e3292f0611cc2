// The command line as a user runs it: train writes a run folder, predict
// completes matrices, and every bad input gives one error line, exit ≠ 0 and
// no partial files.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bin, root, runCli } from "./helpers/cli.js";

const run = runCli;
const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), "abrupt-cli-")); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });

function oneLineError(r: ReturnType<typeof run>, pattern: RegExp) {
  assert.notEqual(r.status, 0, `expected failure, got exit 0 (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.match(lines[0]!, pattern);
}

const small = ["--layers", "1", "--heads", "2", "--width", "16", "--ff", "32", "--batch", "8", "--eval-batch", "8", "--m", "4", "--n", "4", "--rank", "1", "--quiet"];

test("train --preset S --steps 3 --seed 1 --out DIR writes config, metrics, checkpoint, figure", () => {
  const dir = join(tmp(), "run");
  const r = run("train", "--preset", "S", "--steps", "3", "--seed", "1", "--out", dir, "--eval-every", "2", "--quiet");
  assert.equal(r.status, 0, r.stderr);
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  assert.deepEqual([cfg.data.m, cfg.data.n, cfg.data.rank, cfg.data.p_mask, cfg.model.d, cfg.train.seed], [7, 7, 2, 0.3, 128, 1]);
  const lines = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.step), [1, 2, 3]);
  for (const l of lines) for (const k of ["step", "loss", "loss_mask", "loss_obs", "ms"]) assert.equal(typeof l[k], "number");
  assert.ok(existsSync(join(dir, "checkpoints", "step-0000003.safetensors")));
  assert.match(readFileSync(join(dir, "loss.svg"), "utf8"), /<svg/);
  assert.deepEqual([...readFileSync(join(dir, "loss.png")).subarray(1, 4)].map((c) => String.fromCharCode(c)).join(""), "PNG");
});

test("config file (YAML) with flag overrides; --resume extends a run", () => {
  const d = tmp();
  const yml = join(d, "c.yaml");
  writeFileSync(yml, "data:\n  m: 4\n  n: 4\n  rank: 1\nmodel:\n  L: 1\n  H: 2\n  d: 16\n  ff: 32\ntrain:\n  batch: 8\n  eval_batch: 8\n  steps: 4\n");
  const dir = join(d, "run");
  let r = run("train", "--config", yml, "--steps", "3", "--out", dir, "--quiet");
  assert.equal(r.status, 0, r.stderr);
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  assert.deepEqual([cfg.data.m, cfg.model.d, cfg.train.steps], [4, 16, 3]);
  r = run("train", "--resume", "--out", dir, "--steps", "5", "--quiet");
  assert.equal(r.status, 0, r.stderr);
  const steps = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).step).filter((s) => s !== undefined);
  assert.deepEqual(steps, [1, 2, 3, 4, 5]);
});

test("predict prints every cell with the input's nesting", () => {
  const dir = join(tmp(), "run");
  assert.equal(run("train", ...small, "--steps", "2", "--out", dir).status, 0);
  const input = join(dir, "in.json");
  writeFileSync(input, JSON.stringify({ matrices: [[[0.1, null, 0.3, 0.4], [0.5, 0.6, null, 0.8], [null, 0, 0, 0], [1, 1, 1, null]], [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, null]]] }));
  const r = run("predict", "--checkpoint", join(dir, "checkpoints", "step-0000002.safetensors"), "--input", input);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.predictions.length, 2);
  for (const M of out.predictions) {
    assert.equal(M.length, 4);
    for (const row of M) {
      assert.equal(row.length, 4);
      for (const v of row) assert.ok(Number.isFinite(v));
    }
  }
});

test("bad input: one clear line, non-zero exit, nothing written", () => {
  const d = tmp();
  const out = join(d, "never");
  oneLineError(run("train", "--preset", "nope", "--out", out), /unknown preset "nope"/);
  oneLineError(run("train", "--rank", "9", "--out", out), /rank \(9\) must be at most min\(m, n\)/);
  oneLineError(run("train", "--p-mask", "1.2", "--out", out), /p_mask must be in \[0, 1\)/);
  oneLineError(run("train", "--heads", "5", "--out", out), /must divide model.d/);
  oneLineError(run("train", "--steps", "abc", "--out", out), /--steps must be a number/);
  oneLineError(run("train", "--bogus"), /unknown option '--bogus'/);
  const bad = join(d, "bad.json");
  writeFileSync(bad, '{"data": {"m": 7, "colour": 3}}');
  oneLineError(run("train", "--config", bad, "--out", out), /config file .*bad.json: data: Unrecognized key.*colour/);
  writeFileSync(bad, "{not json");
  oneLineError(run("train", "--config", bad, "--out", out), /is not valid JSON/);
  assert.equal(existsSync(out), false);
  oneLineError(run("train", "--resume", "--out", out), /cannot resume/);
  // predict
  oneLineError(run("predict", "--checkpoint", join(d, "missing.safetensors"), "--input", bad), /cannot read input|missing.safetensors/);
  const input = join(d, "in.json");
  writeFileSync(input, JSON.stringify({ matrix: [[1]] }));
  oneLineError(run("predict", "--checkpoint", join(d, "missing.safetensors"), "--input", input), /expected \{"matrices"/);
  writeFileSync(input, JSON.stringify({ matrices: [[[0.5, "x"]]] }));
  oneLineError(run("predict", "--checkpoint", join(d, "missing.safetensors"), "--input", input), /expected \{"matrices"/);
  writeFileSync(input, JSON.stringify({ matrices: [[[0.5, null]]] }));
  oneLineError(run("predict", "--checkpoint", join(d, "missing.safetensors"), "--input", input), /missing.safetensors/);
  const notCk = join(d, "not.safetensors");
  writeFileSync(notCk, "hello");
  oneLineError(run("predict", "--checkpoint", notCk, "--input", input), /not\.safetensors/);
  writeFileSync(input, JSON.stringify({ matrices: [[[12, null]]] }));
  const dir = join(d, "run");
  assert.equal(run("train", ...small, "--steps", "1", "--out", dir).status, 0);
  oneLineError(run("predict", "--checkpoint", join(dir, "checkpoints", "step-0000001.safetensors"), "--input", input), /outside the vocabulary range/);
  assert.deepEqual(readdirSync(d).sort(), ["bad.json", "in.json", "not.safetensors", "run"]);
});

test("Ctrl-C saves a checkpoint with its Adam state and the run resumes from it", async () => {
  const dir = join(tmp(), "run");
  const { spawn } = await import("node:child_process");
  const child = spawn(process.execPath, [bin, "train", ...small, "--steps", "100000", "--ckpt-every", "0", "--ckpt-log", "0", "--out", dir], { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  // wait until some steps are on disk, then interrupt
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    if (existsSync(join(dir, "metrics.jsonl")) && readFileSync(join(dir, "metrics.jsonl"), "utf8").split("\n").length > 20) break;
  }
  child.kill("SIGINT");
  const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  assert.equal(code, 130, stderr);
  const status = JSON.parse(readFileSync(join(dir, "status.json"), "utf8"));
  assert.equal(status.status, "interrupted");
  const name = `step-${String(status.step).padStart(7, "0")}`;
  assert.ok(existsSync(join(dir, "checkpoints", `${name}.safetensors`)));
  assert.ok(existsSync(join(dir, "checkpoints", `${name}.adam.safetensors`)));
  const r = run("train", "--resume", "--out", dir, "--steps", String(status.step + 3), "--quiet");
  assert.equal(r.status, 0, r.stderr);
  const steps = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).step).filter((s) => s !== undefined);
  assert.equal(steps.at(-1), status.step + 3);
});
