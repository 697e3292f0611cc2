// analyze component's verdict on synthetic component runs with known curves:
// no plateau, plateau then drop, plateau with no drop yet, and the drop's
// shift against the normal run's.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { componentOutput } from "../src/analysis/component.js";
import type { RunHandle } from "../src/store/run.js";
import { resolveConfig } from "../src/train/config.js";
import type { MetricsLine } from "../src/train/metrics.js";

const made: string[] = [];
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });
const C = 1 / 9; // r/9 at rank 1

/** L_mask: from 3·C down to C by step 100, then at C until `leave`, then a fall to 0.05·C over 300 steps; `direct`: straight to 0.05·C. */
function lines(n: number, leave: number | null, direct = false): MetricsLine[] {
  const out: MetricsLine[] = [];
  for (let s = 1; s <= n; s++) {
    let lm = direct ? C * Math.max(0.05, 3 * Math.exp(-s / 20)) : s < 100 ? C * (3 - (2 * s) / 100) : C;
    if (!direct && leave !== null && s > leave) lm = C * Math.max(0.05, 1 - (0.95 * (s - leave)) / 300);
    out.push({ step: s, loss: lm * 0.2, loss_mask: lm, loss_obs: 1e-4, mask_abs: 0, lr: 1e-3, ms: 1 });
  }
  return out;
}

function handle(metrics: MetricsLine[], initFrom: string): RunHandle {
  const cfg = resolveConfig("cpu", undefined, { train: { init_from: initFrom, train_only: ["attn"] } });
  return { dir: "/nonexistent/run", cfg, metrics, steps: [] };
}

test("component verdicts: no plateau, plateau then drop, plateau with no drop yet", () => {
  const missing = join(mkdtempSync(join(tmpdir(), "abrupt-comp-")), "gone");
  made.push(join(missing, ".."));
  const direct = componentOutput(handle(lines(2000, null, true), `${missing}@100`)).json as { verdict: string; normal: unknown; dropShift: unknown };
  assert.equal(direct.verdict, "no plateau");
  assert.equal(direct.normal, null);
  assert.equal(direct.dropShift, null);
  const drop = componentOutput(handle(lines(3000, 1000), `${missing}@100`));
  assert.equal((drop.json as { verdict: string }).verdict, "plateau, then drop");
  assert.match(drop.findings[0]!, /plateau, then drop .*drop at step 1\d{3}/);
  assert.match(drop.findings[1]!, /not found: no comparison/);
  const flat = componentOutput(handle(lines(3000, null), `${missing}@100`)).json as { verdict: string };
  assert.equal(flat.verdict, "plateau, no drop yet");
});
