// The model against finite differences (ref backend, float32 with a
// directional-derivative check per parameter group), hooks and freezing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { refKernels } from "../src/kernels/ref.js";
import { Bert } from "../src/model/bert.js";
import { type ModelConfig, paramSpecs } from "../src/model/params.js";
import { Rng } from "../src/data/rng.js";
import { AbruptError } from "../src/errors.js";

const cfg: ModelConfig = { vocab: 2002, positions: 12, L: 2, H: 2, d: 8, ff: 16, lnEps: 1e-12 };
const B = 2, T = 6;

function setup(seed = 1) {
  const model = new Bert(cfg, refKernels);
  model.init(seed, 0.3); // larger weights than 0.02 so every path matters
  const rng = new Rng(seed + 100);
  // non-trivial layernorm parameters
  for (const s of paramSpecs(cfg)) {
    if (/ln/.test(s.name)) for (let i = s.offset; i < s.offset + s.size; i++) model.params[i] = model.params[i]! + 0.3 * rng.normal();
  }
  const tokens = new Int32Array(B * T);
  for (let i = 0; i < tokens.length; i++) tokens[i] = i % 4 === 0 ? 0 : 900 + rng.int(200);
  const targets = new Float32Array(B * T).map(() => rng.range(-1, 1));
  return { model, tokens, targets, rng };
}

function lossOf(model: Bert, tokens: Int32Array, targets: Float32Array): number {
  const out = model.forward(tokens, B, T);
  let s = 0;
  for (let i = 0; i < out.length; i++) s += (out[i]! - targets[i]!) ** 2;
  return s / out.length;
}

function gradOf(model: Bert, tokens: Int32Array, targets: Float32Array): Float32Array {
  model.zeroGrad();
  const out = model.forward(tokens, B, T);
  const dout = new Float32Array(out.length);
  refKernels.mse(dout, out, targets, out.length, 1 / out.length);
  model.backward(dout);
  return model.grads.slice();
}

test("backward matches finite differences for every parameter group", () => {
  const { model, tokens, targets, rng } = setup();
  const g = gradOf(model, tokens, targets);
  const p0 = model.params.slice();
  const groups = [...new Set(paramSpecs(cfg).map((s) => s.group))];
  for (const group of groups) {
    const specs = paramSpecs(cfg).filter((s) => s.group === group);
    const u = new Float32Array(p0.length);
    for (const s of specs) for (let i = s.offset; i < s.offset + s.size; i++) u[i] = rng.normal();
    if (group === "tok_emb") u.fill(0, 0, cfg.d); // the MASK row gets no gradient by design
    let gu = 0, uu = 0;
    for (let i = 0; i < u.length; i++) { gu += g[i]! * u[i]!; uu += u[i]! * u[i]!; }
    const eps = 1e-2 / Math.sqrt(uu);
    const at = (sgn: number) => {
      for (let i = 0; i < u.length; i++) model.params[i] = p0[i]! + sgn * eps * u[i]!;
      return lossOf(model, tokens, targets);
    };
    const fd = (at(1) - at(-1)) / (2 * eps);
    model.params.set(p0);
    assert.ok(Math.abs(gu) > 1e-4, `${group}: gradient is (nearly) zero: ${gu}`);
    assert.ok(Math.abs(fd - gu) <= 2e-2 * Math.abs(gu) + 1e-5, `${group}: analytic ${gu} vs finite difference ${fd}`);
  }
});

test("the MASK row of the token embedding gets no gradient; used rows do", () => {
  const { model, tokens, targets } = setup(2);
  const g = gradOf(model, tokens, targets);
  for (let c = 0; c < cfg.d; c++) assert.equal(g[c], 0);
  const row = tokens[1]!;
  let s = 0;
  for (let c = 0; c < cfg.d; c++) s += Math.abs(g[row * cfg.d + c]!);
  assert.ok(s > 0);
});

