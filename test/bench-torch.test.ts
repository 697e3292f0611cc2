// `abrupt bench --torch PYTHON`: a python that does not run or import torch
// is refused with one line; the peer's JSON line is parsed and the ratio
// ours/torch computed (with a stand-in python that prints a fixed result, so
// this needs no torch); bench_torch.py's sizes are ours. The script itself
// with a real torch runs in `abrupt bench --torch` (README, docs/gpt.md), not
// here: the test machines need not have torch.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BENCH_SIZES } from "../src/train/bench.js";
import { checkTorch, torchBench, torchScript } from "../src/train/bench-torch.js";
import { oneLine, runCli } from "./helpers/cli.js";

const top = mkdtempSync(join(tmpdir(), "abrupt-bench-torch-"));
after(() => rmSync(top, { recursive: true, force: true }));

function script(name: string, body: string): string {
  const file = join(top, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

test("bench --torch: a missing python, one without torch, and bad options fail with one line", () => {
  oneLine(runCli("bench", "--backends", "cpu", "--sizes", "S", "--torch", join(top, "no-such-python")), /--torch .*no-such-python: cannot run it \(no such file\)/);
  const noTorch = script("no-torch", `echo 'Traceback (most recent call last):' >&2; echo "ModuleNotFoundError: No module named 'torch'" >&2; exit 1`);
  oneLine(runCli("bench", "--backends", "cpu", "--sizes", "S", "--torch", noTorch), /--torch .*no-torch: import torch failed: ModuleNotFoundError: No module named 'torch'$/);
  const garbled = script("garbled", `echo 'hello'`);
  oneLine(runCli("bench", "--backends", "cpu", "--sizes", "S", "--torch", garbled), /printed no JSON line \(last line: "hello"\)/);
  oneLine(runCli("bench", "--backends", "ref", "--torch", garbled), /--torch compares PyTorch with the cpu backend/);
  oneLine(runCli("bench", "--backends", "cpu", "--torch", garbled, "--repeat", "0"), /--repeat must be at least 1 \(got 0\)/);
});

test("bench --torch: the peer's JSON is parsed, run alternately with ours, and the ratio ours/torch reported", () => {
  const fake = script("fake-torch", [
    `case "$*" in *--check*) echo '{"torch":"0.0-fake","python":"3.0"}'; exit 0;; esac`,
    `case "$*" in *'"d":128'*) ;; *) echo "wrong shape: $*" >&2; exit 1;; esac`,
    `echo '{"size":"S","ms_per_step":2.5,"ms_all":[2.5],"steps":1,"threads":1,"torch":"0.0-fake","python":"3.0","shape":{}}'`,
  ].join("\n"));
  const json = join(top, "bench.json");
  const r = runCli("bench", "--backends", "cpu", "--sizes", "S", "--steps", "1", "--threads", "1", "--torch", fake, "--repeat", "2", "--json", json);
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(readFileSync(json, "utf8")) as {
    sgemm: { gflops: number }; torch: { executable: string; torch: string; repeat: number };
    rows: Array<{ size: string; msPerStep: number; msAll: number[]; torch: { msPerStep: number; runs: number[]; ratio: number; pairRatios: number[]; threads: number } }>;
  };
  assert.deepEqual([res.torch.executable, res.torch.torch, res.torch.repeat], [fake, "0.0-fake", 2]);
  const s = res.rows[0]!;
  assert.equal(s.msAll.length, 2, "two runs of ours, one timed step each");
  assert.deepEqual(s.torch.runs, [2.5, 2.5]);
  assert.equal(s.torch.msPerStep, 2.5);
  assert.ok(Math.abs(s.torch.ratio - s.msPerStep / 2.5) < 1e-9, JSON.stringify(s.torch));
  assert.equal(s.torch.pairRatios.length, 2);
  assert.equal(s.torch.threads, 1);
  assert.match(r.stdout, new RegExp(`^ {3}torch 0\\.0-fake \\(1 threads\\): 2\\.5 ms/step {2}ours/torch ${s.torch.ratio.toFixed(2).replace(".", "\\.")}× {2}\\(pairs: `, "m"));
  assert.match(r.stdout, new RegExp(`^ours vs PyTorch 0\\.0-fake, same run, 1 threads, sgemm ${res.sgemm.gflops.toFixed(1).replace(".", "\\.")} GFLOP/s:$`, "m"));
  assert.match(r.stdout, /^S +[\d.]+ +2\.5 +[\d.]+×$/m);
});

test("bench_torch.py's sizes are BENCH_SIZES (needs python3, not torch)", () => {
  const r = spawnSync("python3", [torchScript(), "--list-sizes"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), BENCH_SIZES);
});
