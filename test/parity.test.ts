// Parity with PyTorch: test/fixtures/bert_tiny.safetensors was made by
// tools/make_fixtures.py (HF BertModel semantics in torch, float64): random
// weights in the paper's names, a batch, the outputs, the MSE loss and the
// gradient of every parameter. Both backends must match them to 1e-5 of each
// tensor's scale (measured: at most 1.1e-6, the cpu backend's token-embedding
// gradient; outputs 4e-7, loss 2e-7).
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { getKernels } from "../src/kernels/index.js";
import { Bert } from "../src/model/bert.js";
import { loadCheckpoint, pytorchLayout } from "../src/store/checkpoint.js";
import { getFloat32, getInt32, readSafetensors } from "../src/store/safetensors.js";

const fixture = fileURLToPath(new URL("../../test/fixtures/bert_tiny.safetensors", import.meta.url));

const TOL = 1e-5;

/**
 * max_i |a_i - b_i| / max_i |b_i|: the error relative to the tensor's scale
 * (a gradient that is mathematically zero, like the key bias's, is compared
 * to an absolute floor of 2e-7 instead: both sides are rounding noise, 6e-8
 * measured).
 */
function maxRelErr(a: Float32Array, b: Float32Array): number {
  let scale = 2e-7 / TOL;
  for (const x of b) scale = Math.max(scale, Math.abs(x));
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / scale);
  return worst;
}

for (const backend of ["ref", "cpu"] as const) {
  test(`${backend}: outputs, loss and every gradient match PyTorch to 1e-5`, () => {
    const st = readSafetensors(fixture);
    const ck = loadCheckpoint(fixture);
    const model = new Bert(ck.cfg, getKernels(backend));
    model.params.set(ck.params);
    const B = Number(st.meta["fixture.B"]), T = Number(st.meta["fixture.T"]);
    const tokens = getInt32(st, "fixture.tokens");
    const targets = getFloat32(st, "fixture.targets");
    const out = model.forward(tokens, B, T);
    assert.ok(maxRelErr(out, getFloat32(st, "fixture.outputs")) < TOL, `outputs: ${maxRelErr(out, getFloat32(st, "fixture.outputs"))}`);
    const dout = new Float32Array(B * T);
    model.zeroGrad();
    const sse = model.kernels.mse(dout, out, targets, B * T, 1 / (B * T));
    const loss = getFloat32(st, "fixture.loss")[0]!;
    assert.ok(Math.abs(sse / (B * T) - loss) <= TOL * loss, `loss ${sse / (B * T)} vs ${loss}`);
    model.backward(dout);
    let checked = 0;
    for (const slot of pytorchLayout(ck.cfg)) {
      const name = (slot.backbone ? "_backbone." : "") + slot.name;
      const want = getFloat32(st, "grad." + name);
      const got = model.grads.subarray(slot.offset, slot.offset + want.length);
      const err = maxRelErr(got, want);
      assert.ok(err < TOL, `grad of ${name}: max relative error ${err}`);
      checked++;
    }
    assert.equal(checked, 4 + 16 * ck.cfg.L + 2);
  });
}
