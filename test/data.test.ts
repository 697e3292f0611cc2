import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../src/data/rng.js";
import {
  MASK_ID, VOCAB, batchFromMatrices, sampleBatch, structuredMask, tokenOf, valueOf, validateDataConfig,
  type DataConfig,
} from "../src/data/matrix.js";
import { AbruptError } from "../src/errors.js";

const base: DataConfig = { m: 7, n: 7, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };

test("tokenisation: ids 1..2001 for -10..10 at step 0.01, MASK is 0", () => {
  assert.equal(tokenOf(-10), 1);
  assert.equal(tokenOf(10), VOCAB - 1);
  assert.equal(tokenOf(0), 1001);
  assert.equal(tokenOf(0.44), 1045);
  assert.equal(tokenOf(-0.24), 977);
  for (const v of [-9.99, -1.23, -0.01, 0.01, 0.5, 3.14, 9.99]) assert.equal(valueOf(tokenOf(v)), v);
  assert.ok(Number.isNaN(valueOf(MASK_ID)));
});

test("tokenisation: out-of-range values fail unless clamped", () => {
  assert.throws(() => tokenOf(10.01), (e: unknown) => e instanceof AbruptError && /outside the vocabulary range/.test(e.message));
  assert.throws(() => tokenOf(-11), AbruptError);
  assert.throws(() => tokenOf(NaN), AbruptError);
  assert.equal(tokenOf(12.5, true), VOCAB - 1);
  assert.equal(tokenOf(-12.5, true), 1);
});

test("sampler: same seed gives the same batch; another seed does not", () => {
  const a = sampleBatch(new Rng(5), base, 16);
  const b = sampleBatch(new Rng(5), base, 16);
  const c = sampleBatch(new Rng(6), base, 16);
  assert.deepEqual(a.tokens, b.tokens);
  assert.deepEqual(a.targets, b.targets);
  assert.notDeepEqual(a.targets, c.targets);
});

test("sampler: targets are rounded, rank-r, in range; tokens encode observed targets", () => {
  const cfg = { ...base, rank: 1 };
  const bt = sampleBatch(new Rng(1), cfg, 64);
  const { m, n, T } = bt;
  for (let b = 0; b < bt.B; b++) {
    for (let i = 0; i < T; i++) {
      const v = bt.targets[b * T + i]!;
      assert.ok(Math.abs(v) <= 1 + 1e-9);
      assert.ok(Math.abs(Math.round(v * 100) - v * 100) < 1e-3, `target ${v} not rounded to 2 decimals`);
      if (bt.hidden[b * T + i]) assert.equal(bt.tokens[b * T + i], MASK_ID);
      else assert.equal(bt.tokens[b * T + i], tokenOf(v));
    }
    // rank 1: every 2×2 minor vanishes up to the rounding (|err| ≤ 0.005 per entry)
    const X = (i: number, j: number) => bt.targets[b * T + i * n + j]!;
    for (let i = 1; i < m; i++) for (let j = 1; j < n; j++) {
      assert.ok(Math.abs(X(0, 0) * X(i, j) - X(0, j) * X(i, 0)) < 0.021);
    }
  }
});

test("sampler: the hidden fraction matches p_mask", () => {
  const bt = sampleBatch(new Rng(2), base, 400); // 19600 cells, sd of the fraction ≈ 0.0033
  let h = 0;
  for (const x of bt.hidden) h += x;
  assert.ok(Math.abs(h / bt.hidden.length - 0.3) < 0.015, `hidden fraction ${h / bt.hidden.length}`);
});

test("sampler: gaussian and laplace factors have the stated scales", () => {
  // for rank 1, E[X²] = E[u²]E[v²]: uniform 1/9, gaussian 0.25², laplace (2·0.25²)²
  const meanSq = (factor: DataConfig["factor"]) => {
    const bt = sampleBatch(new Rng(9), { ...base, rank: 1, factor, prec: 2 }, 2000);
    let s = 0;
    for (const v of bt.targets) s += v * v;
    return s / bt.targets.length;
  };
  assert.ok(Math.abs(meanSq("uniform") - 1 / 9) < 0.01);
  assert.ok(Math.abs(meanSq("gaussian") - 0.0625) < 0.008);
  assert.ok(Math.abs(meanSq("laplace") - 0.015625) < 0.004);
});

test("structured mask: rows 3 and 6 hidden except (3,1) and (6,5)", () => {
  const mask = structuredMask(7, 7, { rows: [3, 6], keep: [[3, 1], [6, 5]] });
  let hidden = 0;
  for (const x of mask) hidden += x;
  assert.equal(hidden, 12);
  assert.equal(mask[3 * 7 + 1], 0);
  assert.equal(mask[6 * 7 + 5], 0);
  assert.equal(mask[3 * 7 + 0], 1);
  const bt = sampleBatch(new Rng(3), base, 5, undefined, mask);
  for (let b = 0; b < 5; b++) for (let t = 0; t < 49; t++) assert.equal(bt.hidden[b * 49 + t], mask[t]);
  assert.throws(() => structuredMask(7, 7, { rows: [7] }), AbruptError);
});

test("config validation: rank, p_mask, prec", () => {
  assert.throws(() => validateDataConfig({ ...base, rank: 8 }), /rank/);
  assert.throws(() => validateDataConfig({ ...base, pMask: 1 }), /p_mask/);
  assert.throws(() => validateDataConfig({ ...base, prec: 3 }), /prec/);
});

test("batchFromMatrices: null is hidden; ragged input fails", () => {
  const bt = batchFromMatrices([[[0.5, null], [null, -0.25]]]);
  assert.deepEqual([...bt.hidden], [0, 1, 1, 0]);
  assert.deepEqual([...bt.tokens], [tokenOf(0.5), 0, 0, tokenOf(-0.25)]);
  assert.throws(() => batchFromMatrices([[[1, 2], [3]]]), /row 1 has 1 cells/);
  assert.throws(() => batchFromMatrices([[[1, 2]], [[1, 2], [3, 4]]]), /matrix 1 has 2 rows/);
});
