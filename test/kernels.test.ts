// Kernel tests: (1) finite differences on the ref backend for every backward;
// (2) cpu == ref on random inputs, awkward shapes and subarray views;
// (3) Adam against hand-computed values; embedding padding and repeats;
// (4) the native layer rejects wrong types and lengths.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadCpuKernels } from "../src/kernels/cpu.js";
import { erf, erfc, refKernels as ref } from "../src/kernels/ref.js";
import type { F32, Kernels } from "../src/kernels/types.js";
import { assertClose as assertCloseTo, mulberry32, rand, rms } from "./helpers/numeric.js";

// ---------------------------------------------------------------------------
// helpers

/**
 * A view of `a`'s values inside a larger buffer at a nonzero offset, with
 * sentinel values around it (checked by `assertSentinels`).
 */
const PAD = 5;
const SENTINEL = 12345.5;
function view(a: F32): F32 {
  const buf = new Float32Array(a.length + 2 * PAD).fill(SENTINEL);
  buf.set(a, PAD);
  return buf.subarray(PAD, PAD + a.length);
}
function assertSentinels(v: F32, what: string): void {
  const buf = new Float32Array(v.buffer);
  const start = v.byteOffset / 4;
  for (let i = 0; i < PAD; i++) {
    assert.equal(buf[start - 1 - i], SENTINEL, `${what}: wrote before its view`);
    assert.equal(buf[start + v.length + i], SENTINEL, `${what}: wrote after its view`);
  }
}

/** Parity with ref: 1e-5 relative per element (see assertClose). */
function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, what: string, rtol = 1e-5): void {
  assertCloseTo(a, b, what, rtol);
}

const copy = (a: F32): F32 => new Float32Array(a);

let cpuCache: Kernels | undefined;
const cpu = (): Kernels => (cpuCache ??= loadCpuKernels());

// ---------------------------------------------------------------------------
// erf

describe("erf (ref)", () => {
  it("matches known values to ~1e-15", () => {
    // values from Abramowitz & Stegun / mpmath
    const cases: [number, number][] = [
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [2.9, 0.9999589021219005],
    ];
    for (const [x, v] of cases) {
      assert.ok(Math.abs(erf(x) - v) < 1e-15, `erf(${x})`);
      assert.ok(Math.abs(erf(-x) + v) < 1e-15, `erf(-${x})`);
    }
    const tails: [number, number][] = [
      [3, 2.209049699858544e-5],
      [4, 1.541725790028002e-8],
      [6, 2.151973671249892e-17],
      [10, 2.088487583762545e-45],
    ];
    for (const [x, v] of tails) assert.ok(Math.abs(erfc(x) - v) / v < 1e-13, `erfc(${x})`);
  });
});

// ---------------------------------------------------------------------------
// finite differences on ref

/**
 * Checks an analytic gradient of loss(x) against central differences. The
 * loss is a double computed from float32 outputs; with eps = 1e-2 the
 * expected error is ~1e-4, so the norm-wise tolerance 1e-2 is loose enough
 * not to be flaky yet fails on any wrong formula: the check is also run on
 * the gradient scaled by 1.03 and must reject it.
 */
function gradCheck(what: string, loss: () => number, x: F32, grad: ArrayLike<number>): void {
  const fd = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i]!;
    x[i] = x0 + 1e-2;
    const hp = x[i]! - x0;
    const lp = loss();
    x[i] = x0 - 1e-2;
    const hm = x0 - x[i]!;
    const lm = loss();
    x[i] = x0;
    fd[i] = (lp - lm) / (hp + hm);
  }
  const relErr = (g: ArrayLike<number>) => {
    let num = 0;
    let den = 0;
    for (let i = 0; i < fd.length; i++) {
      num += (g[i]! - fd[i]!) ** 2;
      den += fd[i]! ** 2;
    }
    return Math.sqrt(num / den);
  };
  assert.ok(rms(fd) > 0, `${what}: gradient is identically zero, test is vacuous`);
  const err = relErr(grad);
  assert.ok(err < 1e-2, `${what}: analytic vs finite-difference relative error ${err.toExponential(2)}`);
  const broken = Array.from(grad, (g) => g * 1.03);
  assert.ok(relErr(broken) >= 1e-2, `${what}: check too weak to notice a 3% error`);
}

/** sum_i out[i] * R[i] in double */
function dotR(out: F32, R: F32): number {
  let s = 0;
  for (let i = 0; i < R.length; i++) s += out[i]! * R[i]!;
  return s;
}

