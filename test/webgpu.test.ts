// The webgpu backend: every kernel equals ref within 1e-4 (relative, with
// the array's rms as floor), on views at odd offsets inside shared buffers
// with sentinels around them; a 20-step training run follows the cpu run's
// losses within 1e-3; device errors are one clear message.
//
// In CI this runs on lavapipe, the software Vulkan driver that
// scripts/install-vulkan.sh fetches (ABRUPT_WEBGPU_SOFTWARE=1, set below
// unless the caller chose: tools/gpu-check.sh sets 0 to use the real GPU).
// A missing adapter fails these tests; they never skip.

process.env.ABRUPT_WEBGPU_SOFTWARE ??= "1";

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, test } from "node:test";
import { fileURLToPath } from "node:url";
import { DeviceError } from "../src/errors.js";
import { refKernels as ref } from "../src/kernels/ref.js";
import type { F32 } from "../src/kernels/types.js";
import { assertClose as assertCloseTo, mulberry32, rand as randFrom } from "./helpers/numeric.js";
import { type GpuTensor, type KernelDef, type WebGpuKernels, loadWebGpuKernels } from "../src/kernels/webgpu.js";
import { loadCheckpoint } from "../src/store/checkpoint.js";
import { Gpt } from "../src/model/gpt.js";
import { loadGptCheckpoint } from "../src/store/gpt-checkpoint.js";
import { getFloat32, readSafetensors } from "../src/store/safetensors.js";
import { resolveConfig } from "../src/train/config.js";
import { readMetrics } from "../src/train/metrics.js";
import { listCheckpoints } from "../src/store/run.js";
import { train } from "../src/train/train.js";

let k: WebGpuKernels;
before(async () => {
  k = await loadWebGpuKernels();
});

// ---------------------------------------------------------------------------
// helpers

const rng = mulberry32(42);
const rand = (n: number, lo = -1, hi = 1): F32 => randFrom(rng, n, lo, hi);

/** Parity with ref: 1e-4 relative per element (see assertClose). */
function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, what: string, rtol = 1e-4): void {
  assertCloseTo(a, b, what, rtol);
}

/**
 * Host arrays packed into ONE GPU buffer, each at an odd offset with
 * sentinels between them (as parameter views share the parameter buffer).
 */
const PAD = 3;
const SENTINEL = 12345.5;
class Packed {
  readonly whole: GpuTensor;
  readonly views: GpuTensor[] = [];
  private spans: Array<[number, number]> = [];
  constructor(...arrays: F32[]) {
    const total = arrays.reduce((s, a) => s + a.length + PAD, PAD);
    const host = new Float32Array(total).fill(SENTINEL);
    let off = PAD;
    for (const a of arrays) {
      host.set(a, off);
      this.spans.push([off, a.length]);
      off += a.length + PAD;
    }
    this.whole = k.alloc(total);
    k.upload(this.whole, host);
    for (const [o, n] of this.spans) this.views.push(k.view(this.whole, o, n));
  }
  /** The arrays as they are now on the GPU; fails if anything wrote outside them. */
  async read(what: string): Promise<F32[]> {
    const host = await k.download(this.whole);
    let expectPad = 0;
    for (const [o, n] of this.spans) {
      for (let i = expectPad; i < o; i++) assert.equal(host[i], SENTINEL, `${what}: wrote outside its views (at ${i})`);
      expectPad = o + n;
    }
    for (let i = expectPad; i < host.length; i++) assert.equal(host[i], SENTINEL, `${what}: wrote after its views`);
    return this.spans.map(([o, n]) => host.slice(o, o + n));
  }
}

/** One host array on the GPU at an odd offset; returns the view and the packing. */
function put(a: F32): [GpuTensor, Packed] {
  const p = new Packed(a);
  return [p.views[0]!, p];
}
async function get(p: Packed, what: string): Promise<F32> {
  return (await p.read(what))[0]!;
}

// ---------------------------------------------------------------------------

