// The distributed queue on a real Redis (Debian's redis-server, started here
// on loopback): two workers, one SIGKILLed mid-run; another worker resumes
// its run, no run is trained twice at once, and the results equal the local
// pool's. Bad queue URLs fail before anything is written.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planSweep, type SweepFile } from "../src/sweep/spec.js";
import { readMetrics } from "../src/train/metrics.js";
import { bin, root, runCli } from "./helpers/cli.js";
import { waitFor as waitForCond } from "./helpers/wait.js";

const made: string[] = [];
const procs: ChildProcess[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), "abrupt-queue-")); made.push(d); return d; };
let url = "";

const freePort = () => new Promise<number>((ok) => {
  const s = createServer().listen(0, "127.0.0.1", () => {
    const p = (s.address() as { port: number }).port;
    s.close(() => ok(p));
  });
});

before(async () => {
  const port = await freePort();
  const redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  procs.push(redis);
  await new Promise<void>((ok, fail) => {
    redis.on("error", (e) => fail(new Error(`redis-server could not start (./test.sh installs it): ${e.message}`)));
    setTimeout(ok, 500);
  });
  url = `redis://127.0.0.1:${port}`;
});
after(() => {
  for (const p of procs) p.kill("SIGKILL");
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

const TINY = { preset: "S", model: { L: 1, H: 2, d: 16, ff: 32, positions: 16 }, data: { m: 3, n: 3, rank: 1 }, train: { batch: 8, eval_every: 50, eval_batch: 16, ckpt_every: 200 } };
const SPEC: SweepFile = { base: TINY, grid: { "train.lr": [0.001, 0.003] }, seeds: 2, stop: { max_steps: 3000 } };

function worker(tag: string): { child: ChildProcess; log: () => string } {
  const child = spawn(process.execPath, [bin, "worker", "--queue", url, "--concurrency", "1"], { cwd: root, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ABRUPT_QUEUE_LOCK_MS: "2000" } });
  procs.push(child);
  let log = "";
  child.stderr!.on("data", (c: Buffer) => (log += c.toString()));
  void tag;
  return { child, log: () => log };
}

const waitFor = (cond: () => boolean, ms = 90_000) => waitForCond(cond, ms);

test("queue: a URL that does not answer, or is not a redis:// URL, fails with one line and writes nothing", async () => {
  const dir = tmp();
  const file = join(dir, "s.json");
  writeFileSync(file, JSON.stringify(SPEC));
  const port = await freePort(); // nothing listens there
  for (const [u, re] of [[`redis://127.0.0.1:${port}`, /does not answer/], ["http://x:1", /not a redis:\/\/ URL/], ["nonsense", /not a URL/]] as const) {
    const r = runCli("sweep", file, "--out", join(dir, "out"), "--queue", u);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, re);
    assert.match(r.stderr, /^abrupt: /);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.equal(existsSync(join(dir, "out")), false);
  }
  const w = runCli("worker", "--queue", `redis://127.0.0.1:${port}`);
  assert.notEqual(w.status, 0);
  assert.match(w.stderr, /^abrupt: the queue at .* does not answer/);
});

test("queue: two workers, one SIGKILLed mid-run; the other resumes its run and the results equal the local pool's", async () => {
  const dir = tmp();
  const file = join(dir, "s.json");
  writeFileSync(file, JSON.stringify(SPEC));
  const names = planSweep(SPEC).runs.map((r) => r.name);
  const local = join(dir, "local");
  const l = runCli("sweep", file, "--out", local, "--workers", "2", "--quiet");
  assert.equal(l.status, 0, l.stderr);

  const out = join(dir, "queued");
  const w1 = worker("a");
  const w2 = worker("b");
  const follower = spawn(process.execPath, [bin, "sweep", file, "--out", out, "--queue", url], { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
  procs.push(follower);
  let flog = "";
  follower.stderr!.on("data", (c: Buffer) => (flog += c.toString()));
  const followed = new Promise<number | null>((ok) => follower.on("exit", (c) => ok(c)));
  // kill worker a once its run is past a checkpoint
  await waitFor(() => /worker \d+: (\S+) from step/.test(w1.log()));
  const victim = /worker \d+: (\S+) from step/.exec(w1.log())![1]!;
  await waitFor(() => existsSync(join(out, "runs", victim, "checkpoints", "step-0000400.safetensors")));
  w1.child.kill("SIGKILL");
  assert.equal(await followed, 0, flog);
  // worker b took the victim's job over and resumed it
  assert.match(w2.log(), new RegExp(`${victim.replace(/[.=]/g, "\\$&")} from step [1-9]\\d*`));
  assert.match(readFileSync(join(out, "runs", victim, "metrics.jsonl"), "utf8"), /resume_from/);
  // the same numbers as the local pool, and no step written twice by two trainers at once
  for (const n of names) {
    const q = readMetrics(join(out, "runs", n, "metrics.jsonl")).lines.map((x) => ({ ...x, ms: 0 }));
    const p = readMetrics(join(local, "runs", n, "metrics.jsonl")).lines.map((x) => ({ ...x, ms: 0 }));
    assert.equal(q.length, 3000, n);
    assert.deepEqual(q, p, n);
    // one writer at a time: between resume markers the steps run 1, 2, 3, … without interleaving
    let expect = 1;
    for (const raw of readFileSync(join(out, "runs", n, "metrics.jsonl"), "utf8").trim().split("\n")) {
      const o = JSON.parse(raw) as { step?: number; resume_from?: number };
      if (o.resume_from !== undefined) expect = o.resume_from + 1;
      else { assert.equal(o.step, expect, `${n}: interleaved lines`); expect++; }
    }
    const ck = (d: string) => readFileSync(join(d, "runs", n, "checkpoints", "step-0003000.safetensors"));
    assert.deepEqual(ck(out), ck(local), n);
  }
  const sw = JSON.parse(readFileSync(join(out, "sweep.json"), "utf8"));
  assert.equal(sw.cells.flatMap((c: { runs: unknown[] }) => c.runs).length, 4);
  w2.child.kill("SIGINT");
});