describe("finite differences (ref backward)", () => {
  const rng = mulberry32(1);

  it("linear", () => {
    const N = 5, IC = 4, OC = 3;
    const inp = rand(rng, N * IC), w = rand(rng, OC * IC), b = rand(rng, OC), R = rand(rng, N * OC);
    const out = new Float32Array(N * OC);
    const loss = () => (ref.linearForward(out, inp, w, b, N, IC, OC), dotR(out, R));
    const dinp = new Float32Array(N * IC), dw = new Float32Array(OC * IC), db = new Float32Array(OC);
    ref.linearBackward(dinp, dw, db, R, inp, w, N, IC, OC, false);
    gradCheck("linear dinp", loss, inp, dinp);
    gradCheck("linear dweight", loss, w, dw);
    gradCheck("linear dbias", loss, b, db);
  });

  it("layernorm", () => {
    const N = 4, C = 6;
    const inp = rand(rng, N * C, -2, 3), w = rand(rng, C, 0.5, 1.5), b = rand(rng, C), R = rand(rng, N * C);
    const out = new Float32Array(N * C), mean = new Float32Array(N), rstd = new Float32Array(N);
    const loss = () => (ref.layernormForward(out, mean, rstd, inp, w, b, N, C, 1e-5), dotR(out, R));
    loss();
    const dinp = new Float32Array(N * C), dw = new Float32Array(C), db = new Float32Array(C);
    ref.layernormBackward(dinp, dw, db, R, inp, w, mean, rstd, N, C);
    gradCheck("layernorm dinp", loss, inp, dinp);
    gradCheck("layernorm dweight", loss, w, dw);
    gradCheck("layernorm dbias", loss, b, db);
  });

  it("attention (pattern then apply)", () => {
    const B = 2, T = 5, C = 6, H = 2;
    const qkv = rand(rng, B * T * 3 * C, -1.5, 1.5), R = rand(rng, B * T * C);
    const att = new Float32Array(B * H * T * T), out = new Float32Array(B * T * C);
    const loss = () => {
      ref.attentionPattern(att, qkv, B, T, C, H);
      ref.attentionApply(out, att, qkv, B, T, C, H);
      return dotR(out, R);
    };
    loss();
    const dqkv = new Float32Array(B * T * 3 * C), datt = new Float32Array(B * H * T * T);
    ref.attentionBackward(dqkv, datt, R, qkv, att, B, T, C, H);
    gradCheck("attention dqkv", loss, qkv, dqkv);
    // the pattern rows are distributions
    for (let r = 0; r < B * H * T; r++) {
      let s = 0;
      for (let k = 0; k < T; k++) s += att[r * T + k]!;
      assert.ok(Math.abs(s - 1) < 1e-6);
    }
  });

  it("attention with a logit bias (pattern then apply)", () => {
    const B = 2, T = 5, C = 6, H = 2;
    const qkv = rand(rng, B * T * 3 * C, -1.5, 1.5), R = rand(rng, B * T * C), bias = rand(rng, B * T * T, -2, 2);
    const att = new Float32Array(B * H * T * T), out = new Float32Array(B * T * C);
    const loss = () => {
      ref.attentionPattern(att, qkv, B, T, C, H, bias);
      ref.attentionApply(out, att, qkv, B, T, C, H);
      return dotR(out, R);
    };
    loss();
    const dqkv = new Float32Array(B * T * 3 * C), datt = new Float32Array(B * H * T * T);
    ref.attentionBackward(dqkv, datt, R, qkv, att, B, T, C, H);
    gradCheck("attention+bias dqkv", loss, qkv, dqkv);
  });

  it("a logit bias log c multiplies the attention on its entries by c, then renormalises", () => {
    const B = 2, T = 6, C = 8, H = 2, c = 2.5;
    const qkv = rand(rng, B * T * 3 * C, -1.5, 1.5);
    const on = (b: number, t: number, k: number) => (b + t + 2 * k) % 3 === 0;
    const bias = new Float32Array(B * T * T);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let k = 0; k < T; k++) if (on(b, t, k)) bias[(b * T + t) * T + k] = Math.log(c);
    const plain = new Float32Array(B * H * T * T), biased = new Float32Array(B * H * T * T);
    ref.attentionPattern(plain, qkv, B, T, C, H);
    ref.attentionPattern(biased, qkv, B, T, C, H, bias);
    const expect = new Float64Array(B * H * T * T);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const r = ((b * H + h) * T + t) * T;
          let z = 0;
          for (let k = 0; k < T; k++) z += plain[r + k]! * (on(b, t, k) ? c : 1);
          for (let k = 0; k < T; k++) expect[r + k] = (plain[r + k]! * (on(b, t, k) ? c : 1)) / z;
        }
      }
    }
    assertClose(biased, expect, "biased pattern vs c·A renormalised", 1e-6);
    // null and a zero bias are the plain pattern
    const zero = new Float32Array(B * H * T * T);
    ref.attentionPattern(zero, qkv, B, T, C, H, new Float32Array(B * T * T));
    assert.deepEqual(zero, plain);
    ref.attentionPattern(zero, qkv, B, T, C, H, null);
    assert.deepEqual(zero, plain);
  });

  it("gelu", () => {
    const n = 40;
    const x = rand(rng, n, -4, 4), R = rand(rng, n);
    const out = new Float32Array(n);
    const loss = () => (ref.geluForward(out, x, n), dotR(out, R));
    const dx = new Float32Array(n);
    ref.geluBackward(dx, x, R, n);
    gradCheck("gelu", loss, x, dx);
  });

  it("embedding", () => {
    const B = 2, T = 4, C = 3, V = 5, P = 6;
    const tokens = Int32Array.from({ length: B * T }, () => Math.floor(rng() * V));
    tokens[1] = tokens[0]!; // a repeated token
    const wte = rand(rng, V * C), wpe = rand(rng, P * C), R = rand(rng, B * T * C);
    const out = new Float32Array(B * T * C);
    const loss = () => (ref.embeddingForward(out, tokens, wte, wpe, B, T, C), dotR(out, R));
    const dwte = new Float32Array(V * C), dwpe = new Float32Array(P * C);
    ref.embeddingBackward(dwte, dwpe, R, tokens, B, T, C, -1);
    gradCheck("embedding dwte", loss, wte, dwte);
    gradCheck("embedding dwpe", loss, wpe, dwpe);
  });

  it("mse", () => {
    const n = 20, scale = 1 / 20;
    const pred = rand(rng, n), target = rand(rng, n);
    const loss = () => scale * ref.mse(null, pred, target, n, 0);
    const d = new Float32Array(n);
    const sum = ref.mse(d, pred, target, n, scale);
    let s = 0;
    for (let i = 0; i < n; i++) s += (pred[i]! - target[i]!) ** 2;
    assert.ok(Math.abs(sum - s) < 1e-12);
    gradCheck("mse dpred", loss, pred, d);
  });
});

// ---------------------------------------------------------------------------
// Adam and embedding details (ref and cpu alike)

