// The GPT against PyTorch and its checkpoint format. test/fixtures/gpt_tiny.*
// were made by tools/make_gpt_fixture.py (minGPT's module tree in torch,
// float64): a converted minGPT state_dict without our metadata (heads from
// the caller), the logits, loss and every gradient on a batch, and greedy
// completions, for softmax and linear attention on the same weights.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { getKernels } from "../src/kernels/index.js";
import { GPT_DEFAULT, Gpt } from "../src/model/gpt.js";
import { checkpointFamily, loadGptCheckpoint, saveGptCheckpoint } from "../src/store/gpt-checkpoint.js";
import { getFloat32, readSafetensors, writeSafetensors } from "../src/store/safetensors.js";
import { paramCount } from "../src/model/params.js";
import { saveCheckpoint } from "../src/store/checkpoint.js";

const fixtures = fileURLToPath(new URL("../../test/fixtures/", import.meta.url));
const stFile = join(fixtures, "gpt_tiny.safetensors");

interface Expected {
  logits: number[];
  loss: number;
  completions: number[];
  min_gap: number;
}
interface Fixture {
  config: Record<string, number>;
  B: number;
  T: number;
  inputs: number[];
  targets: number[];
  prompts: number[];
  softmax: Expected;
  linear: Expected;
}
const fx = JSON.parse(readFileSync(join(fixtures, "gpt_tiny.json"), "utf8")) as Fixture;

/** max_i |a_i - b_i| / max_i |b_i| (floor 1e-3: gradients that are mathematically zero compare as noise) */
function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let scale = 1e-3;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / scale);
  return worst;
}

const made: string[] = [];
after(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "abrupt-gpt-"));
  made.push(d);
  return d;
};

describe("gpt parity with PyTorch (minGPT)", () => {
  for (const backend of ["ref", "cpu"] as const) {
    for (const attn of ["softmax", "linear"] as const) {
      it(`${backend}, ${attn}: logits, loss and every gradient to 1e-4; greedy completions exactly`, async () => {
        const ck = loadGptCheckpoint(stFile, { heads: 2, attn });
        assert.deepEqual(ck.cfg, { ...fx.config, attn });
        const st = readSafetensors(stFile);
        const want = fx[attn];
        const model = new Gpt(ck.cfg, getKernels(backend));
        model.setParams(ck.params);
        const { B, T } = fx;
        const logits = model.forward(Int32Array.from(fx.inputs), B, T);
        const errLogits = maxRelErr(logits, want.logits);
        assert.ok(errLogits < 1e-4, `logits: max relative error ${errLogits}`);
        model.zeroGrad();
        const loss = model.loss(Int32Array.from(fx.targets));
        assert.ok(Math.abs(loss.value - want.loss) <= 1e-5 * want.loss, `loss ${loss.value} vs ${want.loss}`);
        model.backward(loss.dlogits!);
        for (const s of model.specs) {
          const err = maxRelErr(model.grads.subarray(s.offset, s.offset + s.size), getFloat32(st, `grad.${attn}.${s.name}`));
          assert.ok(err < 1e-4, `grad of ${s.name}: max relative error ${err}`);
        }
        const P = 10, steps = 9;
        const got = await model.generate(Int32Array.from(fx.prompts), fx.prompts.length / P, P, steps);
        assert.deepEqual([...got], want.completions);
      });
    }
  }
});