describe("webgpu: adapter and memory", () => {
  it("finds an adapter (lavapipe unless ABRUPT_WEBGPU_SOFTWARE=0)", () => {
    assert.ok(k.adapterName.length > 0);
    if (process.env.ABRUPT_WEBGPU_SOFTWARE === "1") assert.ok(k.software, `expected the software adapter, got ${k.adapterName}`);
    console.log(`# webgpu adapter: ${k.adapterName}${k.software ? " (software)" : ""}`);
  });

  it("alloc is zero-filled; upload, view, zero, copy and download keep their order", async () => {
    const t = k.alloc(37);
    assert.deepEqual(await k.download(t), new Float32Array(37));
    const a = rand(37);
    k.upload(t, a);
    assert.deepEqual(await k.download(t), a);
    k.zero(k.view(t, 5, 7));
    const z = a.slice();
    z.fill(0, 5, 12);
    assert.deepEqual(await k.download(t), z);
    // a kernel, then an upload into its input, then a copy: each sees the one before
    const out = k.alloc(37);
    k.add(out, t, t, 37);
    k.upload(t, new Float32Array(37).fill(1));
    const c = k.alloc(40);
    k.copy(k.view(c, 3, 37), out, 37);
    const got = await k.download(c);
    for (let i = 0; i < 37; i++) assert.equal(got[3 + i], 2 * z[i]!);
    assert.deepEqual(await k.download(t), new Float32Array(37).fill(1));
    assert.throws(() => k.view(t, 30, 8), RangeError);
    assert.throws(() => k.upload(t, new Float32Array(38)), RangeError);
  });
});

