// The GPT variant: backward against finite differences (ref, both attention
// kinds), cpu against ref, causality, init, hooks, freezing, greedy
// generation against the growing-sequence definition, the sequences and the
// metrics.
import assert from "node:assert/strict";
import { describe, it, test } from "node:test";
import { type DataConfig, sampleBatch } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import {
  GPT_SEP_ID, GPT_VOCAB, allocGptBatch, gptBatchFromMatrices, gptPrompts, gptTokenOf, gptValueOf, sampleGptBatch,
} from "../src/data/sequence.js";
import { AbruptError } from "../src/errors.js";
import { getKernels } from "../src/kernels/index.js";
import { refKernels } from "../src/kernels/ref.js";
import type { AttentionKind } from "../src/kernels/types.js";
import { GPT_DEFAULT, Gpt, type GptConfig, gptParamCount, gptParamSpecs } from "../src/model/gpt.js";
import { gptLossMetrics, scoreGeneration } from "../src/train/gpt-metrics.js";
import { assertClose } from "./helpers/numeric.js";

const tiny = (attn: AttentionKind): GptConfig => ({ vocab: 13, block: 9, L: 2, H: 2, d: 8, ff: 16, lnEps: 1e-5, attn });
const B = 2, T = 7;

function setup(attn: AttentionKind, seed = 1) {
  const cfg = tiny(attn);
  const model = new Gpt(cfg, refKernels);
  model.init(seed, 0.3); // larger than 0.02 so that every path matters
  const rng = new Rng(seed + 100);
  const p = model.params;
  for (const s of gptParamSpecs(cfg)) {
    // non-trivial LayerNorm parameters and biases
    if (/ln_|bias/.test(s.name)) for (let i = s.offset; i < s.offset + s.size; i++) p[i] = p[i]! + 0.3 * rng.normal();
  }
  const tokens = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocab));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i === 3 ? -1 : rng.int(cfg.vocab)));
  return { cfg, model, tokens, targets, rng };
}

function lossOf(model: Gpt, tokens: Int32Array, targets: Int32Array): number {
  model.forward(tokens, B, T);
  return model.loss(targets, false).value;
}

function gradOf(model: Gpt, tokens: Int32Array, targets: Int32Array): Float32Array {
  model.zeroGrad();
  model.forward(tokens, B, T);
  model.backward(model.loss(targets).dlogits!);
  return model.grads.slice();
}