describe("gpt checkpoints", () => {
  it("a minGPT file is recognised by its names; the config is inferred (heads, attention from the caller)", () => {
    assert.equal(checkpointFamily(stFile), "gpt");
    assert.equal(checkpointFamily(fileURLToPath(new URL("../../test/fixtures/bert_tiny.safetensors", import.meta.url))), "bert");
    const ck = loadGptCheckpoint(stFile);
    assert.deepEqual(ck.cfg, { vocab: 405, block: 19, L: 2, H: 2, d: 32, ff: 128, lnEps: 1e-5, attn: "softmax" });
    assert.equal(loadGptCheckpoint(stFile, { heads: 4 }).cfg.H, 4);
    assert.throws(() => loadGptCheckpoint(stFile, { heads: 5 }), /heads 5 does not divide d=32/);
    assert.throws(() => loadGptCheckpoint(fileURLToPath(new URL("../../test/fixtures/bert_tiny.safetensors", import.meta.url))), /missing tensor "transformer\.wte\.weight" \(not a GPT checkpoint\)/);
  });

  it("round trip with our config in the metadata, minGPT's mask buffers written", () => {
    const cfg = { ...GPT_DEFAULT, d: 16, ff: 64, block: 11, attn: "linear" as const };
    const model = new Gpt(cfg, getKernels("ref"));
    model.init(3);
    const file = join(tmp(), "g.safetensors");
    saveGptCheckpoint(file, cfg, model.params, { step: "7" });
    const back = loadGptCheckpoint(file);
    assert.deepEqual(back.cfg, cfg);
    assert.deepEqual(back.params, model.params);
    assert.deepEqual(back.meta, { step: "7" });
    const st = readSafetensors(file);
    const mask = getFloat32(st, "transformer.h.1.attn.bias");
    assert.deepEqual(st.tensors.get("transformer.h.1.attn.bias")!.shape, [1, 1, 11, 11]);
    assert.equal(mask[0 * 11 + 0], 1);
    assert.equal(mask[0 * 11 + 1], 0);
    assert.equal(mask[10 * 11 + 10], 1);
    assert.equal(mask.reduce((a, x) => a + x, 0), (11 * 12) / 2);
    assert.throws(() => loadGptCheckpoint(file, { heads: 4 }), /heads 4 requested, the checkpoint's config has H=2/);
    assert.throws(() => loadGptCheckpoint(file, { attn: "softmax" }), /attention "softmax" requested/);
    assert.throws(() => saveGptCheckpoint(file, cfg, model.params.subarray(1), {}), /params has/);
    assert.throws(() => saveGptCheckpoint(file, cfg, model.params, { "abrupt.config": "x" }), /reserved/);
    // a BERT file is not mistaken for a GPT one, and the other way round
    const bert = join(tmp(), "b.safetensors");
    const bcfg = { vocab: 2002, positions: 16, L: 1, H: 2, d: 8, ff: 16, lnEps: 1e-12 };
    saveCheckpoint(bert, bcfg, new Float32Array(paramCount(bcfg)), {});
    assert.equal(checkpointFamily(bert), "bert");
  });

  it("a missing, misshapen or unexpected tensor is an error naming it", () => {
    const st = readSafetensors(stFile);
    const dir = tmp();
    const variant = (edit: (name: string) => [string, readonly number[]] | null, extra: Array<[string, number[]]> = []) => {
      const tensors = [];
      for (const [name, t] of st.tensors) {
        if (name.startsWith("grad.")) continue;
        const e = edit(name);
        if (!e) continue;
        const n = e[1].reduce((a, b) => a * b, 1);
        tensors.push([e[0], { dtype: "F32" as const, shape: e[1], data: getFloat32(st, name).subarray(0, n) }] as const);
      }
      for (const [name, shape] of extra) tensors.push([name, { dtype: "F32" as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) }] as const);
      const f = join(dir, `v${tensors.length}-${Math.random()}.safetensors`);
      writeSafetensors(f, tensors.map(([n, t]) => [n, t]), { format: "pt" });
      return f;
    };
    const keep = (name: string): [string, readonly number[]] => [name, st.tensors.get(name)!.shape];
    assert.throws(() => loadGptCheckpoint(variant((n) => (n === "transformer.h.1.mlp.c_proj.bias" ? null : keep(n)))), /missing tensor "transformer\.h\.1\.mlp\.c_proj\.bias" \(expected shape \[32\]\)/);
    assert.throws(() => loadGptCheckpoint(variant((n) => (n === "lm_head.weight" ? null : keep(n)))), /missing tensor "lm_head\.weight" \(expected shape \[405,32\]\)/);
    assert.throws(() => loadGptCheckpoint(variant((n) => (n === "transformer.h.0.attn.c_attn.weight" ? [n, [95, 32]] : keep(n)))), /tensor "transformer\.h\.0\.attn\.c_attn\.weight": expected shape \[96,32\], found \[95,32\]/);
    assert.throws(() => loadGptCheckpoint(variant(keep, [["transformer.h.0.attn.masked_bias", [1]]])), /unexpected tensor "transformer\.h\.0\.attn\.masked_bias"/);
    // a file without its mask buffers loads (they are only for PyTorch); other namespaces are ignored
    const ok = loadGptCheckpoint(variant((n) => (n.endsWith(".attn.bias") ? null : keep(n)), [["optimizer.step", [1]]]), { heads: 2 });
    assert.deepEqual(ok.params, loadGptCheckpoint(stFile).params);
  });
});
