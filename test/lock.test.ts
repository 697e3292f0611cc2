// One writer per run folder, with two real processes: a second trainer (or a
// --resume) on a live run is refused with one line naming the live process;
// once that process is SIGKILLed its lock is stale and blocks nothing, the
// dashboard calls the run "stale", and --resume continues it.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MetricsCache, summarizeRun } from "../src/server/runs.js";
import { readMetrics } from "../src/train/metrics.js";
import { bin, root, runCli } from "./helpers/cli.js";
import { waitFor } from "./helpers/wait.js";

const made: string[] = [];
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });
const SMALL = ["--preset", "S", "--layers", "1", "--heads", "2", "--width", "16", "--ff", "32", "--positions", "16", "--m", "3", "--n", "3", "--rank", "1", "--batch", "8", "--eval-every", "0", "--ckpt-every", "100", "--quiet"];


test("two trainers on one run folder: the second is refused, naming the live process; a SIGKILLed owner blocks nothing", async () => {
  const base = mkdtempSync(join(tmpdir(), "abrupt-lock-"));
  made.push(base);
  const out = join(base, "race");
  const first = spawn(process.execPath, [bin, "train", ...SMALL, "--steps", "200000", "--out", out], { cwd: root, stdio: "ignore" });
  const exited = new Promise<void>((ok) => first.on("exit", () => ok()));
  try {
    await waitFor(() => existsSync(join(out, "checkpoints", "step-0000100.safetensors")));
    const cfgBefore = readFileSync(join(out, "config.json"), "utf8");
    const second = runCli("train", ...SMALL, "--steps", "100", "--seed", "7", "--out", out);
    assert.notEqual(second.status, 0);
    assert.equal(second.stderr.trim().split("\n").length, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`^abrupt: .*in use by another trainer \\(pid ${first.pid} `));
    const resumed = runCli("train", "--resume", "--out", out, "--quiet");
    assert.notEqual(resumed.status, 0);
    assert.match(resumed.stderr, new RegExp(`pid ${first.pid}`));
    // nothing of the run was touched by the refused processes
    assert.equal(readFileSync(join(out, "config.json"), "utf8"), cfgBefore);
    const markers = new Set(readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((o) => "resume_from" in o));
    assert.equal(markers.size, 0);
  } finally {
    first.kill("SIGKILL");
    await exited;
  }
  // the owner is gone: the dashboard says stale, and --resume is accepted
  const s = summarizeRun(base, "race", new MetricsCache(join(out, "metrics.jsonl")));
  assert.equal(s.status, "stale");
  const r = runCli("train", "--resume", "--out", out, "--steps", "200000", "--max-steps", String(readMetrics(join(out, "metrics.jsonl")).lines.length + 50), "--quiet");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(existsSync(join(out, "train.lock")), false);
  assert.match(readFileSync(join(out, "metrics.jsonl"), "utf8"), /resume_from/);
});
