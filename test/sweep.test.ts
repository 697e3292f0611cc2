// `abrupt sweep`: the plan and its validation, the local pool, continuing
// after Ctrl-C and after SIGKILL of the sweep command (bit-identical to an
// uninterrupted sweep), and a folder that holds another sweep.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { planSweep, type SweepFile } from "../src/sweep/spec.js";
import { readMetrics } from "../src/train/metrics.js";
import { bin, root, runCli } from "./helpers/cli.js";
import { waitFor } from "./helpers/wait.js";

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), "abrupt-sweep-")); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });

const TINY = { preset: "S", model: { L: 1, H: 2, d: 16, ff: 32, positions: 16 }, data: { m: 3, n: 3, rank: 1 }, train: { batch: 8, eval_every: 50, eval_batch: 16, ckpt_every: 200 } };
const spec = (extra: Partial<SweepFile> = {}): SweepFile => ({ base: TINY, grid: { "train.lr": [0.001, 0.003] }, seeds: 2, stop: { max_steps: 400 }, ...extra });

test("plan: cells are the grid's product, runs named from cell and seed, configs resolved with the sweep defaults", () => {
  const p = planSweep({ ...spec(), grid: { "train.lr": [0.001, 0.003], "model.d": [16, 32] }, seeds: [3, 5] });
  assert.deepEqual(p.cells.map((c) => c.key), ["lr=0.001_d=16", "lr=0.001_d=32", "lr=0.003_d=16", "lr=0.003_d=32"]);
  // seed-major: every cell's first seed before any cell's second
  assert.deepEqual(p.runs.slice(0, 5).map((r) => r.name), ["lr=0.001_d=16_seed=3", "lr=0.001_d=32_seed=3", "lr=0.003_d=16_seed=3", "lr=0.003_d=32_seed=3", "lr=0.001_d=16_seed=5"]);
  assert.deepEqual(p.cells[0]!.runs.map((r) => r.name), ["lr=0.001_d=16_seed=3", "lr=0.001_d=16_seed=5"]);
  const r = p.runs.find((x) => x.name === "lr=0.003_d=32_seed=5")!;
  assert.equal(r.config.train.lr, 0.003);
  assert.equal(r.config.model.d, 32);
  assert.equal(r.config.train.seed, 5);
  assert.equal(r.config.train.threads, 1); // the sweep's default
  assert.equal(r.config.train.ckpt_every, 200); // base wins over the sweep's defaults
  assert.equal(r.config.train.max_steps, 400);
  assert.equal(r.config.model.L, 1);
  // the preset's values that the base does not name stay (the cpu preset's cosine decay)
  const c = planSweep({ base: { preset: "cpu", train: { lr: 0.002 } }, seeds: 1 });
  assert.equal(c.cells.length, 1);
  assert.equal(c.cells[0]!.key, "base");
  assert.equal(c.runs[0]!.config.train.lr_decay, "cosine");
  assert.equal(c.runs[0]!.config.train.decay_start, 8000);
  // the same file gives the same id; another file another
  assert.equal(planSweep(spec()).id, planSweep(spec()).id);
  assert.notEqual(planSweep(spec()).id, planSweep(spec({ seeds: 3 })).id);
});

test("plan: the intervention as the flag writes it, in the grid and in the base", () => {
  const p = planSweep({ base: { ...TINY, model: { ...TINY.model, L: 2 } }, grid: { "train.attn_bias": [null, "2", "5@0:1", "5@0-drop"] }, seeds: 1 });
  assert.deepEqual(p.cells.map((c) => c.key), ["attn_bias=null", "attn_bias=2", "attn_bias=5@0-l1", "attn_bias=5@0-drop"]);
  assert.deepEqual(p.cells.map((c) => c.runs[0]!.config.train.attn_bias), [
    null, { c: 2, from: 0, layers: null }, { c: 5, from: 0, layers: [1] }, { c: 5, from: 0, until: "drop", layers: null },
  ]);
  const b = planSweep({ base: { ...TINY, train: { ...TINY.train, attn_bias: "3@100" } }, seeds: 1 });
  assert.deepEqual(b.runs[0]!.config.train.attn_bias, { c: 3, from: 100, layers: null });
  assert.throws(() => planSweep({ base: TINY, grid: { "train.attn_bias": ["-1"] }, seeds: 1 }, "s.yaml"),
    (e: Error) => /^sweep file s\.yaml: cell attn_bias=-1: train\.attn_bias: C must be a positive number/.test(e.message));
  assert.throws(() => planSweep({ base: TINY, grid: { "train.attn_bias": ["2:3"] }, seeds: 1 }, "s.yaml"),
    (e: Error) => /cell attn_bias=2-l3: .*layer 3 is outside 0\.\.0/.test(e.message));
});

