// The attention intervention (src/model/attn-bias.ts): its targets against a
// by-coordinates computation from the batch's mask, its effect on the
// pattern (c·A on the targets, renormalised, only in the chosen layers), the
// model's backward with it on against finite differences, cpu == ref, and
// the errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type DataConfig, sampleBatch } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";
import { loadCpuKernels } from "../src/kernels/cpu.js";
import { refKernels } from "../src/kernels/ref.js";
import { fillAttnBias } from "../src/model/attn-bias.js";
import { Bert } from "../src/model/bert.js";
import { type ModelConfig, paramSpecs } from "../src/model/params.js";

const m = 3, n = 4, T = m * n;
const data: DataConfig = { m, n, rank: 2, pMask: 0.4, prec: 2, factor: "uniform", clamp: false };
const cfg: ModelConfig = { vocab: 2002, positions: T, L: 2, H: 2, d: 8, ff: 16, lnEps: 1e-12 };

/** Is key k a target of query q: observed, and in q's row or column (by coordinates, from the mask). */
function isTarget(hidden: Uint8Array, b: number, q: number, k: number): boolean {
  const [qi, qj] = [Math.floor(q / n), q % n];
  const [ki, kj] = [Math.floor(k / n), k % n];
  return !hidden[b * T + k] && (ki === qi || kj === qj);
}

test("targets: the observed cells of the query's row and column, its own cell when observed", () => {
  const B = 6;
  const batch = sampleBatch(new Rng(1), data, B);
  const out = new Float32Array(B * T * T).fill(7);
  fillAttnBias(out, batch.tokens, B, m, n, 0.5);
  let on = 0;
  for (let b = 0; b < B; b++) {
    for (let q = 0; q < T; q++) {
      for (let k = 0; k < T; k++) {
        const v = out[(b * T + q) * T + k]!;
        assert.equal(v, isTarget(batch.hidden, b, q, k) ? 0.5 : 0, `b${b} q${q} k${k}`);
        if (v) on++;
      }
      // own cell: a target exactly when observed
      assert.equal(out[(b * T + q) * T + q] !== 0, !batch.hidden[b * T + q]);
    }
  }
  assert.ok(on > 0 && on < B * T * T);
});

function setup(seed: number, kernels = refKernels) {
  const model = new Bert(cfg, kernels);
  model.init(seed, 0.3);
  const batch = sampleBatch(new Rng(seed + 10), data, 3);
  return { model, batch };
}

test("the pattern of a biased layer is c·A on the targets, renormalised; other layers are untouched", () => {
  const { model, batch } = setup(2);
  const { B } = batch;
  const c = 2.5;
  model.forward(batch.tokens, B, T);
  const plain0 = model.act("blocks.0.attn.pattern").slice();
  const plain1 = model.act("blocks.1.attn.pattern").slice();
  model.setAttnBias({ c, layers: [1], m, n });
  model.forward(batch.tokens, B, T);
  assert.deepEqual(model.act("blocks.0.attn.pattern"), plain0, "layer 0 not in the list");
  assert.notDeepEqual(model.act("blocks.1.attn.pattern"), plain1);
  // layer 0 biased: its input does not depend on the bias, so compare with the plain pattern
  model.setAttnBias({ c, layers: [0], m, n });
  model.forward(batch.tokens, B, T);
  const biased = model.act("blocks.0.attn.pattern");
  const { H } = cfg;
  let worst = 0;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let q = 0; q < T; q++) {
        const r = ((b * H + h) * T + q) * T;
        let z = 0;
        for (let k = 0; k < T; k++) z += plain0[r + k]! * (isTarget(batch.hidden, b, q, k) ? c : 1);
        for (let k = 0; k < T; k++) {
          const want = (plain0[r + k]! * (isTarget(batch.hidden, b, q, k) ? c : 1)) / z;
          worst = Math.max(worst, Math.abs(biased[r + k]! - want));
        }
      }
    }
  }
  assert.ok(worst < 1e-6, `worst ${worst}`);
  // off again: the plain pattern
  model.setAttnBias(null);
  model.forward(batch.tokens, B, T);
  assert.deepEqual(model.act("blocks.0.attn.pattern"), plain0);
});