describe("webgpu == ref (1e-4 relative)", () => {
  const shapes: Array<[number, number, number]> = [[37, 29, 19], [1, 33, 70], [65, 1, 40], [100, 70, 130]];
  for (const [M, N, K] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        it(`matmul ${M}x${N}x${K} transA=${transA} transB=${transB} alpha 0.7 beta 0.3`, async () => {
          const A = rand(M * K), B = rand(K * N), C = rand(M * N);
          const want = C.slice();
          ref.matmul(want, A, B, M, N, K, transA, transB, 0.7, 0.3);
          const p = new Packed(C, A, B);
          k.matmul(p.views[0]!, p.views[1]!, p.views[2]!, M, N, K, transA, transB, 0.7, 0.3);
          assertClose((await p.read("matmul"))[0]!, want, "matmul");
        });
      }
    }
  }

  for (const tile of [4, 8] as const) {
    it(`matmul with the GPU's ${tile}x${tile}-per-thread tiles (${16 * tile}x${16 * tile}), beta 0 ignores NaN in C`, async () => {
      const M = 150, N = 135, K = 77;
      const A = rand(M * K), B = rand(N * K);
      const want = new Float32Array(M * N);
      ref.matmul(want, A, B, M, N, K, false, true, 1, 0);
      const p = new Packed(new Float32Array(M * N).fill(NaN), A, B);
      k.matmulTile = tile;
      try {
        k.matmul(p.views[0]!, p.views[1]!, p.views[2]!, M, N, K, false, true, 1, 0);
      } finally {
        k.matmulTile = null;
      }
      assertClose((await p.read("matmul"))[0]!, want, "matmul");
    });
  }

  for (const tile of [null, 4, 8] as const) {
    it(`linearForward with vec4 loads (aligned views, K % 4 == 0, weight and bias in one buffer, tiles ${tile ?? "by adapter"})`, async () => {
      const N = 70, IC = 36, OC = 130;
      const inp = rand(N * IC), w = rand(OC * IC), b = rand(OC);
      const want = new Float32Array(N * OC);
      ref.linearForward(want, inp, w, b, N, IC, OC);
      const x = k.alloc(4 + N * IC), params = k.alloc(8 + OC * IC + OC), out = k.alloc(N * OC + 3);
      k.upload(k.view(x, 4, N * IC), inp);
      k.upload(k.view(params, 4, OC * IC), w);
      k.upload(k.view(params, 8 + OC * IC, OC), b);
      k.matmulTile = tile;
      try {
        k.linearForward(k.view(out, 0, N * OC), k.view(x, 4, N * IC), k.view(params, 4, OC * IC), k.view(params, 8 + OC * IC, OC), N, IC, OC);
      } finally {
        k.matmulTile = null;
      }
      const got = await k.download(out);
      assertClose(got.subarray(0, N * OC), want, "linearForward vec4");
      assert.deepEqual([...got.subarray(N * OC)], [0, 0, 0], "wrote after its view");
      const tm = tile ?? (k.software ? 2 : 4);
      assert.ok(k.compiledKernels().some((v) => v.startsWith(`matmul_nt_${16 * tm}_vec4|`)), k.compiledKernels().join(" "));
    });
  }

  it("linearForward (with and without bias) and linearBackward (weight and bias views in one buffer, accumulate)", async () => {
    const N = 21, IC = 13, OC = 17;
    const inp = rand(N * IC), w = rand(OC * IC), b = rand(OC);
    for (const withBias of [true, false]) {
      const want = new Float32Array(N * OC);
      ref.linearForward(want, inp, w, withBias ? b : null, N, IC, OC);
      const params = new Packed(w, b);
      const [x] = put(inp);
      const [o, op] = put(new Float32Array(N * OC));
      k.linearForward(o, x, params.views[0]!, withBias ? params.views[1]! : null, N, IC, OC);
      assertClose(await get(op, "linearForward"), want, `linearForward bias=${withBias}`);
    }
    const dout = rand(N * OC), dinp0 = rand(N * IC), dw0 = rand(OC * IC), db0 = rand(OC);
    const dinp = dinp0.slice(), dw = dw0.slice(), db = db0.slice();
    ref.linearBackward(dinp, dw, db, dout, inp, w, N, IC, OC, true);
    const grads = new Packed(dw0, db0);
    const acts = new Packed(dinp0, dout, inp);
    const [wg] = put(w);
    k.linearBackward(acts.views[0]!, grads.views[0]!, grads.views[1]!, acts.views[1]!, acts.views[2]!, wg, N, IC, OC, true);
    const [gw, gb] = await grads.read("linearBackward grads");
    assertClose((await acts.read("linearBackward dinp"))[0]!, dinp, "dinp");
    assertClose(gw!, dw, "dweight");
    assertClose(gb!, db, "dbias");
  });

  it("embeddingForward and embeddingBackward (repeated tokens, padding 0, dwte and dwpe in one buffer)", async () => {
    const B = 5, T = 7, C = 12, V = 11;
    const tokens = new Int32Array(B * T).map(() => Math.floor(rng() * 4) * 2); // repeats, some 0
    const wte = rand(V * C), wpe = rand(T * C + C);
    const want = new Float32Array(B * T * C);
    ref.embeddingForward(want, tokens, wte, wpe, B, T, C);
    const params = new Packed(wte, wpe);
    const [o, op] = put(new Float32Array(B * T * C));
    k.embeddingForward(o, tokens, params.views[0]!, params.views[1]!, B, T, C);
    assert.deepEqual(await get(op, "embeddingForward"), want);
    const dout = rand(B * T * C), dwte = rand(V * C), dwpe = rand(T * C + C);
    const grads = new Packed(dwte, dwpe);
    const [d] = put(dout);
    ref.embeddingBackward(dwte, dwpe, dout, tokens, B, T, C, 0);
    k.embeddingBackward(grads.views[0]!, grads.views[1]!, d, tokens, B, T, C, 0);
    const [gte, gpe] = await grads.read("embeddingBackward");
    assertClose(gte!, dwte, "dwte");
    assertClose(gpe!, dwpe, "dwpe");
    const bad = tokens.slice();
    bad[3] = V;
    assert.throws(() => k.embeddingForward(o, bad, params.views[0]!, params.views[1]!, B, T, C), /token 11 outside/);
  });

  for (const C of [40, 300]) {
    it(`layernormForward and layernormBackward (C=${C}; weight/bias and their gradients as views of one buffer)`, async () => {
      const N = 9;
      const inp = rand(N * C, -2, 3), w = rand(C), b = rand(C);
      const out = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
      ref.layernormForward(out, mean, rstd, inp, w, b, N, C, 1e-5);
      const params = new Packed(w, b);
      const acts = new Packed(new Float32Array(N * C), new Float32Array(N), new Float32Array(N), inp);
      const [go, gm, gr, gi] = acts.views as [GpuTensor, GpuTensor, GpuTensor, GpuTensor];
      k.layernormForward(go, gm, gr, gi, params.views[0]!, params.views[1]!, N, C, 1e-5);
      const [o2, m2, r2] = await acts.read("layernormForward");
      assertClose(o2!, out, "out");
      assertClose(m2!, mean, "mean");
      assertClose(r2!, rstd, "rstd");
      const dout = rand(N * C), dw = rand(C), db = rand(C);
      const dinp = new Float32Array(N * C);
      const grads = new Packed(dw.slice(), db.slice());
      ref.layernormBackward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
      const [gd] = put(dout);
      const [gdi, gdip] = put(new Float32Array(N * C));
      k.layernormBackward(gdi, grads.views[0]!, grads.views[1]!, gd, gi, params.views[0]!, gm, gr, N, C);
      assertClose(await get(gdip, "layernormBackward dinp"), dinp, "dinp");
      const [gw, gb] = await grads.read("layernormBackward grads");
      assertClose(gw!, dw, "dweight");
      assertClose(gb!, db, "dbias");
    });
  }

  for (const [B, T, C, H] of [[3, 7, 8, 2], [2, 49, 64, 4]] as const) {
    it(`attentionPattern, attentionApply, attentionBackward (B${B} T${T} C${C} H${H})`, async () => {
      const qkv = rand(B * T * 3 * C, -2, 2);
      const att = new Float32Array(B * H * T * T);
      ref.attentionPattern(att, qkv, B, T, C, H);
      const out = new Float32Array(B * T * C);
      ref.attentionApply(out, att, qkv, B, T, C, H);
      const acts = new Packed(qkv, new Float32Array(B * H * T * T), new Float32Array(B * T * C));
      const [gq, ga, go] = acts.views as [GpuTensor, GpuTensor, GpuTensor];
      k.attentionPattern(ga, gq, B, T, C, H);
      k.attentionApply(go, ga, gq, B, T, C, H);
      const [, a2, o2] = await acts.read("attention forward");
      assertClose(a2!, att, "att");
      assertClose(o2!, out, "out");
      const dout = rand(B * T * C);
      const dqkv = new Float32Array(B * T * 3 * C), datt = new Float32Array(B * H * T * T);
      ref.attentionBackward(dqkv, datt, dout, qkv, att, B, T, C, H);
      const g = new Packed(rand(B * T * 3 * C), new Float32Array(B * H * T * T), dout);
      k.attentionBackward(g.views[0]!, g.views[1]!, g.views[2]!, gq, ga, B, T, C, H);
      assertClose((await g.read("attentionBackward"))[0]!, dqkv, "dqkv");
    });
  }

  for (const [B, T, C, H] of [[3, 7, 8, 2], [2, 49, 64, 4]] as const) {
    it(`attentionPattern with a logit bias, then attentionBackward (B${B} T${T} C${C} H${H})`, async () => {
      const qkv = rand(B * T * 3 * C, -2, 2);
      const bias = rand(B * T * T, -2.5, 2.5);
      for (let i = 0; i < bias.length; i += 3) bias[i] = 0;
      const att = new Float32Array(B * H * T * T);
      ref.attentionPattern(att, qkv, B, T, C, H, bias);
      // qkv, att and the bias share one buffer (the bias is read-only beside the written att)
      const acts = new Packed(qkv, new Float32Array(B * H * T * T), bias);
      const [gq, ga, gb] = acts.views as [GpuTensor, GpuTensor, GpuTensor];
      k.attentionPattern(ga, gq, B, T, C, H, gb);
      const [, a2, b2] = await acts.read("attention forward with bias");
      assertClose(a2!, att, "att");
      assert.deepEqual(b2, bias, "bias unchanged");
      const dout = rand(B * T * C);
      const dqkv = new Float32Array(B * T * 3 * C), datt = new Float32Array(B * H * T * T);
      ref.attentionBackward(dqkv, datt, dout, qkv, att, B, T, C, H);
      const g = new Packed(rand(B * T * 3 * C), new Float32Array(B * H * T * T), dout);
      k.attentionBackward(g.views[0]!, g.views[1]!, g.views[2]!, gq, ga, B, T, C, H);
      assertClose((await g.read("attentionBackward after a biased pattern"))[0]!, dqkv, "dqkv");
    });
  }

  it("gelu forward and backward over [-8, 8], also in place (out = inp, dinp = dout)", async () => {
    const n = 3001;
    const x = rand(n, -8, 8), dout = rand(n);
    const y = new Float32Array(n), dx = new Float32Array(n);
    ref.geluForward(y, x, n);
    ref.geluBackward(dx, x, dout, n);
    const p = new Packed(x, new Float32Array(n), dout);
    const [gx, gy, gd] = p.views as [GpuTensor, GpuTensor, GpuTensor];
    k.geluForward(gy, gx, n);
    k.geluBackward(gd, gx, gd, n); // in place
    const [, y2, dx2] = await p.read("gelu");
    assertClose(y2!, y, "gelu");
    assertClose(dx2!, dx, "gelu backward");
    const [inplace, ip] = put(x);
    k.geluForward(inplace, inplace, n);
    assertClose(await get(ip, "gelu in place"), y, "gelu in place");
  });

  it("add (also in place), mse (gradient and sum), adam (3 steps)", async () => {
    const n = 1234;
    const a = rand(n), b = rand(n), sum = new Float32Array(n);
    ref.add(sum, a, b, n);
    const p = new Packed(a, b);
    k.add(p.views[0]!, p.views[0]!, p.views[1]!, n);
    assert.deepEqual((await p.read("add"))[0], sum);
    const pred = rand(n), target = rand(n), dpred = new Float32Array(n);
    const sse = ref.mse(dpred, pred, target, n, 1 / n);
    const m = new Packed(new Float32Array(n), pred, target, new Float32Array(1));
    k.mse(m.views[0]!, m.views[1]!, m.views[2]!, n, 1 / n, m.views[3]!);
    const [d2, , , s2] = await m.read("mse");
    assertClose(d2!, dpred, "dpred");
    assert.ok(Math.abs(s2![0]! - sse) <= 1e-5 * sse, `sse ${s2![0]} vs ${sse}`);
    const param = rand(n), grad = rand(n), mm = rand(n, -0.1, 0.1), vv = rand(n, 0, 0.01);
    const st = new Packed(param, grad, mm, vv);
    for (let step = 1; step <= 3; step++) {
      ref.adam(param, grad, mm, vv, n, 1e-3, 0.9, 0.999, 1e-8, step);
      k.adam(st.views[0]!, st.views[1]!, st.views[2]!, st.views[3]!, n, 1e-3, 0.9, 0.999, 1e-8, step);
    }
    const [p2, , m2, v2] = await st.read("adam");
    assertClose(p2!, param, "param");
    assertClose(m2!, mm, "m");
    assertClose(v2!, vv, "v");
    // AdamW (decoupled weight decay), then SGD with weight decay, on the same views
    ref.adam(param, grad, mm, vv, n, 1e-3, 0.9, 0.999, 1e-8, 4, 0.1);
    k.adam(st.views[0]!, st.views[1]!, st.views[2]!, st.views[3]!, n, 1e-3, 0.9, 0.999, 1e-8, 4, 0.1);
    assertClose((await st.read("adamw"))[0]!, param, "adamw param");
    ref.sgd(param, grad, n, 0.05, 0.01);
    k.sgd(st.views[0]!, st.views[1]!, n, 0.05, 0.01);
    assertClose((await st.read("sgd"))[0]!, param, "sgd param");
  });
});

