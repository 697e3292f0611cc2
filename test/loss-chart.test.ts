// The loss chart's progress-measure overlay (dashboard and report): the
// metrics rows' measure columns become their own series only when asked,
// and the chart with them is one data set "loss" over two panels.
import { test } from "node:test";
import assert from "node:assert/strict";
import { renderSvg } from "../src/viz/plot.js";
import { MEASURES, SERIES, lossRows, lossSpec } from "../src/viz/specs.js";

// [step, L, L_mask, L_obs, eval L, attn progress, collapse, repetition]
const rows: Array<Array<number | null>> = Array.from({ length: 40 }, (_, i) => {
  const s = i + 1, on = s % 10 === 0;
  return [s, 0.1 / s, 0.2 / s, 0.01 / s, s % 5 === 0 ? 0.1 / s : null, on ? s / 100 : null, on ? 1 - s / 100 : null, on ? 0.5 : null];
});
const opts = { log: true, width: 400, height: 200, multiRun: false, copy: { loss: 0.02, loss_mask: 0.11 }, plateau: { onset: 5, end: 25 }, drop: 30, selected: 20 };

test("lossRows: the measures only when asked, unsmoothed, at the steps that logged them", () => {
  const plain = lossRows("r", rows, { smoothing: 20, series: SERIES, log: true, maxPoints: 1000 });
  assert.equal(plain.length, 40 * 3 + 8);
  assert.ok(plain.every((r) => (SERIES as readonly string[]).includes(r.series)));
  const withM = lossRows("r", rows, { smoothing: 20, series: [...SERIES, MEASURES[0], MEASURES[2]], log: true, maxPoints: 1000 });
  const attn = withM.filter((r) => r.series === MEASURES[0]);
  assert.deepEqual(attn.map((r) => [r.step, r.value]), [[10, 0.1], [20, 0.2], [30, 0.3], [40, 0.4]]);
  assert.equal(withM.filter((r) => r.series === MEASURES[1]).length, 0, "collapse not asked for");
  assert.deepEqual(withM.filter((r) => r.series === MEASURES[2]).map((r) => r.value), [0.5, 0.5, 0.5, 0.5]);
  // old four-column rows (no measures logged): nothing to overlay
  const old = rows.map((r) => r.slice(0, 5));
  assert.equal(lossRows("r", old, { smoothing: 0, series: [...SERIES, ...MEASURES], log: true, maxPoints: 1000 }).length, 40 * 3 + 8);
});

test("lossSpec: one layered chart without measures; a measure strip (up to 1) under it with them; both render", async () => {
  const plain = lossSpec(lossRows("r", rows, { smoothing: 0, series: SERIES, log: true, maxPoints: 1000 }), opts) as unknown as Record<string, unknown>;
  assert.ok(Array.isArray(plain["layer"]) && !("vconcat" in plain));
  const m = lossSpec(lossRows("r", rows, { smoothing: 0, series: [...SERIES, ...MEASURES], log: true, maxPoints: 1000 }), opts) as unknown as Record<string, any>;
  assert.equal(m["data"].name, "loss");
  assert.equal(m["vconcat"].length, 2);
  const strip = m["vconcat"][1].layer.at(-1);
  assert.equal(strip.encoding.y.scale.domainMax, 1);
  assert.deepEqual(strip.transform[0].filter.oneOf, [...MEASURES]);
  const svg = await renderSvg(m as never);
  assert.match(svg, /progress measure/);
  assert.match(svg, /attention progress/);
  assert.match(await renderSvg(plain as never), /MSE/);
});
