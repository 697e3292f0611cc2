// Statistics over seeds with censoring: Kaplan–Meier with Greenwood and
// log-log intervals against a textbook data set, Wilson intervals, and a
// sweep cell built from synthetic runs with known answers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AbruptError } from "../src/errors.js";
import { alignedAtDrop, cellResult, type SweepRun } from "../src/sweep/results.js";
import { kaplanMeier, survivalAt, wilson } from "../src/sweep/stats.js";

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

// Freireich et al. (1963), 6-MP arm: + = censored. The Kaplan–Meier values,
// Greenwood standard errors and log-log bands are the ones every survival
// textbook (and R's survfit(conf.type = "log-log")) prints for it.
const SIX_MP = "6 6 6 6+ 7 9+ 10 10+ 11+ 13 16 17+ 19+ 20+ 22 23 25+ 32+ 32+ 34+ 35+"
  .split(" ").map((x) => ({ t: parseFloat(x), event: !x.endsWith("+") }));

test("Kaplan–Meier: the 6-MP data give the textbook curve, bands and median", () => {
  const km = kaplanMeier(SIX_MP);
  assert.deepEqual(km.points.map((p) => p.t), [6, 7, 10, 13, 16, 22, 23]);
  const want = [0.8571, 0.8067, 0.7529, 0.6902, 0.6275, 0.5378, 0.4482];
  km.points.forEach((p, i) => close(p.s, want[i]!, 5e-5, `S(${p.t})`));
  assert.deepEqual(km.points.map((p) => p.atRisk), [21, 17, 15, 12, 11, 7, 6]);
  close(km.points[0]!.lo, 0.620, 5e-4, "lower band at 6");
  close(km.points[0]!.hi, 0.952, 5e-4, "upper band at 6");
  assert.equal(km.median, 23);
  // the band's upper curve crosses 1/2 first at 13; the lower one never does (as R reports: 13, NA)
  assert.equal(km.medianCi[0], 13);
  assert.equal(km.medianCi[1], null);
  assert.equal(survivalAt(km, 5), 1);
  close(survivalAt(km, 12), 0.7529, 5e-5, "S(12)");
  assert.equal(km.n, 21);
  assert.equal(km.events, 9);
});

test("Kaplan–Meier: no events gives S = 1 and no median; all events reach 0", () => {
  const none = kaplanMeier([{ t: 5, event: false }, { t: 9, event: false }]);
  assert.equal(none.points.length, 0);
  assert.equal(none.median, null);
  const all = kaplanMeier([1, 2, 3, 4].map((t) => ({ t, event: true })));
  assert.deepEqual(all.points.map((p) => p.s), [0.75, 0.5, 0.25, 0]);
  assert.equal(all.median, 2);
});

test("Wilson interval: known values", () => {
  const [lo, hi] = wilson(8, 10);
  close(lo, 0.4902, 1e-4, "lo");
  close(hi, 0.9433, 1e-4, "hi");
  const [a, b] = wilson(0, 16);
  assert.equal(a, 0);
  close(b, 0.1936, 1e-4, "0/16 hi");
  const [c, d] = wilson(16, 16);
  close(c, 0.8064, 1e-4, "16/16 lo");
  assert.equal(d, 1);
});