// ---------------------------------------------------------------------------
// training

const made: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "abrupt-webgpu-"));
  made.push(d);
  return d;
};
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

// the reference run: cpu; ref where the native addon is missing (tools/gpu-check.sh sets it)
const REFERENCE = process.env.ABRUPT_WEBGPU_PARITY_WITH === "ref" ? "ref" : "cpu";

const tiny = (backend: "cpu" | "ref" | "webgpu", extra: Record<string, unknown> = {}) =>
  resolveConfig("cpu", undefined, {
    model: { L: 2, H: 2, d: 32, ff: 64, positions: 16 },
    data: { m: 4, n: 4, rank: 1, p_mask: 0.3 },
    train: { steps: 20, batch: 16, lr: 1e-3, warmup: 0, seed: 5, eval_every: 5, eval_batch: 32, ckpt_every: 10, ckpt_log: 0, backend, threads: 0, ...extra },
  });

test(`webgpu: a 20-step training run follows the ${REFERENCE} run (losses within 1e-3 relative, same seed)`, async () => {
  const a = tmp(), b = tmp();
  await train(tiny(REFERENCE), { outDir: a, quiet: true });
  await train(tiny("webgpu"), { outDir: b, quiet: true });
  const la = readMetrics(join(a, "metrics.jsonl")).lines;
  const lb = readMetrics(join(b, "metrics.jsonl")).lines;
  assert.equal(lb.length, 20);
  for (let i = 0; i < 20; i++) {
    for (const key of ["loss", "loss_mask", "loss_obs", "eval_loss"] as const) {
      const x = la[i]![key], y = lb[i]![key];
      if (x === undefined) continue;
      assert.ok(Math.abs(y! - x) <= 1e-3 * Math.abs(x), `step ${i + 1} ${key}: webgpu ${y} vs ${REFERENCE} ${x}`);
    }
  }
  // the loss moved: the test compares trajectories, not two copies of the init
  assert.ok(la[19]!.loss < 0.9 * la[0]!.loss, `${la[0]!.loss} → ${la[19]!.loss}`);
  const pa = loadCheckpoint(join(a, "checkpoints", "step-0000020.safetensors")).params;
  const pb = loadCheckpoint(join(b, "checkpoints", "step-0000020.safetensors")).params;
  assertClose(pb, pa, "parameters after 20 steps", 1e-3);
});

