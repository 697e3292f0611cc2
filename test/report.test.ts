// `abrupt report RUN` writes one self-contained HTML file (inline SVG
// figures, no scripts, nothing loaded from the network) and caches the
// analyses it used; `abrupt serve` and `abrupt report` reject bad input with
// one line and a non-zero exit.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bin, runCli } from "./helpers/cli.js";

const run = runCli;
const top = mkdtempSync(join(tmpdir(), "abrupt-report-"));
const dir = join(top, "run");
after(() => rmSync(top, { recursive: true, force: true }));

function oneLineError(r: ReturnType<typeof run>, re: RegExp): void {
  assert.notEqual(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, re);
}

test("setup: a tiny run", () => {
  const r = run("train", "--m", "4", "--n", "4", "--rank", "1", "--layers", "1", "--heads", "2", "--width", "16", "--ff", "32", "--positions", "16",
    "--batch", "8", "--steps", "20", "--ckpt-every", "10", "--ckpt-log", "0", "--eval-every", "5", "--eval-batch", "8", "--threads", "1", "--out", dir, "--quiet");
  assert.equal(r.status, 0, r.stderr);
});

test("report: one self-contained HTML file with the figures of both checkpoints", () => {
  const out = join(top, "r.html");
  const r = run("report", dir, "--pre", "10", "--post", "20", "--out", out, "--opt", "batch=8", "--opt", "train=64", "--opt", "test=16",
    "--opt", "matrices=16", "--opt", "permutations=1", "--opt", "tsneIterations=50");
  assert.equal(r.status, 0, r.stderr);
  const html = readFileSync(out, "utf8");
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /<script/i);
  assert.doesNotMatch(html, /\b(src|href)\s*=\s*["']?(https?:|\/\/)/i, "nothing may load from the network");
  assert.doesNotMatch(html, /<link\b/i);
  // loss + progress + per checkpoint: attention grid, 2 query views, sample, 2 embeddings, probe
  assert.equal((html.match(/<svg/g) ?? []).length, 2 + 2 * 7);
  assert.match(html, /step 10/);
  assert.match(html, /step 20/);
  assert.match(html, /copy level/);
  assert.match(html, /What changed between checkpoints 10 and 20/);
  assert.match(html, /best row head/);
  const cached = readdirSync(join(dir, "analysis"));
  for (const k of ["attention-step-10-", "attention-step-20-", "probe-step-20-", "embeddings-step-10-", "sample-step-20-seed-0-random.json", "progress-"]) {
    assert.ok(cached.some((f) => f.startsWith(k)), `no cached ${k} in ${cached.join(", ")}`);
  }
});

test("report and serve: bad input is one line and a non-zero exit", async () => {
  oneLineError(run("report", join(top, "missing")), /run directory .* does not exist/);
  oneLineError(run("report", dir, "--pre", "7"), /--pre: checkpoint step 7 does not exist/);
  oneLineError(run("report", dir, "--out", join(top, "no", "such", "r.html"), "--opt", "batch=4"), /folder does not exist/);
  assert.ok(!existsSync(join(top, "no")));
  oneLineError(run("serve", join(top, "missing")), /runs folder .* does not exist/);
  // a port already taken
  const blocker = createServer();
  await new Promise<void>((ok) => blocker.listen(0, "127.0.0.1", () => ok()));
  const port = (blocker.address() as { port: number }).port;
  const child = spawn(process.execPath, [bin, "serve", top, "--port", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((ok) => child.on("exit", ok));
  blocker.close();
  assert.notEqual(code, 0);
  assert.equal(err.trim().split("\n").length, 1, err);
  assert.match(err, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
});
