// The command line's smaller promises: commander's own errors read
// `abrupt: ...`, help and --version exit 0, analyze has the --clamp its hint
// names and refuses a negative seed, predict refuses a diverged checkpoint and
// warns about inputs of another size, bench names a bad backend and prints
// sane numbers, and a run without hidden cells ends with its summary.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadCheckpoint, saveCheckpoint } from "../src/store/checkpoint.js";
import { root, runCli, oneLine } from "./helpers/cli.js";

const top = mkdtempSync(join(tmpdir(), "abrupt-misc-"));
after(() => rmSync(top, { recursive: true, force: true }));
const dir = join(top, "run");
const ckpt = join(dir, "checkpoints", "step-0000004.safetensors");
const small = ["--layers", "1", "--heads", "2", "--width", "16", "--ff", "32", "--positions", "16", "--batch", "8", "--eval-batch", "8", "--m", "4", "--n", "4", "--rank", "1", "--quiet"];


before(() => {
  const r = runCli("train", ...small, "--steps", "4", "--ckpt-every", "2", "--ckpt-log", "0", "--out", dir);
  assert.equal(r.status, 0, r.stderr);
});

test("commander's errors read `abrupt: ...`; help and --version exit 0", () => {
  oneLine(runCli("bogus"), /^abrupt: unknown command 'bogus'$/);
  oneLine(runCli("train", "--bogus"), /^abrupt: unknown option '--bogus'$/);
  oneLine(runCli("train", "--steps", "x"), /^abrupt: .*--steps must be a number/);
  oneLine(runCli("predict", "--input", "x.json"), /^abrupt: required option '--checkpoint <file>' not specified$/);
  const h = runCli("help", "train");
  assert.equal(h.status, 0, h.stderr);
  assert.match(h.stdout, /--steps <n>/);
  assert.equal(runCli("train", "--help").status, 0);
  const v = runCli("--version");
  assert.equal(v.status, 0, v.stderr);
  assert.equal(v.stdout.trim(), (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }).version);
});

test("analyze: the --clamp its hint names exists; a negative seed is refused like train's", () => {
  oneLine(runCli("analyze", "copy", dir, "--step", "4", "--opt", "batch=8", "--opt", "values=12"), /value 12 is outside the vocabulary range .*use --clamp/);
  const r = runCli("analyze", "copy", dir, "--step", "4", "--opt", "batch=8", "--opt", "values=12", "--clamp", "--out", join(top, "clamped"));
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual((JSON.parse(readFileSync(join(top, "clamped", "copy.json"), "utf8")) as { values: number[] }).values, [10]);
  oneLine(runCli("analyze", "copy", dir, "--seed", "-1"), /--seed must be a non-negative integer \(got -1\)/);
  oneLine(runCli("report", dir, "--seed", "-1"), /--seed must be a non-negative integer \(got -1\)/);
  oneLine(runCli("train", ...small, "--seed", "-1", "--out", join(top, "never")), /train\.seed/);
});

test("predict: NaN weights are refused with one line; inputs of another size get a warning", () => {
  const ck = loadCheckpoint(ckpt);
  const params = ck.params.slice();
  params[ck.params.length - 5] = NaN;
  const nan = join(top, "nan.safetensors");
  saveCheckpoint(nan, ck.cfg, params, ck.meta);
  const input = join(top, "in.json");
  writeFileSync(input, JSON.stringify({ matrices: [[[0.1, null, 0.3, 0.2], [0.2, 0.5, null, 0], [null, 0.4, 0.9, 0], [0, 0, 0, null]]] }));
  const r = runCli("predict", "--checkpoint", nan, "--input", input);
  oneLine(r, /nan\.safetensors holds NaN in readout\.weight/);
  assert.equal(r.stdout, "");
  const same = runCli("predict", "--checkpoint", ckpt, "--input", input);
  assert.equal(same.status, 0, same.stderr);
  assert.equal(same.stderr, "");
  writeFileSync(input, JSON.stringify({ matrices: [[[0.1, null, 0.3, 0.2, 0], [0.2, 0.5, null, 0, 0], [null, 0.4, 0.9, 0, 0]]] }));
  const other = runCli("predict", "--checkpoint", ckpt, "--input", input);
  assert.equal(other.status, 0, other.stderr);
  assert.equal(other.stderr.trim(), "abrupt: warning: the checkpoint was trained on 4×4 matrices, the input's are 3×5; the predictions may mean little");
  const p = (JSON.parse(other.stdout) as { predictions: number[][][] }).predictions;
  assert.deepEqual([p.length, p[0]!.length, p[0]![0]!.length], [1, 3, 5]);
});

test("bench: a bad backend is named; a run prints a table and JSON with sane numbers", () => {
  oneLine(runCli("bench", "--backends", "foo"), /--backends: unknown backend "foo"/);
  const json = join(top, "bench.json");
  const r = runCli("bench", "--backends", "cpu", "--sizes", "S", "--steps", "2", "--threads", "1", "--json", json);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^sgemm \(cpu backend, 1 threads, .*\): [\d.]+ GFLOP\/s$/m);
  const row = /^S {2}cpu +([\d.]+) ms\/step +([\d.]+) GFLOP\/s +(\d+)% of sgemm +peak RSS (\d+) MB$/m.exec(r.stdout);
  assert.ok(row, r.stdout);
  const res = JSON.parse(readFileSync(json, "utf8")) as { sgemm: { gflops: number }; threads: number; rows: Array<{ size: string; backend: string; steps: number; msPerStep: number; msAll: number[]; gflops: number; ofPeak: number; maxRssMB: number }> };
  assert.equal(res.threads, 1);
  assert.ok(res.sgemm.gflops > 0.1 && res.sgemm.gflops < 1e5, `sgemm ${res.sgemm.gflops}`);
  assert.equal(res.rows.length, 1);
  const s = res.rows[0]!;
  assert.deepEqual([s.size, s.backend, s.steps, s.msAll.length], ["S", "cpu", 2, 2]);
  assert.ok(s.msPerStep > 0 && s.msPerStep < 60_000, `ms/step ${s.msPerStep}`);
  assert.ok(Math.min(...s.msAll) - 0.05 <= s.msPerStep && s.msPerStep <= Math.max(...s.msAll) + 0.05, "the median is one of the timed steps (rounded to 0.1 ms)");
  assert.ok(Math.abs(s.gflops / res.sgemm.gflops - s.ofPeak) < 1e-9 && s.ofPeak > 0 && s.ofPeak < 2, `of peak ${s.ofPeak}`);
  assert.ok(s.maxRssMB > 20 && s.maxRssMB < 4000, `peak RSS ${s.maxRssMB} MB`);
  assert.equal(Number(row[1]), Number(s.msPerStep.toFixed(1)));
  // the progress measures' cost: a line under the row, and JSON fields
  const pm = (s as unknown as { progressMs: number; progressOverhead100: number });
  assert.ok(pm.progressMs > 0 && Math.abs(pm.progressOverhead100 * 100 * s.msPerStep - pm.progressMs) <= 0.006, JSON.stringify(pm));
  assert.match(r.stdout, /^ {3}progress measures: [\d.]+ ms each, [\d.]+% of the step time at --progress-every 100$/m);
});

test("--p-mask 0 trains and ends with its summary, not a stack trace", () => {
  const r = runCli("train", ...small, "--p-mask", "0", "--steps", "2", "--out", join(top, "p0"));
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /internal error|at .*\.js:\d+/);
  assert.match(r.stderr, /finished at step 2 .* L_mask n\/a/);
});