test(`webgpu: with the attention intervention (c 3 from step 4, layer 1) and the progress measures every 3 steps, a run follows ${REFERENCE}`, async () => {
  const extra = { steps: 9, eval_every: 3, ckpt_every: 0, attn_bias: { c: 3, from: 4, layers: [1] }, progress_every: 3 };
  const a = tmp(), b = tmp();
  await train(tiny(REFERENCE, extra), { outDir: a, quiet: true });
  await train(tiny("webgpu", extra), { outDir: b, quiet: true });
  const la = readMetrics(join(a, "metrics.jsonl")).lines;
  const lb = readMetrics(join(b, "metrics.jsonl")).lines;
  assert.equal(lb.length, 9);
  const near = (y: number, x: number, what: string) => assert.ok(Math.abs(y - x) <= 1e-3 * Math.abs(x) + 1e-6, `${what}: webgpu ${y} vs ${REFERENCE} ${x}`);
  for (let i = 0; i < 9; i++) {
    for (const key of ["loss", "eval_loss", "attn_progress", "collapse", "repetition"] as const) {
      const x = la[i]![key], y = lb[i]![key];
      assert.equal(y === undefined, x === undefined, `step ${i + 1} ${key}`);
      if (x === undefined) continue;
      // repetition counts rounded outputs: a float difference may flip a pair or two (1/(16·15) each)
      if (key === "repetition") assert.ok(Math.abs(y! - x) <= 2 / (16 * 15) + 1e-12, `step ${i + 1} repetition: ${y} vs ${x}`);
      else near(y!, x, `step ${i + 1} ${key}`);
    }
    if (la[i]!.collapse_sites) for (const [site, x] of Object.entries(la[i]!.collapse_sites!)) near(lb[i]!.collapse_sites![site]!, x, `step ${i + 1} collapse at ${site}`);
    la[i]!.attn_progress_layers?.forEach((x, l) => near(lb[i]!.attn_progress_layers![l]!, x, `step ${i + 1} layer ${l}`));
  }
  assert.deepEqual(lb.filter((l) => l.attn_progress !== undefined).map((l) => l.step), [3, 6, 9]);
});

