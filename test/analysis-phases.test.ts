import { test } from "node:test";
import assert from "node:assert/strict";
import { detectPhases } from "../src/analysis/phases.js";
import { Rng } from "../src/data/rng.js";
import type { MetricsLine } from "../src/train/metrics.js";

/** initial fall to the copy level, plateau until `dropAt`, sigmoid drop to `low`; log-normal noise σ */
function curve(n: number, dropAt: number | null, sigma: number, seed: number, low = 0.004): MetricsLine[] {
  const rng = new Rng(seed);
  const copy = 0.3 * 2 / 9;
  const out: MetricsLine[] = [];
  for (let s = 1; s <= n; s++) {
    let logL = Math.log(copy) + Math.log(0.22 / copy) * Math.exp(-s / 60);
    if (dropAt !== null) logL += Math.log(low / copy) / (1 + Math.exp(-(s - dropAt) / 40));
    const loss = Math.exp(logL + sigma * rng.normal());
    out.push({ step: s, loss, loss_mask: loss / 0.3, loss_obs: 0.001, mask_abs: 0, lr: 0, ms: 1 });
  }
  return out;
}

test("phases: synthetic plateau and drop are found within a window, for several noise levels and seeds", async () => {
  for (const sigma of [0.05, 0.2, 0.4]) {
    for (const seed of [1, 2, 3]) {
      const ph = detectPhases(curve(6000, 3500, sigma, seed), 2, 0.3);
      assert.ok(ph.plateau, `σ=${sigma}: no plateau`);
      assert.ok(Math.abs(ph.plateau.onset - 150) < 150, `σ=${sigma} onset ${ph.plateau.onset}`);
      assert.ok(ph.plateau.end > 3250 && ph.plateau.end < 3550, `σ=${sigma} end ${ph.plateau.end}`);
      assert.ok(ph.drop && Math.abs(ph.drop.step - 3500) <= 60, `σ=${sigma} drop ${ph.drop?.step}`);
      assert.ok(Math.abs(ph.plateau.ratioToCopy - Math.exp(sigma * sigma / 2)) < 0.1, `ratio ${ph.plateau.ratioToCopy}`);
    }
  }
});

test("phases: no drop when the curve stays on the plateau; an early drop is still found", async () => {
  const flat = detectPhases(curve(4000, null, 0.2, 4), 2, 0.3);
  assert.ok(flat.plateau && flat.plateau.end > 3900);
  assert.equal(flat.drop, null);
  const early = detectPhases(curve(8000, 1200, 0.2, 5), 2, 0.3);
  assert.ok(early.drop && Math.abs(early.drop.step - 1200) <= 60, `drop ${early.drop?.step}`);
});

test("phases: a curve with no dwell level has no plateau", async () => {
  const lines: MetricsLine[] = [];
  for (let s = 1; s <= 3000; s++) lines.push({ step: s, loss: Math.exp(-s / 300), loss_mask: 1, loss_obs: 1, mask_abs: 0, lr: 0, ms: 1 });
  const ph = detectPhases(lines, 2, 0.3);
  assert.equal(ph.plateau, null);
  assert.equal(ph.drop, null);
});