describe("adam", () => {
  // torch.optim.Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-8) on one parameter
  // p = 1 with gradients 0.5, -1, 2 (worked out in float64 outside this code):
  //   step 1: m = 0.05,   v = 0.00025,    p = 1 - 0.1 * 0.5 / (0.5 + 1e-8)
  //   step 2: m = -0.055, v = 0.00124975, p -= (0.1/0.19) m / (sqrt(v)/sqrt(0.001999) + 1e-8)
  //   step 3: m = 0.1505, v = 0.00524850025
  const expected = [0.9000000019999999, 0.9366103542405653, 0.8946447927181044];
  const grads = [0.5, -1, 2];
  for (const k of [() => ref, cpu]) {
    it(`matches hand-computed steps (${k().name})`, () => {
      const p = Float32Array.of(1), m = new Float32Array(1), v = new Float32Array(1);
      grads.forEach((g, i) => {
        k().adam(p, Float32Array.of(g), m, v, 1, 0.1, 0.9, 0.999, 1e-8, i + 1);
        assert.ok(Math.abs(p[0]! - expected[i]!) < 2e-7, `step ${i + 1}: ${p[0]} vs ${expected[i]}`);
      });
      assert.ok(Math.abs(m[0]! - 0.1505) < 1e-7);
    });
    // torch.optim.AdamW(lr=0.1, weight_decay=0.5), same gradients: p *= 1 - 0.05 first, then the same update
    // (float64, outside this code)
    it(`AdamW: decoupled weight decay matches hand-computed steps (${k().name})`, () => {
      const want = [0.8500000019999999, 0.8441103541405653, 0.7599392749110763];
      const p = Float32Array.of(1), m = new Float32Array(1), v = new Float32Array(1);
      grads.forEach((g, i) => {
        k().adam(p, Float32Array.of(g), m, v, 1, 0.1, 0.9, 0.999, 1e-8, i + 1, 0.5);
        assert.ok(Math.abs(p[0]! - want[i]!) < 2e-7, `step ${i + 1}: ${p[0]} vs ${want[i]}`);
      });
    });
    // torch.optim.SGD(lr=0.1, weight_decay=0.5): p -= 0.1 (g + 0.5 p); and without decay p -= 0.1 g
    it(`SGD matches hand-computed steps (${k().name})`, () => {
      const want = [0.9, 0.9550000000000001, 0.70725];
      const p = Float32Array.of(1);
      grads.forEach((g, i) => {
        k().sgd(p, Float32Array.of(g), 1, 0.1, 0.5);
        assert.ok(Math.abs(p[0]! - want[i]!) < 2e-7, `step ${i + 1}: ${p[0]} vs ${want[i]}`);
      });
      const q = Float32Array.of(1, 2);
      k().sgd(q, Float32Array.of(0.5, -4), 2, 0.1);
      assert.ok(Math.abs(q[0]! - 0.95) < 1e-7 && Math.abs(q[1]! - 2.4) < 1e-7, `${q}`);
    });
  }
});

describe("embedding backward details", () => {
  for (const k of [() => ref, cpu]) {
    it(`padding gets no gradient; repeated tokens add (${k().name})`, () => {
      const B = 2, T = 3, C = 4, V = 4;
      const tokens = Int32Array.of(0, 2, 2, 2, 0, 3); // 0 = padding, 2 three times
      const dout = Float32Array.from({ length: B * T * C }, (_, i) => i + 1);
      const dwte = new Float32Array(V * C).fill(0.5);
      const dwpe = new Float32Array(T * C);
      k().embeddingBackward(dwte, dwpe, dout, tokens, B, T, C, 0);
      for (let c = 0; c < C; c++) {
        assert.equal(dwte[0 * C + c], 0.5, "padding row untouched");
        assert.equal(dwte[1 * C + c], 0.5, "unused row untouched");
        // token 2 at (0,1), (0,2), (1,0): rows 1, 2, 3 of dout
        assert.equal(dwte[2 * C + c], 0.5 + (1 * C + c + 1) + (2 * C + c + 1) + (3 * C + c + 1));
        assert.equal(dwte[3 * C + c], 0.5 + (5 * C + c + 1));
        for (let t = 0; t < T; t++) assert.equal(dwpe[t * C + c], t * C + c + 1 + ((T + t) * C + c + 1));
      }
    });
  }
});

// ---------------------------------------------------------------------------
// cpu == ref