test("webgpu: resume from a checkpoint continues the run (Adam state and data PRNG restored)", async () => {
  const a = tmp(), b = tmp();
  await train(tiny("webgpu", { steps: 12, eval_every: 0 }), { outDir: a, quiet: true });
  await train(tiny("webgpu", { steps: 12, eval_every: 0 }), { outDir: b, quiet: true, stopAfter: 7 });
  await train(tiny("webgpu", { steps: 12, eval_every: 0 }), { outDir: b, quiet: true, resume: true });
  const la = readMetrics(join(a, "metrics.jsonl")).lines, lb = readMetrics(join(b, "metrics.jsonl")).lines;
  assert.equal(lb.length, 12);
  for (let i = 0; i < 12; i++) assert.ok(Math.abs(lb[i]!.loss - la[i]!.loss) <= 1e-5 * la[i]!.loss, `step ${i + 1}`);
});

// ---------------------------------------------------------------------------
// errors

test("webgpu: a shader that does not compile is one DeviceError naming the adapter and the kernel", async () => {
  const broken: KernelDef = {
    name: "broken_kernel",
    tensors: [["x", "rw"]],
    ints: [], floats: [],
    code: "@compute @workgroup_size(1) fn main() { let y: f32 = undefined_thing; }",
  };
  k.run(broken, [k.alloc(4)], [], [], [1]);
  await assert.rejects(k.finish(), (e: unknown) => {
    assert.ok(e instanceof DeviceError, String(e));
    assert.match(e.message, /^webgpu \(.+\): shader of kernel broken_kernel does not compile: \d+:\d+: /);
    assert.ok(e.message.includes(k.adapterName));
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
  // the device is still usable afterwards
  const t = k.alloc(3);
  k.upload(t, new Float32Array([1, 2, 3]));
  k.add(t, t, t, 3);
  assert.deepEqual(await k.download(t), new Float32Array([2, 4, 6]));
});

test("webgpu: the device lost mid-run stops training with one message; the last checkpoint is kept", async () => {
  const dir = tmp();
  const cfg = tiny("webgpu", { steps: 30, ckpt_every: 4, eval_every: 0 });
  await assert.rejects(
    train(cfg, { outDir: dir, quiet: true, onStep: (l) => { if (l.step === 9) k.destroy(); } }),
    (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, /^webgpu \(.+\): device lost \(destroyed\) before kernel \w+; stopped at step 10 \(last checkpoint: step-0000008\)$/);
      return true;
    },
  );
  const status = JSON.parse(readFileSync(join(dir, "status.json"), "utf8"));
  assert.equal(status.status, "failed");
  assert.deepEqual(listCheckpoints(dir), [4, 8]);
  const p = loadCheckpoint(join(dir, "checkpoints", "step-0000008.safetensors")).params;
  assert.ok(p.every(Number.isFinite));
  // a later run gets a fresh device
  k = await loadWebGpuKernels();
  assert.ok(!k.isLost());
});

test("webgpu: no adapter → `abrupt: webgpu: no adapter found (...)`, exit 1", () => {
  const main = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
  const env = { ...process.env, ABRUPT_WEBGPU_SOFTWARE: "0", VK_DRIVER_FILES: "/nonexistent/icd.json", VK_ICD_FILENAMES: "/nonexistent/icd.json" };
  const r = spawnSync(process.execPath, [main, "train", "--device", "webgpu", "--steps", "2", "--out", join(tmp(), "run"), "--quiet"], { encoding: "utf8", env });
  assert.equal(r.status, 1, r.stderr);
  const ours = r.stderr.split("\n").filter((l) => l.startsWith("abrupt:"));
  assert.equal(ours.length, 1, r.stderr);
  assert.match(ours[0]!, /^abrupt: webgpu: no adapter found \(.+\)$/);
});

// ---------------------------------------------------------------------------
// The GPT's kernels

describe("webgpu == ref: GPT kernels (1e-4 relative)", () => {
  for (const kind of ["softmax", "linear"] as const) {
    for (const [B, T, C, H] of [[3, 7, 8, 2], [2, 49, 64, 4], [2, 98, 32, 2]] as const) {
      it(`causalAttentionPattern ${kind}, attentionApply, causalAttentionBackward ${kind} (B${B} T${T} C${C} H${H})`, async () => {
        const qkv = rand(B * T * 3 * C, -2, 2);
        const att = new Float32Array(B * H * T * T);
        ref.causalAttentionPattern(att, qkv, B, T, C, H, kind);
        const out = new Float32Array(B * T * C);
        ref.attentionApply(out, att, qkv, B, T, C, H);
        const acts = new Packed(qkv, rand(B * H * T * T), new Float32Array(B * T * C));
        const [gq, ga, go] = acts.views as [GpuTensor, GpuTensor, GpuTensor];
        k.causalAttentionPattern(ga, gq, B, T, C, H, kind);
        k.attentionApply(go, ga, gq, B, T, C, H);
        const [, a2, o2] = await acts.read("causal attention forward");
        assertClose(a2!, att, "att");
        assertClose(o2!, out, "out");
        const dout = rand(B * T * C);
        const dqkv = new Float32Array(B * T * 3 * C);
        ref.causalAttentionBackward(dqkv, new Float32Array(B * H * T * T), dout, qkv, att, B, T, C, H, kind);
        const g = new Packed(rand(B * T * 3 * C), rand(B * H * T * T), dout);
        k.causalAttentionBackward(g.views[0]!, g.views[1]!, g.views[2]!, gq, ga, B, T, C, H, kind);
        assertClose((await g.read("causalAttentionBackward"))[0]!, dqkv, "dqkv");
      });
    }
  }

  it("gelu tanh forward and backward over [-10, 10], also in place", async () => {
    const n = 3001;
    const x = rand(n, -10, 10), dout = rand(n);
    const y = new Float32Array(n), dx = new Float32Array(n);
    ref.geluTanhForward(y, x, n);
    ref.geluTanhBackward(dx, x, dout, n);
    const p = new Packed(x, new Float32Array(n), dout);
    const [gx, gy, gd] = p.views as [GpuTensor, GpuTensor, GpuTensor];
    k.geluTanhForward(gy, gx, n);
    k.geluTanhBackward(gd, gx, gd, n); // in place
    const [, y2, dx2] = await p.read("gelu tanh");
    assertClose(y2!, y, "gelu tanh");
    assertClose(dx2!, dx, "gelu tanh backward");
    const [inplace, ip] = put(x);
    k.geluTanhForward(inplace, inplace, n);
    assertClose(await get(ip, "gelu tanh in place"), y, "gelu tanh in place");
  });

  for (const [N, V] of [[7, 405], [300, 405], [5, 1], [19, 2002]] as const) {
    it(`crossEntropy N${N} V${V}: loss, row losses, dlogits (left-out rows, outputs in one buffer, in place)`, async () => {
      const logits = rand(N * V, -6, 6);
      const targets = Int32Array.from({ length: N }, (_, i) => (i % 5 === 2 ? -1 : Math.floor(rng() * V)));
      const d = new Float32Array(N * V), rows = new Float32Array(N);
      const mean = ref.crossEntropy(d, rows, logits, targets, N, V, 0.7);
      const [gl] = put(logits);
      const outs = new Packed(rand(N * V), rand(N), new Float32Array(1));
      const r = k.crossEntropy(outs.views[0]!, outs.views[1]!, gl, targets, N, V, 0.7, outs.views[2]!);
      assert.ok(Number.isNaN(r));
      const [d2, rows2, l2] = await outs.read("crossEntropy");
      assertClose(d2!, d, "dlogits");
      assertClose(rows2!, rows, "rowLoss");
      assert.ok(Math.abs(l2![0]! - mean) <= 1e-4 * Math.max(1, mean), `loss ${l2![0]} vs ${mean}`);
      // loss only (no dlogits, no rowLoss), and dlogits in place of the logits
      const [gl2, glp] = put(logits);
      const [one, onep] = put(new Float32Array(1));
      k.crossEntropy(gl2, null, gl2, targets, N, V, 0.7, one);
      assertClose(await get(glp, "crossEntropy in place"), d, "dlogits in place");
      assert.ok(Math.abs((await get(onep, "loss"))[0]! - mean) <= 1e-4 * Math.max(1, mean));
      assert.throws(() => k.crossEntropy(null, null, gl, Int32Array.from(targets, () => V), N, V, 1), /outside/);
    });
  }
});

for (const attn of ["softmax", "linear"] as const) {
  test(`webgpu: the GPT (${attn}) matches PyTorch's minGPT (logits, loss, every gradient to 1e-4; greedy completions exactly)`, async () => {
    const dir = fileURLToPath(new URL("../../test/fixtures/", import.meta.url));
    const fx = JSON.parse(readFileSync(join(dir, "gpt_tiny.json"), "utf8")) as {
      B: number; T: number; inputs: number[]; targets: number[]; prompts: number[];
    } & Record<typeof attn, { logits: number[]; loss: number; completions: number[] }>;
    const st = readSafetensors(join(dir, "gpt_tiny.safetensors"));
    const ck = loadGptCheckpoint(join(dir, "gpt_tiny.safetensors"), { heads: 2, attn });
    const model = new Gpt(ck.cfg, k);
    model.setParams(ck.params);
    const relErr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let scale = 1e-3, worst = 0;
      for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
      for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / scale);
      return worst;
    };
    model.zeroGrad();
    model.forward(Int32Array.from(fx.inputs), fx.B, fx.T);
    const loss = model.loss(Int32Array.from(fx.targets));
    model.backward(loss.dlogits!);
    const e = relErr(await model.actHost("logits"), fx[attn].logits);
    assert.ok(e < 1e-4, `logits: ${e}`);
    const l = (await k.download(loss.mean))[0]!;
    assert.ok(Math.abs(l - fx[attn].loss) <= 1e-5 * fx[attn].loss, `loss ${l} vs ${fx[attn].loss}`);
    const grads = await k.download(model.grads);
    for (const s of model.specs) {
      const err = relErr(grads.subarray(s.offset, s.offset + s.size), getFloat32(st, `grad.${attn}.${s.name}`));
      assert.ok(err < 1e-4, `grad of ${s.name}: ${err}`);
    }
    const got = await model.generate(Int32Array.from(fx.prompts), fx.prompts.length / 10, 10, 9);
    assert.deepEqual([...got], fx[attn].completions);
  });
}
