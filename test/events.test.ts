// The one definition of a run's events (src/train/events.ts), and that
// summary.json and `analyze phases` report the same plateau and drop.
import { test } from "node:test";
import assert from "node:assert/strict";
import { detectPhases } from "../src/analysis/phases.js";
import { Rng } from "../src/data/rng.js";
import { EventTracker, detectEvents } from "../src/train/events.js";
import type { MetricsLine } from "../src/train/metrics.js";
import { summarizeDrop } from "../src/train/summary.js";

const C = 2 / 9; // copy level r/9 at rank 2

/** L_mask: a fall from 3·C to C by `onset`, the plateau, then (if `leave`) a linear fall to `to`·C over `span` steps. */
function curve(n: number, opt: { onset?: number; leave?: number | null; span?: number; to?: number; noise?: number; seed?: number; ms?: number }): MetricsLine[] {
  const { onset = 200, leave = null, span = 400, to = 0.05, noise = 0.05, seed = 1, ms = 10 } = opt;
  const rng = new Rng(seed);
  const out: MetricsLine[] = [];
  for (let s = 1; s <= n; s++) {
    let lm = s < onset ? C * (3 - (2 * s) / onset) : C;
    if (leave !== null && s > leave) lm = C * Math.max(to, 1 - ((1 - to) * (s - leave)) / span);
    lm *= 1 + noise * rng.normal();
    out.push({ step: s, loss: lm * 0.3, loss_mask: lm, loss_obs: 1e-4, mask_abs: 0, lr: 1e-3, ms });
  }
  return out;
}

test("events: plateau start, plateau end and drop of a synthetic curve, within the averaging window", () => {
  for (const seed of [1, 2, 3]) {
    const ev = detectEvents(curve(3000, { leave: 1500, seed }), 2);
    assert.ok(ev.plateau_start !== null && ev.plateau_start > 150 && ev.plateau_start < 260, `start ${ev.plateau_start}`);
    // the average (window 50) leaves C·(1 ± 0.15) when the raw curve is at ~0.85·C, ~70 steps after 1500
    assert.ok(ev.plateau_end !== null && ev.plateau_end > 1500 && ev.plateau_end < 1620, `end ${ev.plateau_end}`);
    // and falls below 0.2·C when the raw curve is ~25 steps past 0.2·C (step 1500 + 0.8/0.95·400 ≈ 1837)
    assert.ok(ev.drop !== null && ev.drop > 1837 && ev.drop < 1900, `drop ${ev.drop}`);
    assert.ok(ev.left !== null && ev.left > ev.plateau_end! && ev.left < ev.drop!);
    assert.equal(ev.steps, 3000);
    // seconds are the sum of the steps' ms
    assert.ok(Math.abs(ev.seconds - 30) < 1e-9);
    assert.ok(Math.abs(ev.drop_seconds! - ev.drop! / 100) < 1e-9);
  }
});

test("events: a run still on the plateau is censored (no plateau_end, no drop); one that left but did not drop has a plateau_end", () => {
  const flat = detectEvents(curve(2000, {}), 2);
  assert.ok(flat.plateau_start !== null);
  assert.equal(flat.plateau_end, null);
  assert.equal(flat.drop, null);
  assert.ok(flat.last_on_plateau! > 1900);
  const second = detectEvents(curve(3000, { leave: 1500, to: 0.4 }), 2); // a second plateau at 0.4·C
  assert.ok(second.plateau_end !== null && second.plateau_end > 1500 && second.plateau_end < 1660, `end ${second.plateau_end}`);
  assert.equal(second.drop, null);
  // an excursion below the band that comes back is not the plateau's end
  const lines = curve(3000, {});
  for (const l of lines) if (l.step > 1000 && l.step <= 1200) l.loss_mask *= 0.7;
  const back = detectEvents(lines, 2);
  assert.equal(back.plateau_end, null);
  assert.equal(back.left, null);
});

test("events: a curve that never reaches the copy level has no plateau and no drop", () => {
  const lines = curve(2000, {}).map((l) => ({ ...l, loss_mask: 5 * C }));
  const ev = detectEvents(lines, 2);
  assert.equal(ev.plateau_start, null);
  assert.equal(ev.drop, null);
});

test("events: fed step by step (the trainer) they equal the offline result, and the drop fires once", () => {
  const lines = curve(3000, { leave: 1200, seed: 7 });
  const t = new EventTracker(2);
  let drops = 0, lefts = 0;
  for (const l of lines) {
    const h = t.push(l.step, l.loss_mask, l.ms);
    drops += h.drop ? 1 : 0;
    lefts += h.left ? 1 : 0;
  }
  assert.equal(drops, 1);
  assert.equal(lefts, 1);
  assert.deepEqual(t.result(), detectEvents(lines, 2));
});

test("summary.json and analyze phases agree on the plateau and the drop (a short run included)", () => {
  for (const lines of [curve(3000, { leave: 1500 }), curve(300, {}), curve(300, { onset: 100, leave: 150, span: 60 })]) {
    const s = summarizeDrop(lines, 2);
    const p = detectPhases(lines, 2, 0.3);
    assert.equal(s.plateau?.start ?? null, p.plateau?.onset ?? null);
    assert.equal(s.plateau?.end ?? null, p.plateau?.end ?? null);
    assert.equal(s.drop?.step ?? null, p.drop?.step ?? null);
    assert.deepEqual(s.events, p.events);
  }
  // the short run still on its plateau: no drop, and the plateau reaches the last step
  const short = detectPhases(curve(300, {}), 2, 0.3);
  assert.equal(short.drop, null);
  assert.ok(short.plateau && short.plateau.end > 290 && !short.plateau.ended);
});