test("plan: bad sweep files fail before any run, with one line naming the key and the cell", () => {
  const bad: Array<[Partial<SweepFile>, RegExp]> = [
    [{ grid: { "train.lrr": [1] } }, /unknown config key "train\.lrr"/],
    [{ grid: { "lr": [1] } }, /grid key "lr" is not SECTION\.KEY/],
    [{ grid: {} }, /grid is empty/],
    [{ grid: { "train.lr": [] } }, /grid key "train\.lr" has no values/],
    [{ grid: { "train.lr": [0.001, 0.001] } }, /cell lr=0\.001 is the same configuration as cell lr=0\.001 \(duplicate cell\)/],
    [{ grid: { "model.d": [16, 15] } }, /cell d=15: config: model\.H \(2\) must divide model\.d \(15\)/],
    [{ grid: { "train.lr": [-1] } }, /cell lr=-1: .*lr/],
    [{ grid: { "train.seed": [1] } }, /"train\.seed" is set by "seeds"/],
    [{ base: { model: { wide: 3 } } }, /base\.model/],
  ];
  for (const [extra, re] of bad) {
    assert.throws(() => planSweep(spec(extra), "s.yaml"), (e: Error) => re.test(e.message) && e.message.startsWith("sweep file s.yaml:") && !e.message.includes("\n"), `${JSON.stringify(extra)}`);
  }
  const dir = tmp();
  const f = join(dir, "bad.yaml");
  writeFileSync(f, "base: { preset: S }\ngrid: { train.lr: [0.001, 0.001] }\nseeds: 2\n");
  const r = runCli("sweep", f, "--out", join(dir, "out"));
  assert.notEqual(r.status, 0);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, /^abrupt: sweep file .*duplicate cell/);
  assert.equal(existsSync(join(dir, "out")), false, "nothing is written");
});

/** Metrics of every run of a sweep folder (wall times and resume markers left out). */
function results(dir: string, names: string[]) {
  return Object.fromEntries(names.map((n) => [n, readMetrics(join(dir, "runs", n, "metrics.jsonl")).lines.map((l) => ({ ...l, ms: 0 }))]));
}
const finalCkpt = (dir: string, name: string, step: number) => readFileSync(join(dir, "runs", name, "checkpoints", `step-${String(step).padStart(7, "0")}.safetensors`));