describe("cpu parity with ref", () => {
  const rng = mulberry32(7);

  it("matmul, all transposes, views, beta = 0 ignores NaN in C", () => {
    const shapes = [[1, 1, 1], [7, 13, 5], [49, 24, 72], [33, 17, 129], [3, 5, 0], [0, 4, 3]] as const;
    for (const [M, N, K] of shapes) {
      for (const tA of [false, true]) {
        for (const tB of [false, true]) {
          for (const [alpha, beta] of [[1, 0], [0.5, 2], [-1, 1]] as const) {
            const A = view(rand(rng, M * K)), B = view(rand(rng, K * N));
            const C0 = beta === 0 ? new Float32Array(M * N).fill(NaN) : rand(rng, M * N);
            const Cr = copy(C0), Cc = view(C0);
            ref.matmul(Cr, A, B, M, N, K, tA, tB, alpha, beta);
            cpu().matmul(Cc, A, B, M, N, K, tA, tB, alpha, beta);
            const what = `matmul ${M}x${N}x${K} tA=${tA} tB=${tB} a=${alpha} b=${beta}`;
            assertClose(Cc, Cr, what);
            assertSentinels(Cc, what);
          }
        }
      }
    }
  });

  it("linear forward and backward", () => {
    for (const [N, IC, OC] of [[147, 24, 72], [6, 128, 1], [49, 96, 384], [13, 7, 29]] as const) {
      const inp = view(rand(rng, N * IC)), w = view(rand(rng, OC * IC)), b = view(rand(rng, OC));
      for (const bias of [b, null]) {
        const or = new Float32Array(N * OC), oc = view(new Float32Array(N * OC));
        ref.linearForward(or, inp, w, bias, N, IC, OC);
        cpu().linearForward(oc, inp, w, bias, N, IC, OC);
        assertClose(oc, or, `linearForward ${N},${IC},${OC} bias=${!!bias}`);
        assertSentinels(oc, "linearForward");
      }
      const dout = view(rand(rng, N * OC));
      for (const acc of [false, true]) {
        const di0 = rand(rng, N * IC), dw0 = rand(rng, OC * IC), db0 = rand(rng, OC);
        const [dir, dwr, dbr] = [copy(di0), copy(dw0), copy(db0)];
        const [dic, dwc, dbc] = [view(di0), view(dw0), view(db0)];
        ref.linearBackward(dir, dwr, dbr, dout, inp, w, N, IC, OC, acc);
        cpu().linearBackward(dic, dwc, dbc, dout, inp, w, N, IC, OC, acc);
        assertClose(dic, dir, `linearBackward dinp acc=${acc}`);
        assertClose(dwc, dwr, "linearBackward dweight");
        assertClose(dbc, dbr, "linearBackward dbias");
        for (const v of [dic, dwc, dbc]) assertSentinels(v, "linearBackward");
      }
      // nulls skip their outputs
      const dw1 = rand(rng, OC * IC), dw1c = copy(dw1);
      cpu().linearBackward(null, dw1c, null, dout, inp, w, N, IC, OC, false);
      ref.linearBackward(null, dw1, null, dout, inp, w, N, IC, OC, false);
      assertClose(dw1c, dw1, "linearBackward dweight only");
    }
  });

  it("embedding forward and backward (padding, repeats, wpe with spare rows)", () => {
    for (const [B, T, C, V, P] of [[3, 49, 24, 50, 60], [4, 16, 128, 2002, 512], [1, 1, 1, 2, 1]] as const) {
      const tokens = Int32Array.from({ length: B * T }, () => Math.floor(rng() * Math.min(V, 7)));
      const wte = view(rand(rng, V * C)), wpe = view(rand(rng, P * C));
      const or = new Float32Array(B * T * C), oc = view(new Float32Array(B * T * C));
      ref.embeddingForward(or, tokens, wte, wpe, B, T, C);
      cpu().embeddingForward(oc, tokens, wte, wpe, B, T, C);
      assert.deepEqual(oc, or, "embeddingForward is exact");
      const dout = rand(rng, B * T * C);
      for (const pad of [0, -1]) {
        const dte0 = rand(rng, V * C), dpe0 = rand(rng, P * C);
        const [dter, dper, dtec, dpec] = [copy(dte0), copy(dpe0), view(dte0), view(dpe0)];
        ref.embeddingBackward(dter, dper, dout, tokens, B, T, C, pad);
        cpu().embeddingBackward(dtec, dpec, dout, tokens, B, T, C, pad);
        assertClose(dtec, dter, `embeddingBackward dwte pad=${pad}`);
        assertClose(dpec, dper, `embeddingBackward dwpe pad=${pad}`);
        assertSentinels(dtec, "dwte");
        assertSentinels(dpec, "dwpe");
      }
    }
  });

  it("layernorm forward and backward", () => {
    for (const [N, C, eps] of [[147, 24, 1e-12], [5, 128, 1e-5], [64, 768, 1e-12], [3, 1, 1e-5]] as const) {
      const inp = view(rand(rng, N * C, -3, 5)), w = view(rand(rng, C, 0.5, 1.5)), b = view(rand(rng, C));
      const [or, mr, rr] = [new Float32Array(N * C), new Float32Array(N), new Float32Array(N)];
      const [oc, mc, rc] = [view(new Float32Array(N * C)), view(new Float32Array(N)), view(new Float32Array(N))];
      ref.layernormForward(or, mr, rr, inp, w, b, N, C, eps);
      cpu().layernormForward(oc, mc, rc, inp, w, b, N, C, eps);
      assertClose(oc, or, `layernormForward ${N},${C}`);
      assertClose(mc, mr, "layernorm mean");
      assertClose(rc, rr, "layernorm rstd");
      const dout = view(rand(rng, N * C));
      const dw0 = rand(rng, C), db0 = rand(rng, C);
      const [dir, dwr, dbr] = [new Float32Array(N * C), copy(dw0), copy(db0)];
      const [dic, dwc, dbc] = [view(new Float32Array(N * C)), view(dw0), view(db0)];
      ref.layernormBackward(dir, dwr, dbr, dout, inp, w, mr, rr, N, C);
      cpu().layernormBackward(dic, dwc, dbc, dout, inp, w, mr, rr, N, C);
      if (C > 1) assertClose(dic, dir, `layernormBackward dinp ${N},${C}`);
      assertClose(dwc, dwr, "layernormBackward dweight");
      assertClose(dbc, dbr, "layernormBackward dbias");
      for (const v of [oc, mc, rc, dic, dwc, dbc]) assertSentinels(v, "layernorm");
    }
  });

  it("attention pattern, apply, backward", () => {
    const shapes = [[2, 49, 24, 3], [3, 16, 64, 4], [1, 7, 96, 1], [2, 49, 192, 2], [2, 1, 8, 2], [5, 49, 128, 4]];
    for (const [B, T, C, H] of shapes as [number, number, number, number][]) {
      const what = `attention B=${B} T=${T} C=${C} H=${H}`;
      const qkv = view(rand(rng, B * T * 3 * C, -2, 2));
      const ar = new Float32Array(B * H * T * T), ac = view(new Float32Array(B * H * T * T));
      ref.attentionPattern(ar, qkv, B, T, C, H);
      cpu().attentionPattern(ac, qkv, B, T, C, H);
      assertClose(ac, ar, `${what} pattern`);
      const or = new Float32Array(B * T * C), oc = view(new Float32Array(B * T * C));
      ref.attentionApply(or, ar, qkv, B, T, C, H);
      cpu().attentionApply(oc, ar, qkv, B, T, C, H);
      assertClose(oc, or, `${what} apply`);
      const dout = view(rand(rng, B * T * C));
      const dr = new Float32Array(B * T * 3 * C), dc = view(rand(rng, B * T * 3 * C));
      ref.attentionBackward(dr, new Float32Array(B * H * T * T), dout, qkv, ar, B, T, C, H);
      cpu().attentionBackward(dc, view(new Float32Array(B * H * T * T)), dout, qkv, ar, B, T, C, H);
      assertClose(dc, dr, `${what} backward`);
      for (const v of [ac, oc, dc]) assertSentinels(v, what);
    }
  });

  it("attention pattern with a logit bias", () => {
    const shapes = [[2, 49, 24, 3], [3, 16, 64, 4], [1, 7, 96, 1], [2, 1, 8, 2], [5, 49, 128, 4]];
    for (const [B, T, C, H] of shapes as [number, number, number, number][]) {
      const what = `attention+bias B=${B} T=${T} C=${C} H=${H}`;
      const qkv = view(rand(rng, B * T * 3 * C, -2, 2));
      const bias = view(rand(rng, B * T * T, -2.5, 2.5));
      for (let i = 0; i < bias.length; i += 3) bias[i] = 0; // mostly zero, as an intervention's bias
      const ar = new Float32Array(B * H * T * T), ac = view(new Float32Array(B * H * T * T));
      ref.attentionPattern(ar, qkv, B, T, C, H, bias);
      cpu().attentionPattern(ac, qkv, B, T, C, H, bias);
      assertClose(ac, ar, `${what} pattern`);
      const dout = view(rand(rng, B * T * C));
      const dr = new Float32Array(B * T * 3 * C), dc = view(rand(rng, B * T * 3 * C));
      ref.attentionBackward(dr, new Float32Array(B * H * T * T), dout, qkv, ar, B, T, C, H);
      cpu().attentionBackward(dc, view(new Float32Array(B * H * T * T)), dout, qkv, ac, B, T, C, H);
      assertClose(dc, dr, `${what} backward`);
      for (const v of [ac, dc, bias]) assertSentinels(v, what);
    }
    // a short bias is rejected, null is none
    const k = cpu();
    const qkv = rand(rng, 2 * 3 * 3 * 4), att = new Float32Array(2 * 2 * 9);
    assert.throws(() => k.attentionPattern(att, qkv, 2, 3, 4, 2, new Float32Array(17)), /bias has 17 elements, needs 18/);
    const a1 = new Float32Array(att.length), a2 = new Float32Array(att.length);
    k.attentionPattern(a1, qkv, 2, 3, 4, 2, null);
    k.attentionPattern(a2, qkv, 2, 3, 4, 2);
    assert.deepEqual(a1, a2);
  });

  it("gelu forward (in place too) and backward (dinp aliasing dout)", () => {
    for (const n of [1, 17, 1001, 100003]) {
      const x = view(rand(rng, n, -8, 8));
      const or = new Float32Array(n), oc = view(new Float32Array(n));
      ref.geluForward(or, x, n);
      cpu().geluForward(oc, x, n);
      assertClose(oc, or, `geluForward n=${n}`);
      const inPlace = view(copy(x));
      cpu().geluForward(inPlace, inPlace, n);
      assert.deepEqual(inPlace, oc, "geluForward in place");
      const dout = rand(rng, n);
      const dr = new Float32Array(n);
      ref.geluBackward(dr, x, dout, n);
      const dc = view(dout); // dinp aliases dout
      cpu().geluBackward(dc, x, dc, n);
      assertClose(dc, dr, `geluBackward n=${n}`);
      assertSentinels(dc, "geluBackward");
    }
  });

  it("gelu is accurate elementwise on a grid, tails included", () => {
    const xs = Float32Array.from({ length: 2001 }, (_, i) => -10 + i * 0.01);
    const n = xs.length;
    const [fr, fc, br, bc] = [0, 0, 0, 0].map(() => new Float32Array(n)) as [F32, F32, F32, F32];
    ref.geluForward(fr, xs, n);
    cpu().geluForward(fc, xs, n);
    const ones = new Float32Array(n).fill(1);
    ref.geluBackward(br, xs, ones, n);
    cpu().geluBackward(bc, xs, ones, n);
    // purely relative per element (floor 1e-30): float erfc(-x/sqrt2) loses
    // ~2*(x^2/2)*2^-24 relative from rounding its argument, < 5e-6 at x = -10
    for (let i = 0; i < n; i++) {
      const ef = Math.abs(fc[i]! - fr[i]!) / (Math.abs(fr[i]!) + 1e-30);
      const eb = Math.abs(bc[i]! - br[i]!) / (Math.abs(br[i]!) + 1e-30);
      const tol = Math.max(1e-6, 1.2e-7 * xs[i]! * xs[i]!);
      assert.ok(ef <= tol, `gelu(${xs[i]}): ${fc[i]} vs ${fr[i]}`);
      // gelu' = Phi + x phi cancels near x = -0.75: there, float terms of size
      // ~0.3 allow an absolute error of a few 1e-8
      const cancel = Math.abs(xs[i]!) < 2 && Math.abs(bc[i]! - br[i]!) < 1e-7;
      assert.ok(eb <= tol || cancel, `gelu'(${xs[i]}): ${bc[i]} vs ${br[i]}`);
    }
  });

  it("add (aliasing), mse, adam", () => {
    for (const n of [1, 77, 50001]) {
      const a = rand(rng, n), b = rand(rng, n);
      const or = new Float32Array(n), oc = view(new Float32Array(n));
      ref.add(or, a, b, n);
      cpu().add(oc, a, b, n);
      assert.deepEqual(oc, or);
      const a2 = copy(a);
      cpu().add(a2, a2, b, n);
      assert.deepEqual(a2, or, "add aliasing out = a");

      const pred = view(rand(rng, n)), target = rand(rng, n);
      const dr = new Float32Array(n), dc = view(new Float32Array(n));
      const sr = ref.mse(dr, pred, target, n, 1 / n);
      const sc = cpu().mse(dc, pred, target, n, 1 / n);
      assert.ok(Math.abs(sc - sr) <= 1e-9 * sr, `mse sum ${sc} vs ${sr}`);
      assert.equal(cpu().mse(null, pred, target, n, 1), sc);
      assertClose(dc, dr, "mse dpred");

      const p0 = rand(rng, n), m0 = rand(rng, n, -0.01, 0.01), v0 = rand(rng, n, 0, 1e-4), g = rand(rng, n);
      const [pr, mr, vr] = [copy(p0), copy(m0), copy(v0)];
      const [pc, mc, vc] = [view(p0), view(m0), view(v0)];
      for (let step = 5; step < 8; step++) {
        ref.adam(pr, g, mr, vr, n, 1e-3, 0.9, 0.999, 1e-8, step);
        cpu().adam(pc, g, mc, vc, n, 1e-3, 0.9, 0.999, 1e-8, step);
      }
      assertClose(pc, pr, "adam param");
      assertClose(mc, mr, "adam m");
      assertClose(vc, vr, "adam v");
      for (let step = 8; step < 10; step++) {
        ref.adam(pr, g, mr, vr, n, 1e-3, 0.9, 0.999, 1e-8, step, 0.1);
        cpu().adam(pc, g, mc, vc, n, 1e-3, 0.9, 0.999, 1e-8, step, 0.1);
      }
      assertClose(pc, pr, "adamw param");
      ref.sgd(pr, g, n, 0.05, 0.01);
      cpu().sgd(pc, g, n, 0.05, 0.01);
      assertClose(pc, pr, "sgd param");
      for (const x of [pc, mc, vc]) assertSentinels(x, "optimizers");
    }
  });
});