for (const attn of ["softmax", "linear"] as const) {
  test(`gpt (${attn}): backward matches finite differences for every parameter group`, () => {
    const { cfg, model, tokens, targets, rng } = setup(attn);
    const g = gradOf(model, tokens, targets);
    const p0 = model.params.slice();
    const specs = gptParamSpecs(cfg);
    for (const group of new Set(specs.map((s) => s.group))) {
      const u = new Float32Array(p0.length);
      for (const s of specs.filter((x) => x.group === group)) for (let i = s.offset; i < s.offset + s.size; i++) u[i] = rng.normal();
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

  test(`gpt (${attn}): cpu equals ref (logits, loss, every gradient)`, () => {
    const { cfg, model, tokens, targets } = setup(attn, 4);
    const cpu = new Gpt(cfg, getKernels("cpu"));
    cpu.setParams(model.params);
    const gr = gradOf(model, tokens, targets);
    const lr = model.loss(targets, false).value;
    const gc = gradOf(cpu, tokens, targets);
    const lc = cpu.loss(targets, false).value;
    assertClose(cpu.act("logits"), model.act("logits"), "logits", 1e-5);
    assert.ok(Math.abs(lc - lr) <= 1e-5 * lr, `loss ${lc} vs ${lr}`);
    for (const s of gptParamSpecs(cfg)) {
      assertClose(gc.subarray(s.offset, s.offset + s.size), gr.subarray(s.offset, s.offset + s.size), `grad ${s.name}`, 1e-4);
    }
  });

  test(`gpt (${attn}): the logits at position t do not depend on the tokens after t`, () => {
    const { cfg, model, tokens } = setup(attn, 5);
    const a = model.forward(tokens, B, T).slice();
    const t2 = tokens.slice();
    for (let b = 0; b < B; b++) for (let t = 4; t < T; t++) t2[b * T + t] = (t2[b * T + t]! + 1) % cfg.vocab;
    const b2 = model.forward(t2, B, T);
    for (let b = 0; b < B; b++) {
      const V = cfg.vocab;
      assert.deepEqual(b2.subarray(b * T * V, (b * T + 4) * V), a.subarray(b * T * V, (b * T + 4) * V), "positions before the change");
      assert.notDeepEqual(b2.subarray((b * T + 4) * V, (b * T + T) * V), a.subarray((b * T + 4) * V, (b * T + T) * V));
    }
  });
}

test("gpt: init is minGPT's (N(0, 0.02), c_proj N(0, 0.02/√(2L)), zero biases, LayerNorm 1/0)", () => {
  const cfg = { ...GPT_DEFAULT, L: 3, d: 64, ff: 256 };
  const model = new Gpt(cfg, refKernels);
  model.init(3);
  const p = model.params;
  for (const s of model.specs) {
    const v = p.subarray(s.offset, s.offset + s.size);
    const std = Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length);
    if (s.name.endsWith(".bias")) assert.ok(v.every((x) => x === 0), s.name);
    else if (/\.ln_[12f]\./.test(s.name)) assert.ok(v.every((x) => x === 1), s.name);
    else {
      const want = s.name.endsWith("c_proj.weight") ? 0.02 / Math.sqrt(6) : 0.02;
      assert.ok(Math.abs(std - want) < 0.1 * want, `${s.name}: std ${std}, want ${want}`);
    }
  }
  // the default size: L2 H2 d256 ff 4d, vocab 405, block 99
  assert.deepEqual(GPT_DEFAULT, { vocab: 405, block: 99, L: 2, H: 2, d: 256, ff: 1024, lnEps: 1e-5, attn: "softmax" });
  const names = gptParamSpecs(GPT_DEFAULT).map((s) => `${s.name} [${s.shape}]`);
  assert.deepEqual(names.slice(0, 4), ["transformer.wte.weight [405,256]", "transformer.wpe.weight [99,256]", "transformer.h.0.ln_1.weight [256]", "transformer.h.0.ln_1.bias [256]"]);
  assert.ok(names.includes("transformer.h.1.attn.c_attn.weight [768,256]"));
  assert.ok(names.includes("transformer.h.1.mlp.c_fc.weight [1024,256]"));
  assert.ok(names.includes("transformer.h.1.mlp.c_proj.weight [256,1024]"));
  assert.equal(names[names.length - 1], "lm_head.weight [405,256]");
  assert.equal(gptParamCount(GPT_DEFAULT), 405 * 256 * 2 + 99 * 256 + 2 * (12 * 256 * 256 + 13 * 256) + 2 * 256);
});

test("gpt: hooks (names, shapes, read and replace), and an unknown hook is an error", () => {
  const { model, tokens } = setup("softmax", 6);
  const names = model.hookNames();
  assert.equal(names[0], "embed.out");
  assert.ok(names.includes("blocks.1.attn.pattern") && names.includes("blocks.0.resid_mid") && names.includes("ln_f.out"));
  assert.equal(names[names.length - 1], "logits");
  const seen: string[] = [];
  const offs = names.map((n) => model.addHook(n, (a, info) => {
    seen.push(n);
    assert.equal(a.length, info.shape.reduce((x, y) => x * y, 1), n);
  }));
  const base = model.forward(tokens, B, T).slice();
  assert.deepEqual(seen, names);
  offs.forEach((off) => off());
  // a uniform causal pattern in layer 0 changes what follows
  model.addHook("blocks.0.attn.pattern", (a, info) => {
    const [, , TT] = info.shape as [number, number, number, number];
    for (let r = 0; r < a.length / TT; r++) for (let k = 0; k < TT; k++) a[r * TT + k] = k <= r % TT ? 1 / ((r % TT) + 1) : 0;
  });
  const changed = model.forward(tokens, B, T);
  assert.notDeepEqual(changed, base);
  assert.deepEqual(model.act("blocks.0.attn.pattern").subarray(0, 3), Float32Array.of(1, 0, 0));
  model.clearHooks();
  assert.deepEqual(model.forward(tokens, B, T), base);
  assert.throws(() => model.addHook("blocks.0.ln1", () => {}), AbruptError);
  assert.throws(() => model.act("readout"), /unknown hook/);
});

test("gpt: frozen groups get no gradient, the others do; ln covers ln_f", () => {
  const { model, tokens, targets } = setup("softmax", 7);
  model.setFrozen(["attn", "ln", "tok_emb"]);
  const g = gradOf(model, tokens, targets);
  for (const s of model.specs) {
    const v = g.subarray(s.offset, s.offset + s.size);
    const zero = v.every((x) => x === 0);
    const frozen = /attn|ln_|wte/.test(s.name);
    assert.equal(zero, frozen, `${s.name} (${s.group})`);
  }
  assert.deepEqual(model.frozenGroups().sort(), ["blocks.0.attn", "blocks.0.ln1", "blocks.0.ln2", "blocks.1.attn", "blocks.1.ln1", "blocks.1.ln2", "ln_f", "tok_emb"]);
  assert.throws(() => model.setFrozen(["readout"]), /unknown parameter group "readout"/);
});

test("gpt: greedy generation equals argmax over growing sequences (ref and cpu)", async () => {
  const { cfg, model } = setup("softmax", 8);
  const P = 4, steps = 4, Bn = 3;
  const rng = new Rng(9);
  const prompts = Int32Array.from({ length: Bn * P }, () => rng.int(cfg.vocab));
  const want = new Int32Array(Bn * steps);
  for (let b = 0; b < Bn; b++) {
    const seq = Array.from(prompts.subarray(b * P, (b + 1) * P));
    for (let s = 0; s < steps; s++) {
      const logits = model.forward(Int32Array.from(seq), 1, seq.length);
      const row = logits.subarray((seq.length - 1) * cfg.vocab, seq.length * cfg.vocab);
      const best = row.indexOf(Math.max(...row));
      want[b * steps + s] = best;
      seq.push(best);
    }
  }
  assert.deepEqual(await model.generate(prompts, Bn, P, steps), want);
  const cpu = new Gpt(cfg, getKernels("cpu"));
  cpu.setParams(model.params);
  assert.deepEqual(await cpu.generate(prompts, Bn, P, steps), want);
  await assert.rejects(model.generate(prompts, Bn, P, 7), /block size/);
});

// ---------------------------------------------------------------------------
// sequences and metrics

const data: DataConfig = { m: 3, n: 4, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };

describe("gpt sequences", () => {
  it("tokens: 1 + round(100 v) + 200; |v| > 2 is an error unless clamped; value tokens decode", () => {
    assert.equal(gptTokenOf(-2), 1);
    assert.equal(gptTokenOf(0), 201);
    assert.equal(gptTokenOf(0.29), 230); // 0.29 * 100 = 28.999999999999996: rounded, not truncated
    assert.equal(gptTokenOf(2), 401);
    assert.throws(() => gptTokenOf(2.01), /outside the GPT vocabulary's range \[-2, 2\] \(use --clamp/);
    assert.equal(gptTokenOf(-3.5, true), 1);
    for (const id of [1, 57, 201, 401]) assert.equal(gptTokenOf(gptValueOf(id)), id);
    for (const id of [0, 402, 403, GPT_SEP_ID, -1]) assert.ok(Number.isNaN(gptValueOf(id)), String(id));
  });

  it("a batch is [masked X, SEP, X]; inputs and targets are the sequence shifted; the matrices are the BERT's", () => {
    const g = sampleGptBatch(new Rng(5), data, 4);
    const bert = sampleBatch(new Rng(5), data, 4);
    const { cells, S, T } = g;
    assert.deepEqual([cells, S, T], [12, 25, 24]);
    assert.deepEqual(g.values, bert.targets);
    assert.deepEqual(g.hidden, bert.hidden);
    let hidden = 0;
    for (let b = 0; b < 4; b++) {
      const s = g.seq.subarray(b * S, (b + 1) * S);
      assert.equal(s[cells], GPT_SEP_ID);
      for (let i = 0; i < cells; i++) {
        const v = g.values[b * cells + i]!;
        assert.equal(s[cells + 1 + i], gptTokenOf(v));
        assert.equal(s[i], g.hidden[b * cells + i] ? 0 : gptTokenOf(v));
        hidden += g.hidden[b * cells + i]!;
      }
      assert.deepEqual(g.inputs.subarray(b * T, (b + 1) * T), s.subarray(0, T));
      assert.deepEqual(g.targets.subarray(b * T, (b + 1) * T), s.subarray(1));
    }
    assert.ok(hidden > 0 && hidden < 4 * cells);
    assert.deepEqual(gptPrompts(g).subarray(0, cells + 1), g.seq.subarray(0, cells + 1));
    // refilling a batch buffer gives the same batch
    assert.deepEqual(sampleGptBatch(new Rng(5), data, 4, allocGptBatch(4, 3, 4)).seq, g.seq);
  });

  it("values beyond ±2 are an error unless clamp; user matrices tokenise with MASK where hidden", () => {
    const wide: DataConfig = { ...data, rank: 3, m: 5, n: 5 };
    assert.throws(() => { for (let s = 0; s < 20; s++) sampleGptBatch(new Rng(s), { ...wide, pMask: 0 }, 32); }, /outside the GPT vocabulary/);
    const ok = sampleGptBatch(new Rng(1), { ...wide, clamp: true }, 32);
    assert.ok(ok.seq.every((t) => t >= 0 && t < GPT_VOCAB));
    const u = gptBatchFromMatrices([[[0.5, null], [-1, 2]]]);
    assert.deepEqual([...u.seq], [251, 0, 101, 401, GPT_SEP_ID, 251, 0, 101, 401]);
    assert.throws(() => gptBatchFromMatrices([[[2.5]]]), /use --clamp/);
  });

  it("metrics: losses by part of the sequence; generation scores with non-value tokens left out of the MSE", () => {
    const g = gptBatchFromMatrices([[[0.5, null], [-1, null]]]);
    g.values[1] = 0.2; // the true values of the hidden cells
    g.values[3] = -0.3;
    g.seq[5 + 1] = gptTokenOf(0.2);
    g.seq[5 + 3] = gptTokenOf(-0.3);
    // positions 0..3 predict the prompt and SEP, 4..7 the cells
    const rowLoss = Float32Array.of(1, 1, 1, 1, 2, 4, 6, 8);
    const lm = gptLossMetrics(rowLoss, g);
    assert.deepEqual(lm, { loss: 3, loss_prompt: 1, loss_answer: 5, loss_mask: 6, loss_obs: 4 });
    // generated: cell 0 right, cell 1 off by 0.1, cell 2 SEP (no value), cell 3 right
    const gen = Int32Array.of(gptTokenOf(0.5), gptTokenOf(0.3), GPT_SEP_ID, gptTokenOf(-0.3));
    const m = scoreGeneration(gen, g);
    assert.equal(m.acc, 0.5);
    assert.equal(m.acc_obs, 0.5);
    assert.equal(m.acc_mask, 0.5);
    assert.ok(Math.abs(m.mse_mask - 0.01 / 2) < 1e-8); // values are float32
    assert.equal(m.mse_obs, 0);
    assert.ok(Math.abs(m.mse - 0.01 / 3) < 1e-8);
    assert.equal(m.nonvalue, 0.25);
    assert.equal(m.nonvalue_mask, 0);
  });
});