function startSweep(file: string, out: string, ...args: string[]) {
  const child = spawn(process.execPath, [bin, "sweep", file, "--out", out, "--quiet", ...args], { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  const done = new Promise<number | null>((ok) => child.on("exit", (code, sig) => ok(code ?? (sig ? -1 : null))));
  return { child, done, err: () => err };
}


test("sweep: runs every (cell, seed), skips finished runs, and continues bit-identically after Ctrl-C and after SIGKILL", async () => {
  const dir = tmp();
  const file = join(dir, "s.json");
  const s = spec({ stop: { max_steps: 2000 } });
  writeFileSync(file, JSON.stringify(s));
  const names = planSweep(s).runs.map((r) => r.name);

  // the reference: one uninterrupted sweep
  const ref = join(dir, "ref");
  const r0 = runCli("sweep", file, "--out", ref, "--workers", "2", "--quiet");
  assert.equal(r0.status, 0, r0.stderr);
  const sw = JSON.parse(readFileSync(join(ref, "sweep.json"), "utf8"));
  assert.deepEqual(sw.cells.map((c: { key: string }) => c.key), ["lr=0.001", "lr=0.003"]);
  for (const c of sw.cells) {
    assert.equal(c.runs.length, 2);
    for (const r of c.runs) {
      assert.equal(r.steps, 2000);
      assert.equal(r.status, "finished");
      for (const k of ["seed", "dir", "steps", "plateau_end", "drop", "seconds"]) assert.ok(k in r, k);
    }
    for (const k of ["key", "overrides", "runs", "p_drop", "p_drop_ci", "median_plateau_end", "survival"]) assert.ok(k in c, k);
  }
  // each run folder is an ordinary run
  for (const n of names) for (const f of ["config.json", "metrics.jsonl", "summary.json", "status.json", "loss.svg"]) assert.ok(existsSync(join(ref, "runs", n, f)), `${n}/${f}`);
  for (const f of ["km-steps.svg", "km-steps.png", "km-seconds.svg", "p-drop.png"]) assert.ok(existsSync(join(ref, "analysis", f)), f);

  // Ctrl-C in the middle of the first runs, then the same command again
  const out = join(dir, "out");
  const a = startSweep(file, out, "--workers", "2");
  await waitFor(() => names.slice(0, 2).every((n) => existsSync(join(out, "runs", n, "checkpoints", "step-0000200.safetensors"))));
  a.child.kill("SIGINT");
  assert.equal(await a.done, 130, a.err());
  const st = JSON.parse(readFileSync(join(out, "runs", names[0]!, "status.json"), "utf8"));
  assert.equal(st.status, "interrupted");
  // SIGKILL of the sweep command itself: its trainers notice, checkpoint and stop
  const b = startSweep(file, out, "--workers", "1");
  await waitFor(() => readMetrics(join(out, "runs", names[0]!, "metrics.jsonl")).lines.length > 0 && JSON.parse(readFileSync(join(out, "runs", names[0]!, "status.json"), "utf8")).status === "finished" && existsSync(join(out, "runs", names[1]!, "metrics.jsonl")));
  b.child.kill("SIGKILL");
  await b.done;
  await waitFor(() => !existsSync(join(out, "runs", names[1]!, "train.lock")), 30_000);
  const c = runCli("sweep", file, "--out", out, "--workers", "2", "--quiet");
  assert.equal(c.status, 0, c.stderr);
  assert.deepEqual(results(out, names), results(ref, names));
  for (const n of names) assert.deepEqual(finalCkpt(out, n, 2000), finalCkpt(ref, n, 2000), n);
  const resumed = readFileSync(join(out, "runs", names[0]!, "metrics.jsonl"), "utf8");
  assert.match(resumed, /resume_from/);

  // again: everything is finished and skipped
  const d = runCli("sweep", file, "--out", out, "--workers", "2");
  assert.equal(d.status, 0, d.stderr);
  assert.match(d.stderr, /4 done · 0 running · 0 queued/);

  // another sweep file into the same folder is refused, unless --force
  const other = join(dir, "other.json");
  writeFileSync(other, JSON.stringify({ ...s, seeds: 3 }));
  const e = runCli("sweep", other, "--out", out);
  assert.notEqual(e.status, 0);
  assert.match(e.stderr, /^abrupt: .*holds a different sweep/);
  assert.equal(e.stderr.trim().split("\n").length, 1);
});

test("sweep: a larger stop.max_steps (with --force) continues the censored runs to it, as if they had run straight there", () => {
  const dir = tmp();
  const short = join(dir, "short.json"), long = join(dir, "long.json");
  writeFileSync(short, JSON.stringify(spec({ seeds: 1, stop: { max_steps: 300 } })));
  writeFileSync(long, JSON.stringify(spec({ seeds: 1, stop: { max_steps: 700 } })));
  const names = planSweep(spec({ seeds: 1 })).runs.map((r) => r.name);
  const straight = join(dir, "straight");
  assert.equal(runCli("sweep", long, "--out", straight, "--quiet").status, 0);
  const out = join(dir, "out");
  assert.equal(runCli("sweep", short, "--out", out, "--quiet").status, 0);
  for (const n of names) assert.equal(readMetrics(join(out, "runs", n, "metrics.jsonl")).lines.length, 300);
  const r = runCli("sweep", long, "--out", out, "--quiet", "--force");
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(results(out, names), results(straight, names));
  for (const n of names) assert.deepEqual(finalCkpt(out, n, 700), finalCkpt(straight, n, 700), n);

  // analyze sweep --with: another sweep's cells join the figures and compared.json, named FOLDER/CELL; sweep.json stays this sweep's
  const cmp = join(dir, "cmp");
  const a = runCli("analyze", "sweep", out, "--with", `${straight}:lr=0.003`, "--out", cmp);
  assert.equal(a.status, 0, a.stderr);
  const both = JSON.parse(readFileSync(join(cmp, "compared.json"), "utf8"));
  assert.deepEqual(both.cells.map((c: { key: string }) => c.key), ["straight/lr=0.003", "lr=0.001", "lr=0.003"]);
  const own = JSON.parse(readFileSync(join(out, "sweep.json"), "utf8"));
  assert.deepEqual(own.cells.map((c: { key: string }) => c.key), ["lr=0.001", "lr=0.003"]);
  const theirs = JSON.parse(readFileSync(join(straight, "sweep.json"), "utf8")).cells.find((c: { key: string }) => c.key === "lr=0.003");
  // the same cell, its run folders named relative to this sweep
  assert.deepEqual({ ...both.cells[0], key: "lr=0.003", runs: both.cells[0].runs.map((r: { dir: string }) => ({ ...r, dir: r.dir.replace(/^\.\.\/straight\//, "") })) }, theirs);
  assert.ok(both.cells[0].runs.every((r: { dir: string }) => existsSync(join(out, r.dir, "metrics.jsonl"))));
  assert.match(readFileSync(join(cmp, "km-steps.svg"), "utf8"), /straight\/lr=0\.003/);
  const bad = runCli("analyze", "sweep", out, "--with", `${straight}:lr=9`, "--out", cmp);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr.trim(), /^abrupt: --with .*: .* has no cell "lr=9" \(cells: lr=0\.001, lr=0\.003\)$/);

  // --with a saved summary (a sweep.json whose runs are gone, as in docs/sweeps/NAME/): the same cell, recomputed from its runs' events
  const kept = join(dir, "kept");
  mkdirSync(kept);
  copyFileSync(join(straight, "sweep.json"), join(kept, "sweep.json"));
  for (const src of [kept, join(kept, "sweep.json")]) {
    const cmp2 = join(dir, "cmp2");
    const k = runCli("analyze", "sweep", out, "--with", `${src}:lr=0.003`, "--out", cmp2, "--aligned", "loss_mask");
    assert.equal(k.status, 0, k.stderr);
    const c2 = JSON.parse(readFileSync(join(cmp2, "compared.json"), "utf8"));
    assert.deepEqual(c2.cells.map((c: { key: string }) => c.key), ["kept/lr=0.003", "lr=0.001", "lr=0.003"]);
    const strip = (c: { runs: Array<{ dir: string }> }) => ({ ...c, key: "", runs: c.runs.map((r) => ({ ...r, dir: basename(r.dir) })) });
    assert.deepEqual(strip(c2.cells[0]), strip(theirs));
    // the aligned curves are drawn from the cells whose runs are there
    const al = JSON.parse(readFileSync(join(cmp2, "aligned-loss_mask.json"), "utf8"));
    assert.deepEqual(al.cells.map((c: { key: string }) => c.key), ["lr=0.001", "lr=0.003"]);
  }
  writeFileSync(join(kept, "sweep.json"), "{\"cells\": 3}");
  const bad2 = runCli("analyze", "sweep", out, "--with", kept, "--out", cmp);
  assert.notEqual(bad2.status, 0);
  assert.match(bad2.stderr.trim(), /^abrupt: --with .*kept: .*sweep\.json is not a sweep\.json \(it needs "cells"/);
  assert.equal(bad2.stderr.trim().split("\n").length, 1);
});