test("init: N(0, std) weights, zero biases, LayerNorm 1/0, MASK row zero", () => {
  const model = new Bert({ ...cfg, d: 64, ff: 128 }, refKernels);
  model.init(3);
  const p = model.paramViews;
  assert.ok(p.wte.subarray(0, 64).every((x) => x === 0));
  let s = 0, s2 = 0;
  const w = p.layers[0]!.fc1W;
  for (const x of w) { s += x; s2 += x * x; }
  const sd = Math.sqrt(s2 / w.length - (s / w.length) ** 2);
  assert.ok(Math.abs(sd - 0.02) < 0.002, `std ${sd}`);
  assert.ok(p.layers[1]!.ln2W.every((x) => x === 1) && p.layers[1]!.ln2B.every((x) => x === 0));
  assert.ok(p.layers[0]!.qkvB.every((x) => x === 0) && p.outB[0] === 0);
});

test("hooks: read, zero and replace activations; unknown names fail", () => {
  const { model, tokens } = setup(4);
  const base = model.forward(tokens, B, T).slice();
  // reading: the hook sees the same values act() returns after the pass
  let seen: Float32Array | null = null;
  const off = model.addHook("blocks.1.attn.pattern", (a, info) => {
    assert.deepEqual(info.shape, [B, cfg.H, T, T]);
    seen = a.slice();
  });
  model.forward(tokens, B, T);
  off();
  assert.deepEqual(seen, model.act("blocks.1.attn.pattern"));
  // rows of an attention pattern sum to 1
  const att = model.act("blocks.1.attn.pattern");
  for (let r = 0; r < B * cfg.H * T; r++) {
    let s = 0;
    for (let k = 0; k < T; k++) s += att[r * T + k]!;
    assert.ok(Math.abs(s - 1) < 1e-5);
  }
  // zeroing the attention output of layer 1 changes the outputs...
  model.addHook("blocks.1.attn.out", (a) => a.fill(0));
  const zeroed = model.forward(tokens, B, T).slice();
  model.clearHooks();
  assert.ok(zeroed.some((x, i) => Math.abs(x - base[i]!) > 1e-4));
  // ...and equals running with the attention projection and its bias zeroed
  const p0 = model.params.slice();
  model.paramViews.layers[1]!.projW.fill(0);
  model.paramViews.layers[1]!.projB.fill(0);
  const manual = model.forward(tokens, B, T).slice();
  model.params.set(p0);
  for (let i = 0; i < manual.length; i++) assert.ok(Math.abs(manual[i]! - zeroed[i]!) < 1e-6);
  // replacing a pattern with itself is a no-op; with uniform attention it is not
  model.addHook("blocks.0.attn.pattern", () => {});
  assert.deepEqual(model.forward(tokens, B, T), base);
  model.clearHooks();
  model.addHook("blocks.0.attn.pattern", (a) => a.fill(1 / T));
  const uni = model.forward(tokens, B, T).slice();
  model.clearHooks();
  assert.ok(uni.some((x, i) => Math.abs(x - base[i]!) > 1e-4));
  assert.throws(() => model.addHook("blocks.2.attn.pattern", () => {}), AbruptError);
  assert.throws(() => model.act("blocks.0.nope"), AbruptError);
  assert.equal(model.hookNames().length, 2 + 12 * cfg.L + 1);
});

test("freezing: frozen groups get no gradient, others do", () => {
  const { model, tokens, targets } = setup(5);
  model.setFrozen(["attn", "tok_emb"]);
  const g = gradOf(model, tokens, targets);
  for (const s of paramSpecs(cfg)) {
    const gs = g.subarray(s.offset, s.offset + s.size);
    const nz = gs.some((x) => x !== 0);
    if (/\.attn$/.test(s.group) || s.group === "tok_emb") assert.ok(!nz, `${s.name} should be frozen`);
    else if (s.group !== "pos_emb") assert.ok(nz, `${s.name} should have a gradient`);
  }
  // gradients of the unfrozen groups equal those of the unfrozen model
  model.setFrozen([]);
  const gAll = gradOf(model, tokens, targets);
  const s = paramSpecs(cfg).find((x) => x.name === "blocks.0.mlp.fc1.weight")!;
  assert.deepEqual(g.subarray(s.offset, s.offset + s.size), gAll.subarray(s.offset, s.offset + s.size));
  assert.throws(() => model.setFrozen(["blocks.7.attn"]), AbruptError);
  assert.throws(() => new Bert({ ...cfg, H: 3 }, refKernels), /must divide/);
});