test("a sweep cell from synthetic runs: censored runs count in the curves, not in P(drop)", () => {
  const run = (seed: number, steps: number, plateauEnd: number | null, drop: number | null, status: string): SweepRun => ({
    seed, dir: `runs/x_seed=${seed}`, steps, plateau_end: plateauEnd, drop, seconds: steps / 100,
    plateau_end_seconds: plateauEnd === null ? null : plateauEnd / 100, drop_seconds: drop === null ? null : drop / 100, status,
  });
  const c = cellResult("x", { "train.lr": 1 }, [
    run(0, 1500, 800, 1000, "finished"),
    run(1, 2500, 1500, 2000, "finished"),
    run(2, 3000, null, null, "finished"), // censored at max_steps
    run(3, 500, null, null, "running"), // still going: censored at 500
    run(4, 0, null, null, "queued"), // not started: left out
  ]);
  assert.equal(c.n_ended, 3);
  assert.equal(c.n_drop, 2);
  close(c.p_drop!, 2 / 3, 1e-12, "p_drop");
  const [lo, hi] = wilson(2, 3);
  assert.deepEqual(c.p_drop_ci, [lo, hi]);
  // drop: at 1000, 3 at risk (run 3 left at 500) -> 2/3; at 2000, 2 at risk -> 1/3
  assert.deepEqual(c.survival_drop, [[0, 1], [1000, 0.666667], [2000, 0.333333]]);
  assert.equal(c.median_drop, 2000);
  assert.deepEqual(c.survival, [[0, 1], [800, 0.666667], [1500, 0.333333]]);
  assert.equal(c.median_plateau_end, 1500);
  assert.deepEqual(c.survival_drop_seconds, [[0, 1], [10, 0.666667], [20, 0.333333]]);
  assert.equal(c.median_drop_seconds, 20);
});

test("aligned at the drop: each run once per bin, the mean and its 95% band over runs, bins with one run left out", () => {
  const dir = mkdtempSync(join(tmpdir(), "abrupt-aligned-"));
  try {
    // run 0 drops at 1000, run 1 at 2000, run 2 never (left out); the field is 1 in run 0, 3 in run 1,
    // logged every 50 steps (two values per 100-step bin, which count as one)
    const mk = (seed: number, drop: number | null, value: number, steps: number): SweepRun => {
      const d = join(dir, "runs", `x_seed=${seed}`);
      mkdirSync(d, { recursive: true });
      const lines = [];
      for (let s = 1; s <= steps; s++) lines.push(JSON.stringify({ step: s, loss: 0.1, loss_mask: 0.1, loss_obs: 0.1, mask_abs: 0.3, lr: 1e-3, ms: 1, ...(s % 50 === 0 ? { x: value + (s % 100 === 0 ? 0.5 : -0.5) } : {}) }));
      writeFileSync(join(d, "metrics.jsonl"), lines.join("\n") + "\n");
      return { seed, dir: `runs/x_seed=${seed}`, steps, plateau_end: null, drop, seconds: 1, plateau_end_seconds: null, drop_seconds: null, status: "finished" };
    };
    const runs = [mk(0, 1000, 1, 1500), mk(1, 2000, 3, 2500), mk(2, null, 100, 2500)];
    const cell = cellResult("x", {}, runs);
    const [al] = alignedAtDrop(dir, [cell], "x");
    assert.equal(al!.runs, 2);
    // offsets both runs cover: run 0 from -1000 to +500, run 1 from -2000 to +500 (its earlier bins have one run)
    assert.deepEqual(al!.points.map((p) => p.offset), Array.from({ length: 16 }, (_, i) => -1000 + 100 * i));
    const se = Math.sqrt(((1 - 2) ** 2 + (3 - 2) ** 2) / 1 / 2);
    for (const p of al!.points.slice(1, -1)) {
      assert.equal(p.n, 2);
      assert.equal(p.mean, 2, `bin ${p.offset}: each run's two values average to its own value first`);
      close(p.lo, 2 - 1.96 * se, 1e-6, "lo");
      close(p.hi, 2 + 1.96 * se, 1e-6, "hi");
    }
    // the edge bins: run 0's first bin holds only step 50 (0.5), its last only step 1500 (1.5)
    assert.equal(al!.points[0]!.mean, (0.5 + 3) / 2);
    assert.equal(al!.points.at(-1)!.mean, (1.5 + 3.5) / 2);
    assert.throws(() => alignedAtDrop(dir, [cell], "nope"), (e: Error) => e instanceof AbruptError && /--aligned nope: no run of the sweep logged a number "nope"/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