// ---------------------------------------------------------------------------
// native: determinism and argument checks

describe("cpu determinism and argument checks", () => {
  it("is bitwise deterministic for a fixed thread count", () => {
    const rng = mulberry32(3);
    const B = 8, T = 49, C = 64, H = 4, N = B * T;
    const qkv = rand(rng, B * T * 3 * C), dout = rand(rng, B * T * C), inp = rand(rng, N * C);
    const run = () => {
      const att = new Float32Array(B * H * T * T), dqkv = new Float32Array(B * T * 3 * C);
      cpu().attentionPattern(att, qkv, B, T, C, H);
      cpu().attentionBackward(dqkv, new Float32Array(att.length), dout, qkv, att, B, T, C, H);
      const dw = new Float32Array(C * C), db = new Float32Array(C);
      cpu().linearBackward(null, dw, db, dout, inp, inp, N, C, C, false);
      const lw = new Float32Array(C), lb = new Float32Array(C);
      cpu().layernormBackward(new Float32Array(N * C), lw, lb, dout, inp, lw.fill(1), rand(mulberry32(1), N), rand(mulberry32(2), N), N, C);
      return [att, dqkv, dw, db, lw, lb];
    };
    const a = run(), b = run();
    a.forEach((x, i) => assert.deepEqual(x, b[i]));
  });

  it("follows setThreads and stays correct with one thread", () => {
    const k = loadCpuKernels();
    const before = k.threads();
    try {
      k.setThreads(1);
      assert.equal(k.threads(), 1);
      const rng = mulberry32(5);
      const x = rand(rng, 70000, -4, 4), oc = new Float32Array(70000), or = new Float32Array(70000);
      k.geluForward(oc, x, 70000);
      ref.geluForward(or, x, 70000);
      assertClose(oc, or, "gelu with 1 thread");
    } finally {
      k.setThreads(before);
    }
    assert.throws(() => k.setThreads(0), RangeError);
  });

  it("accepts zero sizes (empty batch, no tokens, no input features)", () => {
    const k = cpu();
    const f = (n: number) => new Float32Array(n);
    k.attentionPattern(f(0), f(0), 2, 0, 8, 2);
    k.attentionApply(f(0), f(0), f(0), 0, 3, 8, 2);
    k.attentionBackward(f(0), f(0), f(0), f(0), f(0), 2, 0, 8, 2);
    const out = f(6);
    k.linearForward(out, f(0), f(0), Float32Array.of(1, 2, 3), 2, 0, 3);
    assert.deepEqual(out, Float32Array.of(1, 2, 3, 1, 2, 3));
    assert.equal(k.mse(null, f(0), f(0), 0, 1), 0);
  });

  it("rejects wrong lengths, types and tokens instead of overrunning", () => {
    const k = cpu();
    const f = (n: number) => new Float32Array(n);
    assert.throws(() => k.matmul(f(5), f(6), f(6), 2, 3, 3, false, false, 1, 0), /C has 5 elements, needs 6/);
    assert.throws(() => k.matmul(f(6), f(5), f(9), 2, 3, 3, false, false, 1, 0), /A has 5/);
    assert.throws(() => k.linearForward(f(6), f(6), f(9), f(2), 2, 3, 3), /bias/);
    assert.throws(() => k.add(f(4), f(4), new Float64Array(4) as unknown as F32, 4), /Float32Array/);
    assert.throws(() => k.geluForward(f(4), f(4), 4.5), /integer/);
    assert.throws(() => k.geluForward(f(4), f(4), -1), /integer/);
    assert.throws(() => k.attentionPattern(f(2 * 2 * 3 * 3), f(2 * 3 * 3 * 5), 2, 3, 5, 2), /divisible/);
    assert.throws(() => k.attentionApply(f(10), f(100), f(100), 1, 3, 4, 2), /out has 10/);
    const toks = Int32Array.of(0, 1, 5);
    assert.throws(() => k.embeddingForward(f(6), toks, f(10), f(6), 1, 3, 2), /token 5 at index 2 outside \[0, 5\)/);
    assert.throws(() => k.embeddingBackward(f(10), null, f(6), Int32Array.of(0, -1, 1), 1, 3, 2, 0), /token -1/);
    assert.throws(() => k.embeddingForward(f(6), new Uint32Array(3) as unknown as Int32Array, f(10), f(6), 1, 3, 2), /Int32Array/);
    assert.throws(() => k.matmul(f(1), f(1), f(1), 2 ** 31, 2 ** 31, 2 ** 31, false, false, 1, 0), RangeError);
    assert.throws(() => k.matmul(f(1), f(1), f(1), 65536, 65536, 1, false, false, 1, 0), /needs 4294967296/);
  });
});

