// `abrupt serve` on a sweep folder (made here by a real `abrupt sweep`): its
// runs are listed from DIR/runs/, GET /api/sweep is sweepResults(DIR) (what
// sweep.json holds), served from a cache while nothing changes and
// recomputed, equal to a fresh sweepResults, when a run's metrics or status
// change or a run folder is not there yet.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RunningServer, startServer } from "../src/server/server.js";
import { type SweepResults, sweepResults } from "../src/sweep/results.js";
import { wilson } from "../src/sweep/stats.js";
import { dropLines, makeTinySweep } from "./helpers/sweep.js";

const top = mkdtempSync(join(tmpdir(), "abrupt-server-sweep-"));
let dir = "";
let srv: RunningServer;

before(async () => {
  dir = makeTinySweep(top);
  srv = await startServer({ runsDir: dir, port: 0, pollMs: 100 });
});

after(async () => {
  await srv?.close();
  rmSync(top, { recursive: true, force: true });
});

const getJson = async <T>(path: string): Promise<{ status: number; body: T }> => {
  const r = await fetch(new URL(path, srv.url));
  return { status: r.status, body: (await r.json()) as T };
};
const sweep = async () => {
  const r = await getJson<{ sweep: SweepResults }>("/api/sweep");
  assert.equal(r.status, 200);
  return r.body.sweep;
};
const withoutTime = ({ updated: _u, ...rest }: SweepResults) => rest;

test("GET /api/sweep: the sweep's results, as sweep.json holds them: 4 cells of 2 ended runs", async () => {
  const s = await sweep();
  const spec = JSON.parse(readFileSync(join(dir, "sweep-spec.json"), "utf8")) as { id: string };
  assert.equal(s.id, spec.id);
  assert.deepEqual(s.axes, ["train.lr", "model.d"]);
  assert.deepEqual(s.cells.map((c) => c.key), ["lr=0.001_d=16", "lr=0.001_d=32", "lr=0.003_d=16", "lr=0.003_d=32"]);
  assert.deepEqual(s.cells[1]!.overrides, { "train.lr": 0.001, "model.d": 32 });
  for (const c of s.cells) {
    assert.equal(c.runs.length, 2);
    assert.deepEqual(c.runs.map((r) => [r.seed, r.dir, r.steps, r.status]), [0, 1].map((seed) => [seed, `runs/${c.key}_seed=${seed}`, 200, "finished"]));
    assert.equal(c.n_ended, 2);
    assert.equal(c.p_drop, c.n_drop / 2);
    assert.deepEqual(c.p_drop_ci, wilson(c.n_drop, 2));
  }
  assert.deepEqual(withoutTime(s), withoutTime(JSON.parse(readFileSync(join(dir, "sweep.json"), "utf8")) as SweepResults));
  // unchanged files: the same results object (the time it was computed)
  assert.equal((await sweep()).updated, s.updated);
});

test("a sweep folder's runs are its runs/ folders, and every run route works on them", async () => {
  const r = await getJson<{ root: string; runs: Array<{ name: string; status: string; steps: number; stepsDone: number }> }>("/api/runs");
  assert.equal(r.body.root, join(dir, "runs"));
  assert.equal(r.body.runs.length, 8);
  assert.ok(r.body.runs.every((x) => x.status === "finished" && x.stepsDone === 200 && x.steps === 200), JSON.stringify(r.body.runs[0]));
  const m = await getJson<{ rows: unknown[] }>("/api/runs/lr=0.003_d=32_seed=1/metrics");
  assert.equal(m.status, 200);
  assert.equal(m.body.rows.length, 200);
  const a = await getJson<{ step: number }>("/api/runs/lr=0.003_d=32_seed=1/analysis/attention?step=200&opt=batch=8");
  assert.equal(a.status, 200);
  assert.equal(a.body.step, 200);
});

test("recomputed when a run's metrics or status change, or its folder is missing; always equal to a fresh sweepResults", async () => {
  const before = await sweep();
  const fresh = async () => {
    const s = await sweep();
    assert.deepEqual(withoutTime(s), withoutTime(sweepResults(dir)));
    return s;
  };
  // a drop appended to one run (read incrementally by the server)
  appendFileSync(join(dir, "runs", "lr=0.001_d=32_seed=1", "metrics.jsonl"), dropLines(200, 200));
  let s = await fresh();
  assert.notEqual(s.updated, before.updated);
  const c = s.cells[1]!;
  assert.equal(c.runs[1]!.steps, 400);
  assert.ok(c.runs[1]!.drop !== null && c.runs[1]!.drop > 300 && c.runs[1]!.drop < 360, `drop ${c.runs[1]!.drop}`);
  assert.equal(c.n_drop, 1);
  assert.equal(c.p_drop, 0.5);
  assert.deepEqual(c.p_drop_ci, wilson(1, 2));
  // Kaplan–Meier: the other seed is censored at 200, before the drop, so none is left at risk
  assert.deepEqual(c.survival_drop, [[0, 1], [c.runs[1]!.drop, 0]]);
  assert.deepEqual(s.cells[0], before.cells[0]); // the others untouched
  // a run that says it is running again: not ended, so out of P(drop)
  const st = join(dir, "runs", "lr=0.003_d=16_seed=0", "status.json");
  const saved = readFileSync(st, "utf8");
  writeFileSync(st, JSON.stringify({ status: "running", step: 200, pid: process.pid }));
  s = await fresh();
  assert.equal(s.cells[2]!.n_ended, 1);
  assert.equal(s.cells[2]!.runs[0]!.status, "running");
  writeFileSync(st, saved);
  // a run folder not there yet: queued
  const rd = join(dir, "runs", "lr=0.003_d=32_seed=0");
  renameSync(rd, `${rd}.away`);
  try {
    s = await fresh();
    assert.equal(s.cells[3]!.runs[0]!.status, "queued");
    assert.equal(s.cells[3]!.n_ended, 1);
  } finally {
    renameSync(`${rd}.away`, rd);
  }
  s = await fresh();
  assert.equal(s.cells[3]!.n_ended, 2);
  assert.equal(s.cells[2]!.n_ended, 2);
});