test("backward with the bias on (all layers, c = 4) matches finite differences for every parameter group", () => {
  const { model, batch } = setup(3);
  const { B, tokens, targets } = batch;
  model.setAttnBias({ c: 4, layers: null, m, n });
  const lossOf = () => {
    const out = model.forward(tokens, B, T);
    let s = 0;
    for (let i = 0; i < out.length; i++) s += (out[i]! - targets[i]!) ** 2;
    return s / out.length;
  };
  model.zeroGrad();
  const out = model.forward(tokens, B, T);
  const dout = new Float32Array(out.length);
  refKernels.mse(dout, out, targets, out.length, 1 / out.length);
  model.backward(dout);
  const g = model.grads.slice();
  const p0 = model.params.slice();
  const rng = new Rng(99);
  for (const group of ["blocks.0.attn", "blocks.1.attn", "blocks.0.mlp", "pos_emb", "tok_emb", "emb_ln"]) {
    const u = new Float32Array(p0.length);
    for (const s of paramSpecs(cfg).filter((x) => x.group === group)) for (let i = s.offset; i < s.offset + s.size; i++) u[i] = rng.normal();
    if (group === "tok_emb") u.fill(0, 0, cfg.d);
    let gu = 0, uu = 0;
    for (let i = 0; i < u.length; i++) { gu += g[i]! * u[i]!; uu += u[i]! * u[i]!; }
    const eps = 1e-2 / Math.sqrt(uu);
    const at = (sgn: number) => {
      for (let i = 0; i < u.length; i++) model.params[i] = p0[i]! + sgn * eps * u[i]!;
      return lossOf();
    };
    const fd = (at(1) - at(-1)) / (2 * eps);
    model.params.set(p0);
    assert.ok(Math.abs(gu) > 1e-4, `${group}: gradient is (nearly) zero: ${gu}`);
    assert.ok(Math.abs(fd - gu) <= 2e-2 * Math.abs(gu) + 1e-5, `${group}: analytic ${gu} vs finite difference ${fd}`);
  }
});

test("cpu model == ref model with the bias on (outputs and gradients)", () => {
  const a = setup(4);
  const b = setup(4, loadCpuKernels());
  for (const { model } of [a, b]) model.setAttnBias({ c: 0.2, layers: [0, 1], m, n });
  const run = ({ model }: typeof a) => {
    model.zeroGrad();
    const out = model.forward(a.batch.tokens, a.batch.B, T);
    const dout = new Float32Array(out.length);
    model.kernels.mse(dout, out, a.batch.targets, out.length, 1 / out.length);
    model.backward(dout);
    return { out: out.slice(), g: model.grads.slice() };
  };
  const ra = run(a), rb = run(b);
  const rel = (x: Float32Array, y: Float32Array) => {
    let num = 0, den = 0;
    for (let i = 0; i < x.length; i++) { num += (x[i]! - y[i]!) ** 2; den += y[i]! ** 2; }
    return Math.sqrt(num / den);
  };
  assert.ok(rel(rb.out, ra.out) < 1e-5, `outputs ${rel(rb.out, ra.out)}`);
  assert.ok(rel(rb.g, ra.g) < 1e-4, `gradients ${rel(rb.g, ra.g)}`);
});

test("bad intervention settings are one clear error", () => {
  const { model, batch } = setup(5);
  assert.throws(() => model.setAttnBias({ c: 0, layers: null, m, n }), /c must be a positive number/);
  assert.throws(() => model.setAttnBias({ c: NaN, layers: null, m, n }), /c must be a positive number/);
  assert.throws(() => model.setAttnBias({ c: 2, layers: [2], m, n }), (e: Error) => e instanceof AbruptError && /layer 2 is outside 0\.\.1/.test(e.message));
  model.setAttnBias({ c: 2, layers: null, m: 4, n: 4 });
  assert.throws(() => model.forward(batch.tokens, batch.B, T), /4×4 matrices have 16 cells, the input has 12 tokens/);
});