// ---------------------------------------------------------------------------
// The GPT's kernels: causal attention (softmax, linear), tanh GELU, cross-entropy

describe("GPT kernels: finite differences (ref backward)", () => {
  const rng = mulberry32(11);

  for (const kind of ["softmax", "linear"] as const) {
    it(`causal attention, ${kind} (pattern then apply)`, () => {
      const B = 2, T = 5, C = 6, H = 2;
      const qkv = rand(rng, B * T * 3 * C, -1.5, 1.5), R = rand(rng, B * T * C);
      const att = new Float32Array(B * H * T * T), out = new Float32Array(B * T * C);
      const loss = () => {
        ref.causalAttentionPattern(att, qkv, B, T, C, H, kind);
        ref.attentionApply(out, att, qkv, B, T, C, H);
        return dotR(out, R);
      };
      loss();
      const dqkv = new Float32Array(B * T * 3 * C), datt = new Float32Array(B * H * T * T);
      ref.causalAttentionBackward(dqkv, datt, R, qkv, att, B, T, C, H, kind);
      gradCheck(`causal ${kind} dqkv`, loss, qkv, dqkv);
      for (let r = 0; r < B * H * T; r++) {
        const t = r % T;
        let s = 0;
        for (let k = 0; k < T; k++) {
          if (k > t) assert.equal(att[r * T + k], 0, "above the diagonal");
          s += att[r * T + k]!;
        }
        if (kind === "softmax") assert.ok(Math.abs(s - 1) < 1e-6, "rows are distributions");
      }
      if (kind === "linear") {
        // the scores themselves: q0·k0 / sqrt(hs) at (b 0, h 0, t 0)
        let s = 0;
        for (let j = 0; j < C / H; j++) s += qkv[j]! * qkv[C + j]!;
        assert.ok(Math.abs(att[0]! - s / Math.sqrt(C / H)) < 1e-6);
      }
    });

    it(`causal attention, ${kind}: outputs at t do not depend on inputs after t`, () => {
      const B = 1, T = 6, C = 8, H = 2;
      const qkv = rand(rng, B * T * 3 * C);
      const run = () => {
        const att = new Float32Array(B * H * T * T), out = new Float32Array(B * T * C);
        ref.causalAttentionPattern(att, qkv, B, T, C, H, kind);
        ref.attentionApply(out, att, qkv, B, T, C, H);
        return out;
      };
      const a = run();
      for (let i = (T - 1) * 3 * C; i < T * 3 * C; i++) qkv[i] = qkv[i]! + 1; // the last position's q, k, v
      const b = run();
      assert.deepEqual(b.subarray(0, (T - 1) * C), a.subarray(0, (T - 1) * C));
      assert.notDeepEqual(b.subarray((T - 1) * C), a.subarray((T - 1) * C));
    });
  }

  it("gelu, tanh form: values (0.5 x (1 + tanh u)) and derivative", () => {
    const n = 40;
    const x = rand(rng, n, -5, 5), R = rand(rng, n);
    const out = new Float32Array(n);
    ref.geluTanhForward(out, x, n);
    for (let i = 0; i < n; i++) {
      const v = x[i]!, u = Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3);
      assert.ok(Math.abs(out[i]! - 0.5 * v * (1 + Math.tanh(u))) <= 1e-6 * (1 + Math.abs(v)), `gelu_tanh(${v})`);
    }
    const loss = () => (ref.geluTanhForward(out, x, n), dotR(out, R));
    const dx = new Float32Array(n);
    ref.geluTanhBackward(dx, x, R, n);
    gradCheck("gelu tanh", loss, x, dx);
  });

  it("cross-entropy: mean over counted rows (-1 left out), logits gradient", () => {
    const N = 6, V = 7;
    const logits = rand(rng, N * V, -3, 3);
    const targets = Int32Array.of(3, -1, 0, 6, 6, -1);
    const loss = () => ref.crossEntropy(null, null, logits, targets, N, V, 1);
    const d = new Float32Array(N * V).fill(NaN), rows = new Float32Array(N).fill(NaN), one = new Float32Array(1);
    const mean = ref.crossEntropy(d, rows, logits, targets, N, V, 1, one);
    // by hand: -log softmax
    let sum = 0;
    for (let i = 0; i < N; i++) {
      if (targets[i]! < 0) {
        assert.equal(rows[i], 0);
        for (let c = 0; c < V; c++) assert.equal(d[i * V + c], 0);
        continue;
      }
      let z = 0;
      for (let c = 0; c < V; c++) z += Math.exp(logits[i * V + c]!);
      const nll = Math.log(z) - logits[i * V + targets[i]!]!;
      assert.ok(Math.abs(rows[i]! - nll) < 1e-6);
      sum += nll;
    }
    assert.ok(Math.abs(mean - sum / 4) < 1e-12 && Math.abs(one[0]! - mean) < 1e-6);
    gradCheck("cross-entropy dlogits", loss, logits, d);
    // gradScale multiplies the gradient; no counted row gives 0
    const d2 = new Float32Array(N * V);
    ref.crossEntropy(d2, null, logits, targets, N, V, 0.5);
    assertClose(d2, d.map((x) => 0.5 * x), "gradScale");
    assert.equal(ref.crossEntropy(d2, null, logits, new Int32Array(N).fill(-1), N, V, 1), 0);
    assert.throws(() => ref.crossEntropy(null, null, logits, Int32Array.of(0, 0, 0, 0, 0, 7), N, V, 1), /target 7 at row 5 outside \[0, 7\)/);
    assert.throws(() => ref.crossEntropy(null, null, logits, Int32Array.of(0, -2, 0, 0, 0, 0), N, V, 1), /target -2/);
  });
});

