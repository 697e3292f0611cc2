// The analyses the dashboard serves come from the experiment registry: each
// experiment's `dashboard` field (default: per checkpoint, or over the run
// for steps "none"), plus the dashboard's own "sample".
import { test } from "node:test";
import assert from "node:assert/strict";
import { EXPERIMENTS } from "../src/analysis/index.js";
import { PER_RUN, PER_STEP, cacheName, isKind, isPerRun } from "../src/server/compute.js";

test("served analyses: the registry's, as each experiment's dashboard field says", () => {
  assert.deepEqual([...PER_STEP].sort(), ["ablate", "attention", "copy", "embeddings", "patch", "probe", "sample"]);
  assert.deepEqual([...PER_RUN], ["progress"]);
  for (const e of EXPERIMENTS) {
    const as = e.dashboard ?? (e.steps === "none" ? "run" : "step");
    assert.equal(isKind(e.name), as !== false, e.name);
    assert.equal(isPerRun(e.name), as === "run", e.name);
  }
  assert.ok(!isKind("nnm") && !isKind("bogus") && isKind("sample"));
  const req = { dir: "/x", step: 4, seed: 0, opts: {} };
  assert.equal(cacheName({ ...req, kind: "progress" }), "progress.json");
  assert.equal(cacheName({ ...req, kind: "attention" }), "attention-step-4.json");
});
