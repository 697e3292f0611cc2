// Resuming a run: a metrics.jsonl cut mid-line is repaired before the
// `resume_from` marker is written; --resume keeps every setting of the run
// and only lets its length grow; and the real Ctrl-C path of `abrupt train`
// (SIGINT, exit 130, --resume) ends bit-identical to an uninterrupted run.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveConfig } from "../src/train/config.js";
import { type MetricsLine, readMetrics } from "../src/train/metrics.js";
import { train } from "../src/train/train.js";
import { bin, root, runCli, oneLine } from "./helpers/cli.js";

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), "abrupt-resume-")); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });
const strip = (l: MetricsLine) => ({ ...l, ms: 0 });
const cfg = resolveConfig("cpu", undefined, {
  model: { L: 1, H: 2, d: 16, ff: 32, positions: 16 },
  data: { m: 3, n: 4, rank: 1, p_mask: 0.3 },
  train: { steps: 20, batch: 8, lr: 3e-3, warmup: 4, seed: 5, eval_every: 5, eval_batch: 16, ckpt_every: 10, ckpt_log: 0, backend: "cpu", threads: 1 },
});


test("resume after a truncated last line keeps every complete line and starts the marker on its own line", async () => {
  const ref = tmp();
  await train(cfg, { outDir: ref, quiet: true });
  const want = readMetrics(join(ref, "metrics.jsonl")).lines.map(strip);
  for (const tail of ['{"step":14,"loss":0.0', '{"step":14,"loss":0.5,"loss_mask":1,"loss_obs":0.1,"mask_abs":0,"lr":0.003,"ms":1}']) {
    const dir = tmp();
    await train(cfg, { outDir: dir, quiet: true, stopAfter: 13 });
    const file = join(dir, "metrics.jsonl");
    const before = readFileSync(file, "utf8").split("\n").filter(Boolean);
    appendFileSync(file, tail); // killed while writing step 14
    await train(cfg, { outDir: dir, quiet: true, resume: true });
    const raw = readFileSync(file, "utf8");
    assert.ok(raw.endsWith("\n"));
    const lines = raw.trim().split("\n");
    const parsed = lines.map((l, i) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { assert.fail(`line ${i + 1} is not JSON: ${l}`); } });
    assert.deepEqual(lines.slice(0, before.length), before, "a complete line was changed");
    const marker = parsed.findIndex((o) => o["resume_from"] !== undefined);
    assert.equal(parsed[marker]!["resume_from"], 13);
    // a whole last record is kept (with its newline), a partial one is cut
    assert.equal(marker, before.length + (tail.endsWith("}") ? 1 : 0));
    const { lines: got, bad } = readMetrics(file);
    assert.equal(bad, 0);
    assert.deepEqual(got.map(strip), want);
  }
});

test("--resume refuses changed settings with one line naming them; --steps may only grow", () => {
  const d = tmp();
  const dir = join(d, "run");
  const base = ["--layers", "1", "--heads", "2", "--width", "16", "--ff", "32", "--positions", "16", "--m", "4", "--n", "4", "--rank", "1", "--batch", "8", "--eval-batch", "8", "--lr", "0.002", "--seed", "1", "--quiet"];
  let r = runCli("train", ...base, "--steps", "6", "--ckpt-every", "3", "--ckpt-log", "0", "--out", dir);
  assert.equal(r.status, 0, r.stderr);
  const cfgBefore = readFileSync(join(dir, "config.json"), "utf8");
  const metricsBefore = readFileSync(join(dir, "metrics.jsonl"), "utf8");
  const refused: Array<[string[], RegExp]> = [
    [["--steps", "2"], /--steps 2: the run is at step 6/],
    [["--lr", "5"], /--lr 5: the run has train\.lr = 0\.002/],
    [["--seed", "3"], /--seed 3: the run has train\.seed = 1/],
    [["--batch", "2"], /--batch 2: the run has train\.batch = 8/],
    [["--preset", "S"], /--preset S: the run was made with preset cpu/],
    [["--width", "32", "--heads", "2"], /--width 32: the run has model\.d = 16/],
    [["--p-mask", "0.5"], /--p-mask 0\.5: the run has data\.p_mask = 0\.2/],
    [["--threads", "2"], /--threads 2: the run has train\.threads = 0/],
  ];
  for (const [flags, re] of refused) oneLine(runCli("train", "--resume", "--out", dir, ...flags), re);
  const file = join(d, "c.yaml");
  writeFileSync(file, "train:\n  lr: 0.01\n");
  oneLine(runCli("train", "--resume", "--out", dir, "--config", file), /train\.lr = 0\.01 in .*c\.yaml: the run has train\.lr = 0\.002/);
  assert.equal(readFileSync(join(dir, "config.json"), "utf8"), cfgBefore, "config.json changed");
  assert.equal(readFileSync(join(dir, "metrics.jsonl"), "utf8"), metricsBefore, "metrics.jsonl changed");
  // the same values are fine, and the run may be extended
  writeFileSync(file, "train:\n  lr: 0.002\n");
  r = runCli("train", "--resume", "--out", dir, "--lr", "0.002", "--seed", "1", "--batch", "8", "--preset", "cpu", "--config", file, "--steps", "8", "--quiet");
  assert.equal(r.status, 0, r.stderr);
  const after = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  assert.equal(after.train.steps, 8);
  assert.equal(after.train.lr, 0.002);
  assert.deepEqual(readMetrics(join(dir, "metrics.jsonl")).lines.map((l) => l.step), [1, 2, 3, 4, 5, 6, 7, 8]);
});

test("Ctrl-C on abrupt train, then --resume: metrics and final checkpoint bit-identical to an uninterrupted run", async () => {
  const d = tmp();
  const flags = ["train", "--layers", "1", "--heads", "2", "--width", "16", "--ff", "32", "--positions", "16", "--m", "4", "--n", "4", "--rank", "1",
    "--batch", "8", "--eval-batch", "8", "--eval-every", "50", "--steps", "3000", "--ckpt-every", "1000", "--ckpt-log", "0", "--threads", "1", "--quiet"];
  const a = join(d, "a"), b = join(d, "b");
  const ra = runCli(...flags, "--out", a);
  assert.equal(ra.status, 0, ra.stderr);

  const child = spawn(process.execPath, [bin, ...flags, "--out", b], { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((ok) => child.on("exit", (c) => ok(c)));
  const metrics = join(b, "metrics.jsonl");
  while (!(existsSync(metrics) && readFileSync(metrics, "utf8").split("\n").length > 30)) await new Promise((r) => setTimeout(r, 20));
  child.kill("SIGINT");
  assert.equal(await exited, 130, stderr);
  const status = JSON.parse(readFileSync(join(b, "status.json"), "utf8")) as { status: string; step: number };
  assert.equal(status.status, "interrupted");
  assert.ok(status.step > 30 && status.step < 3000, `interrupted at step ${status.step}`);

  const rb = runCli("train", "--resume", "--out", b, "--quiet");
  assert.equal(rb.status, 0, rb.stderr);
  const la = readMetrics(join(a, "metrics.jsonl"));
  const lb = readMetrics(metrics);
  assert.equal(lb.bad, 0);
  assert.equal(la.lines.length, 3000);
  assert.deepEqual(lb.lines.map(strip), la.lines.map(strip));
  for (const f of ["step-0003000.safetensors", "step-0003000.adam.safetensors"]) {
    assert.ok(readFileSync(join(b, "checkpoints", f)).equals(readFileSync(join(a, "checkpoints", f))), `${f} differs`);
  }
});