describe("GPT kernels: cpu parity with ref", () => {
  const rng = mulberry32(13);

  for (const kind of ["softmax", "linear"] as const) {
    it(`causal attention ${kind}: pattern, apply, backward`, () => {
      const shapes = [[2, 98, 64, 2], [3, 7, 24, 3], [1, 1, 8, 2], [2, 49, 128, 4], [4, 19, 32, 2]];
      for (const [B, T, C, H] of shapes as [number, number, number, number][]) {
        const what = `causal ${kind} B=${B} T=${T} C=${C} H=${H}`;
        const qkv = view(rand(rng, B * T * 3 * C, -2, 2));
        const ar = new Float32Array(B * H * T * T), ac = view(rand(rng, B * H * T * T));
        ref.causalAttentionPattern(ar, qkv, B, T, C, H, kind);
        cpu().causalAttentionPattern(ac, qkv, B, T, C, H, kind);
        assertClose(ac, ar, `${what} pattern`);
        const or = new Float32Array(B * T * C), oc = view(new Float32Array(B * T * C));
        ref.attentionApply(or, ar, qkv, B, T, C, H);
        cpu().attentionApply(oc, ar, qkv, B, T, C, H);
        assertClose(oc, or, `${what} apply`);
        const dout = view(rand(rng, B * T * C));
        const dr = new Float32Array(B * T * 3 * C), dc = view(rand(rng, B * T * 3 * C));
        ref.causalAttentionBackward(dr, new Float32Array(B * H * T * T), dout, qkv, ar, B, T, C, H, kind);
        cpu().causalAttentionBackward(dc, view(rand(rng, B * H * T * T)), dout, qkv, ar, B, T, C, H, kind);
        assertClose(dc, dr, `${what} backward`);
        for (const v of [ac, oc, dc]) assertSentinels(v, what);
      }
    });
  }

  it("causal attention: the softmax kind's backward equals attentionBackward on a causal pattern", () => {
    const B = 2, T = 21, C = 32, H = 4;
    const qkv = rand(rng, B * T * 3 * C), dout = rand(rng, B * T * C);
    const att = new Float32Array(B * H * T * T);
    cpu().causalAttentionPattern(att, qkv, B, T, C, H, "softmax");
    const a = new Float32Array(B * T * 3 * C), b = new Float32Array(B * T * 3 * C);
    cpu().causalAttentionBackward(a, new Float32Array(att.length), dout, qkv, att, B, T, C, H, "softmax");
    cpu().attentionBackward(b, new Float32Array(att.length), dout, qkv, att, B, T, C, H);
    assertClose(a, b, "causal softmax backward vs attentionBackward");
  });

  it("gelu tanh forward (in place too) and backward (dinp aliasing dout)", () => {
    for (const n of [1, 17, 1001, 100003]) {
      const x = view(rand(rng, n, -8, 8));
      const or = new Float32Array(n), oc = view(new Float32Array(n));
      ref.geluTanhForward(or, x, n);
      cpu().geluTanhForward(oc, x, n);
      assertClose(oc, or, `geluTanhForward n=${n}`);
      const inPlace = view(copy(x));
      cpu().geluTanhForward(inPlace, inPlace, n);
      assert.deepEqual(inPlace, oc, "geluTanhForward in place");
      const dout = rand(rng, n);
      const dr = new Float32Array(n);
      ref.geluTanhBackward(dr, x, dout, n);
      const dc = view(dout);
      cpu().geluTanhBackward(dc, x, dc, n);
      assertClose(dc, dr, `geluTanhBackward n=${n}`);
      assertSentinels(dc, "geluTanhBackward");
    }
  });

  it("gelu tanh is accurate elementwise on a grid [-10, 10]", () => {
    const xs = Float32Array.from({ length: 2001 }, (_, i) => -10 + i * 0.01);
    const n = xs.length;
    const [fr, fc, br, bc] = [0, 0, 0, 0].map(() => new Float32Array(n)) as [F32, F32, F32, F32];
    const ones = new Float32Array(n).fill(1);
    ref.geluTanhForward(fr, xs, n);
    cpu().geluTanhForward(fc, xs, n);
    ref.geluTanhBackward(br, xs, ones, n);
    cpu().geluTanhBackward(bc, xs, ones, n);
    let worstF = 0, worstB = 0;
    for (let i = 0; i < n; i++) {
      // relative per element, with an absolute floor of 1e-7 (the derivative crosses 0 near x = -0.75)
      worstF = Math.max(worstF, Math.abs(fc[i]! - fr[i]!) / (Math.abs(fr[i]!) + 1e-30));
      worstB = Math.max(worstB, Math.abs(bc[i]! - br[i]!) / (Math.abs(br[i]!) + 1e-7));
    }
    // float exp of -2u loses ~|2u|·2^-24 relative: at x = -10, |2u| ≈ 88
    assert.ok(worstF < 1e-5, `gelu tanh forward: worst relative error ${worstF}`);
    assert.ok(worstB < 1e-5, `gelu tanh backward: worst relative error ${worstB}`);
  });

  it("cross-entropy: loss, row losses and dlogits (left-out rows, views, in place)", () => {
    for (const [N, V] of [[7, 405], [294, 405], [5, 1], [33, 2002], [0, 3]] as const) {
      const logits = view(rand(rng, N * V, -6, 6));
      const targets = Int32Array.from({ length: N }, (_, i) => (i % 5 === 2 ? -1 : Math.floor(rng() * V)));
      const [dr, rr, lr] = [new Float32Array(N * V), new Float32Array(N), new Float32Array(1)];
      const [dc, rc, lc] = [view(rand(rng, N * V)), view(rand(rng, N)), view(new Float32Array(1))];
      const mr = ref.crossEntropy(dr, rr, logits, targets, N, V, 0.7, lr);
      const mc = cpu().crossEntropy(dc, rc, logits, targets, N, V, 0.7, lc);
      const what = `crossEntropy N=${N} V=${V}`;
      assert.ok(Math.abs(mc - mr) <= 1e-6 * Math.max(1, mr), `${what}: loss ${mc} vs ${mr}`);
      assert.equal(lc[0], Math.fround(mc));
      assertClose(dc, dr, `${what} dlogits`);
      assertClose(rc, rr, `${what} rowLoss`);
      for (const v of [dc, rc, lc]) assertSentinels(v, what);
      assert.equal(cpu().crossEntropy(null, null, logits, targets, N, V, 1), mc, "without outputs: same loss");
      const inPlace = view(copy(logits));
      cpu().crossEntropy(inPlace, null, inPlace, targets, N, V, 0.7);
      assert.deepEqual(inPlace, dc, "dlogits aliasing logits");
    }
  });

  it("GPT kernels reject wrong lengths, kinds and targets", () => {
    const k = cpu();
    const f = (n: number) => new Float32Array(n);
    assert.throws(() => k.causalAttentionPattern(f(10), f(100), 1, 3, 4, 2, "softmax"), /att has 10/);
    assert.throws(() => k.causalAttentionPattern(f(18), f(36), 1, 3, 4, 2, "cosine" as "softmax"), /kind/);
    assert.throws(() => k.causalAttentionBackward(f(36), f(18), f(11), f(36), f(18), 1, 3, 4, 2, "linear"), /dout has 11/);
    assert.throws(() => k.geluTanhForward(f(3), f(4), 4), /out has 3/);
    assert.throws(() => k.crossEntropy(null, null, f(6), Int32Array.of(0, 3), 2, 3, 1), /target 3 at row 1/);
    assert.throws(() => k.crossEntropy(null, null, f(5), Int32Array.of(0, 1), 2, 3, 1), /logits has 5/);
    assert.throws(() => k.crossEntropy(f(5), null, f(6), Int32Array.of(0, 1), 2, 3, 1), /dlogits has 5/);
    assert.throws(() => k.crossEntropy(null, null, f(6), new Uint32Array(2) as unknown as Int32Array, 2, 3, 1), /Int32Array/);
  });
});
