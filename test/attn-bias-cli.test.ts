// `--attn-bias` on the command line: every bad value is one `abrupt: ...`
// line with exit ≠ 0 and nothing written; a good one is recorded in
// config.json; `analyze --attn-bias` runs the models with it and writes its
// results beside (never over) the plain ones.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli as run } from "./helpers/cli.js";

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), "abrupt-bias-cli-")); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });

const small = ["--layers", "2", "--heads", "2", "--width", "16", "--ff", "32", "--batch", "8", "--eval-batch", "8", "--m", "4", "--n", "4", "--rank", "1", "--quiet"];

function oneLineError(r: ReturnType<typeof run>, pattern: RegExp) {
  assert.notEqual(r.status, 0, `expected failure, got exit 0 (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^abrupt: /);
  assert.match(lines[0]!, pattern);
}

test("train --attn-bias (and --progress-every, --optimizer, --weight-decay, --init-std): bad values are one line each, nothing written", () => {
  const d = tmp();
  const out = join(d, "never");
  const bad: Array<[string, RegExp]> = [
    ["0", /C must be a positive number \(got "0"\)/],
    ["-2", /C must be a positive number/],
    ["abc", /C must be a positive number \(got "abc"\)/],
    ["", /C must be a positive number/],
    ["2@-5", /STEP must be a step number/],
    ["2@1.5", /STEP must be a step number/],
    ["2@9", /step 9 is past the run's last step 5/],
    ["2:2", /layer 2 is outside 0\.\.1/],
    ["2:0,x", /LAYERS must be layer numbers/],
  ];
  for (const [v, re] of bad) oneLineError(run("train", ...small, "--steps", "5", "--out", out, `--attn-bias=${v}`), re);
  oneLineError(run("train", ...small, "--steps", "5", "--out", out, "--progress-every", "x"), /--progress-every must be a number/);
  oneLineError(run("train", ...small, "--steps", "5", "--out", out, "--optimizer", "lion"), /train\.optimizer: .*"adam"\|"sgd"/);
  oneLineError(run("train", ...small, "--steps", "5", "--out", out, "--weight-decay", "-1"), /train\.weight_decay/);
  oneLineError(run("train", ...small, "--steps", "5", "--out", out, "--init-std", "0"), /train\.init_std/);
  assert.equal(existsSync(out), false);
});

test("train --attn-bias 2@3:1 --progress-every 2 records both; analyze --attn-bias writes beside the plain results", () => {
  const d = tmp();
  const dir = join(d, "run");
  const r = run("train", ...small, "--steps", "6", "--ckpt-every", "3", "--out", dir, "--attn-bias", "2@3:1", "--progress-every", "2");
  assert.equal(r.status, 0, r.stderr);
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  assert.deepEqual(cfg.train.attn_bias, { c: 2, from: 3, layers: [1] });
  assert.equal(cfg.train.progress_every, 2);
  assert.match(r.stderr, /attention ×2 on the targets, layers 1, from step 3 ·/, "the banner names the intervention");
  const lines = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.filter((l) => "attn_progress" in l).map((l) => l.step), [2, 4, 6]);

  // analyze: plain, then with the intervention from step 6 (so the checkpoint at 3 runs without it)
  const ana = (...extra: string[]) => run("analyze", "progress", dir, "--opt", "matrices=16", ...extra);
  let a = ana();
  assert.equal(a.status, 0, a.stderr);
  a = ana("--attn-bias", "10@6:0,1");
  assert.equal(a.status, 0, a.stderr);
  const files = readdirSync(join(dir, "analysis")).filter((f) => f.endsWith(".json")).sort();
  assert.deepEqual(files, ["progress-attn-bias-c10-from6-l0.1.json", "progress.json"]);
  const plain = JSON.parse(readFileSync(join(dir, "analysis", "progress.json"), "utf8"));
  const biased = JSON.parse(readFileSync(join(dir, "analysis", "progress-attn-bias-c10-from6-l0.1.json"), "utf8"));
  assert.deepEqual(biased.options.attn_bias, { c: 10, from: 6, layers: [0, 1] });
  const at = (j: { steps: Array<{ step: number; attnProgress: number }> }, s: number) => j.steps.find((x) => x.step === s)!.attnProgress;
  assert.equal(at(biased, 3), at(plain, 3), "step 3 < 6: no bias");
  assert.ok(at(biased, 6) > at(plain, 6) + 0.05, `c = 10 raises attention progress at step 6: ${at(plain, 6)} → ${at(biased, 6)}`);

  oneLineError(ana("--attn-bias", "2:5"), /--attn-bias: layer 5 is outside 0\.\.1/);
  oneLineError(ana("--attn-bias", "2@100"), /step 100 is past the run's last checkpoint \(step 6\)/);
  oneLineError(ana("--attn-bias", "nan"), /C must be a positive number/);
});
