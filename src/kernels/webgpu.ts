// The `webgpu` backend: every kernel of types.ts in WGSL, run through Dawn
// (npm `webgpu`) in Node: Vulkan on Linux, Metal on macOS, D3D12 on Windows.
//
// Design
// - Residency. A tensor is a view (GPUBuffer, element offset, length). The
//   model allocates parameters, gradients, Adam state and activations through
//   `alloc`, so they live on the GPU for the whole run; the trainer downloads
//   the step's outputs (B*T floats, for the metrics) and, at checkpoints, the
//   parameters and Adam state. Views share their buffer (`view`).
// - Bindings. Storage bindings at byte offsets must be 256-byte aligned, so
//   kernels bind whole buffers and get element offsets in a uniform. Every
//   kernel is written against accessors (`ld_x(i)`, `st_x(i, v)`) of its
//   logical tensors; the WGSL header is generated per call pattern with one
//   binding per distinct GPUBuffer, so tensors that share a buffer (weight
//   and bias views of the parameters, an in-place gelu) are legal and never
//   trip WebGPU's writable-aliasing rule.
// - Encoding. Kernel calls only record: dispatches go into one compute pass
//   of one command encoder; uniforms go into a ring (one 256-byte slot per
//   dispatch, dynamic offset) written once per submit. A submit happens only
//   when data must cross: `upload` (submit, then queue.writeBuffer, so it is
//   ordered after earlier kernels), `download` and `finish`. A training step
//   is thus 2-3 submits and one readback. Pipelines (per kernel variant) and
//   bind groups (per variant and buffers) are cached.
// - Kernels. Matrix products: 64x64 or 128x128 output tiles in workgroup
//   memory, 16x16 threads with 4x4 or 8x8 outputs each (2x2 on a software
//   adapter, where larger ones take seconds to compile), bounds-checked loads
//   for any shape and both transposes, vec4 loads along K for linear layers
//   (x W^T with K and offsets multiples of 4), bias and beta in the epilogue.
//   Attention for short sequences: one workgroup per (batch, head) computes
//   the scores, the softmax and, in the backward, dV, the softmax backward,
//   dQ and dK in one dispatch. Reductions over rows (bias, LayerNorm weight,
//   position embedding gradients) are two-stage (chunk partials, then a sum)
//   and deterministic; token-embedding gradients group positions by token on
//   the host (no float atomics). LayerNorm one workgroup per row. GELU with
//   an erfc accurate to ~1.2e-7 relative. Adam and MSE elementwise; the MSE
//   sum is one workgroup.
// - Errors. No adapter, a lost device, a shader that does not compile or
//   any other device error becomes one DeviceError naming the adapter and
//   the kernel, thrown at the next kernel call or wait; the trainer reports
//   it with its last checkpoint.
// - Software adapter (tests, CI): ABRUPT_WEBGPU_SOFTWARE=1 points the Vulkan
//   loader at lavapipe from .cache/lavapipe (scripts/install-vulkan.sh).

import { existsSync } from "node:fs";
import { join } from "node:path";
import { DeviceError } from "../errors.js";
import { repoRoot } from "./cpu.js";
import { countTargets } from "./ref.js";
import type { AttentionKind, F32, Kernels } from "./types.js";

/** A tensor on the GPU: elements [off, off + len) of buf. */
export interface GpuTensor {
  readonly buf: GPUBuffer;
  readonly off: number;
  readonly len: number;
}

type Mode = "r" | "w" | "rw";

/** A WGSL kernel: logical tensors, scalar parameters, and the code. */
export interface KernelDef {
  name: string;
  /** [name, access, element type]; accessors ld_name / st_name are generated (vec4: offsets in vec4s) */
  tensors: Array<[string, Mode, ("f32" | "u32" | "vec4<f32>")?]>;
  /** u32 parameters, read as P.name */
  ints: string[];
  /** f32 parameters, read as P.name */
  floats: string[];
  /** module-scope WGSL with `@compute fn main` (may use P, ld_*, st_*, HAS_*) */
  code: string;
}

interface Variant {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

const SLOT = 256; // bytes of uniforms per dispatch (>= minUniformBufferOffsetAlignment)
const RING_SLOTS = 2048;
const MAX_GROUPS = 65535;

// ---------------------------------------------------------------- kernels

const ELEMENTWISE_GRID = `
fn stride_of(nwg: vec3u) -> u32 { return nwg.x * 256u; }`;

const K_ADD: KernelDef = {
  name: "add",
  tensors: [["out", "w"], ["a", "r"], ["b", "r"]],
  ints: ["n"], floats: [],
  code: `${ELEMENTWISE_GRID}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i < P.n; i += stride_of(nwg)) { st_out(i, ld_a(i) + ld_b(i)); }
}`,
};

// erfc(x) with fractional error < 1.2e-7 everywhere (Numerical Recipes'
// erfcc, a Chebyshev fit of exp(-x^2) t P(t), t = 1/(1 + x/2)).
const ERF = `
fn erfc_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
          t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
          t * (-0.82215223 + t * 0.17087277)))))))));
  return select(2.0 - r, r, x >= 0.0);
}
fn phi_cdf(x: f32) -> f32 { return 0.5 * erfc_(-x * 0.70710678118654752); }`;

const K_GELU_FWD: KernelDef = {
  name: "gelu_forward",
  tensors: [["out", "w"], ["inp", "r"]],
  ints: ["n"], floats: [],
  code: `${ELEMENTWISE_GRID}${ERF}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i < P.n; i += stride_of(nwg)) { let x = ld_inp(i); st_out(i, x * phi_cdf(x)); }
}`,
};

const K_GELU_BWD: KernelDef = {
  name: "gelu_backward",
  tensors: [["dinp", "w"], ["inp", "r"], ["dout", "r"]],
  ints: ["n"], floats: [],
  code: `${ELEMENTWISE_GRID}${ERF}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i < P.n; i += stride_of(nwg)) {
    let x = ld_inp(i);
    let g = phi_cdf(x) + x * 0.3989422804014327 * exp(-0.5 * x * x);
    st_dinp(i, ld_dout(i) * g);
  }
}`,
};

const K_ADAM: KernelDef = {
  name: "adam",
  tensors: [["param", "rw"], ["grad", "r"], ["m", "rw"], ["v", "rw"]],
  ints: ["n"], floats: ["b1", "omb1", "b2", "omb2", "step_size", "bc2_sqrt", "eps", "keep"],
  code: `${ELEMENTWISE_GRID}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i < P.n; i += stride_of(nwg)) {
    let g = ld_grad(i);
    let p = ld_param(i) * P.keep; // keep = 1 - lr*wd (AdamW's decoupled decay; 1 without)
    let m = P.b1 * ld_m(i) + P.omb1 * g;
    let v = P.b2 * ld_v(i) + P.omb2 * g * g;
    st_m(i, m);
    st_v(i, v);
    st_param(i, p - P.step_size * m / (sqrt(v) / P.bc2_sqrt + P.eps));
  }
}`,
};

// torch.optim.SGD without momentum: p -= lr * (g + wd * p)
const K_SGD: KernelDef = {
  name: "sgd",
  tensors: [["param", "rw"], ["grad", "r"]],
  ints: ["n"], floats: ["lr", "wd"],
  code: `${ELEMENTWISE_GRID}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i < P.n; i += stride_of(nwg)) {
    let p = ld_param(i);
    st_param(i, p - P.lr * (ld_grad(i) + P.wd * p));
  }
}`,
};

// One workgroup: dpred (optional) elementwise and the sum of squares.
const K_MSE: KernelDef = {
  name: "mse",
  tensors: [["dpred", "w"], ["pred", "r"], ["target", "r"], ["sse", "w"]],
  ints: ["n"], floats: ["scale"],
  code: `
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = li; i < P.n; i += 256u) {
    let d = ld_pred(i) - ld_target(i);
    if (HAS_dpred) { st_dpred(i, P.scale * 2.0 * d); }
    s += d * d;
  }
  part[li] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { part[li] += part[li + w]; }
    workgroupBarrier();
  }
  if (li == 0u && HAS_sse) { st_sse(0u, part[0]); }
}`,
};

/**
 * C[M,N] = alpha op(A) op(B) (+ bias[col]) + beta C: BM x BN tiles, 16x16
 * threads, TM x TN outputs per thread at rows ty + 16 i, columns tx + 16 j
 * (conflict-free workgroup reads, coalesced writes). Loads walk the
 * contiguous dimension of each operand.
 */
function matmulDef(transA: boolean, transB: boolean, TM: number, vec4: boolean): KernelDef {
  const TN = TM, BM = 16 * TM, BN = 16 * TN, BK = 8;
  // One operand's BK-deep slab into workgroup memory, stored [k][row]:
  // tile As/Bs of `size` rows starting at row `base` (< `limit`), read with
  // `ld`; kContig when the operand is stored [rows, K] (K contiguous).
  const load = (tile: string, size: number, base: string, limit: string, ld: string, kContig: boolean) => vec4
    ? `for (var e = tid; e < ${(size * BK) / 4}u; e += 256u) {
      let rr = e / ${BK / 4}u;
      let kq = e % ${BK / 4}u;
      let r = ${base} + rr;
      var x = vec4<f32>(0.0);
      if (r < ${limit} && k0 + 4u * kq < P.K) { x = ${ld}(r * (P.K / 4u) + k0 / 4u + kq); }
      for (var q = 0u; q < 4u; q++) { ${tile}[(4u * kq + q) * ${size}u + rr] = x[q]; }
    }`
    : `for (var e = tid; e < ${size * BK}u; e += 256u) {
      ${kContig ? `let rr = e / ${BK}u; let kk = e % ${BK}u;` : `let kk = e / ${size}u; let rr = e % ${size}u;`}
      let r = ${base} + rr;
      var x = 0.0;
      if (r < ${limit} && k0 + kk < P.K) { x = ${ld}(${kContig ? "r * P.K + k0 + kk" : `(k0 + kk) * ${limit} + r`}); }
      ${tile}[kk * ${size}u + rr] = x;
    }`;
  // vec4: A [M,K] and B [N,K] (a linear layer's input and weight) read as
  // vec4 along K; K and the offsets are multiples of 4 (checked by the caller).
  const loadA = load("As", BM, "row0", "P.M", "ld_A", !transA);
  const loadB = load("Bs", BN, "col0", "P.N", "ld_B", transB);
  const v4 = vec4 ? "vec4<f32>" : "f32";
  return {
    name: `matmul_${transA ? "t" : "n"}${transB ? "t" : "n"}_${BM}${vec4 ? "_vec4" : ""}`,
    tensors: [["C", "rw"], ["A", "r", v4], ["B", "r", v4], ["bias", "r", v4]],
    ints: ["M", "N", "K"], floats: ["alpha", "beta"],
    code: `
var<workgroup> As: array<f32, ${BK * BM}>; // [kk][row]
var<workgroup> Bs: array<f32, ${BK * BN}>; // [kk][col]
@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * 16u + tx;
  let row0 = wid.y * ${BM}u;
  let col0 = wid.x * ${BN}u;
  var acc: array<f32, ${TM * TN}>;
  var a: array<f32, ${TM}>;
  var b: array<f32, ${TN}>;
  for (var k0 = 0u; k0 < P.K; k0 += ${BK}u) {
    ${loadA}
    ${loadB}
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      for (var i = 0u; i < ${TM}u; i++) { a[i] = As[kk * ${BM}u + ty + 16u * i]; }
      for (var j = 0u; j < ${TN}u; j++) { b[j] = Bs[kk * ${BN}u + tx + 16u * j]; }
      for (var i = 0u; i < ${TM}u; i++) {
        for (var j = 0u; j < ${TN}u; j++) { acc[i * ${TN}u + j] = fma(a[i], b[j], acc[i * ${TN}u + j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${TM}u; i++) {
    let r = row0 + ty + 16u * i;
    if (r >= P.M) { break; }
    for (var j = 0u; j < ${TN}u; j++) {
      let c = col0 + tx + 16u * j;
      if (c >= P.N) { break; }
      var v = P.alpha * acc[i * ${TN}u + j];
      if (HAS_bias) { v += ${vec4 ? "ld_bias(c / 4u)[c % 4u]" : "ld_bias(c)"}; }
      if (P.beta != 0.0) { v += P.beta * ld_C(r * P.N + c); }
      st_C(r * P.N + c, v);
    }
  }
}`,
  };
}

// Column sums, stage 1: part[chunk, c] = sum over rows r of chunk of val(r, c)
// with val = src[r*ld + c] (plain) or dout*(x - mean)*rstd (LayerNorm weight).
// Workgroup: 64 columns x 4 row lanes, ROWS rows per chunk.
const COLSUM_ROWS = 256;
function colsumDef(lnWeight: boolean): KernelDef {
  const val = lnWeight
    ? "ld_src(r * P.ld + c) * (ld_x(r * P.ld + c) - ld_mean(r)) * ld_rstd(r)"
    : "ld_src(r * P.ld + c)";
  return {
    name: lnWeight ? "colsum_lnw" : "colsum",
    tensors: lnWeight
      ? [["part", "w"], ["src", "r"], ["x", "r"], ["mean", "r"], ["rstd", "r"]]
      : [["part", "w"], ["src", "r"]],
    ints: ["rows", "cols", "ld"], floats: [],
    code: `
var<workgroup> acc: array<f32, 256>;
@compute @workgroup_size(64, 4)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let c = wid.x * 64u + lid.x;
  let r0 = wid.y * ${COLSUM_ROWS}u;
  var s = 0.0;
  if (c < P.cols) {
    for (var r = r0 + lid.y; r < min(r0 + ${COLSUM_ROWS}u, P.rows); r += 4u) { s += ${val}; }
  }
  acc[lid.y * 64u + lid.x] = s;
  workgroupBarrier();
  if (lid.y == 0u && c < P.cols) {
    st_part(wid.y * P.cols + c, acc[lid.x] + acc[64u + lid.x] + acc[128u + lid.x] + acc[192u + lid.x]);
  }
}`,
  };
}

const K_COLSUM = colsumDef(false);
const K_COLSUM_LNW = colsumDef(true);
const MATMUL = new Map<string, KernelDef>();

// Column sums, stage 2: dst[c] += sum over chunks of part[chunk, c].
const K_COLSUM_FINAL: KernelDef = {
  name: "colsum_final",
  tensors: [["dst", "rw"], ["part", "r"]],
  ints: ["chunks", "cols"], floats: [],
  code: `${ELEMENTWISE_GRID}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var c = gid.x; c < P.cols; c += stride_of(nwg)) {
    var s = 0.0;
    for (var k = 0u; k < P.chunks; k++) { s += ld_part(k * P.cols + c); }
    st_dst(c, ld_dst(c) + s);
  }
}`,
};

// Rows of a [N, C] matrix, one workgroup (256 threads) per row.
const ROW_REDUCE = `
var<workgroup> red: array<f32, 256>;
fn wg_sum(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { red[li] += red[li + w]; }
    workgroupBarrier();
  }
  let s = red[0];
  workgroupBarrier();
  return s;
}
fn row_of(wid: vec3u) -> u32 { return wid.y * ${MAX_GROUPS}u + wid.x; }`;

const K_LN_FWD: KernelDef = {
  name: "layernorm_forward",
  tensors: [["out", "w"], ["mean", "w"], ["rstd", "w"], ["inp", "r"], ["weight", "r"], ["bias", "r"]],
  ints: ["N", "C"], floats: ["eps"],
  code: `${ROW_REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u) {
  let n = row_of(wid);
  if (n >= P.N) { return; }
  let x = n * P.C;
  var s = 0.0;
  for (var c = li; c < P.C; c += 256u) { s += ld_inp(x + c); }
  let m = wg_sum(li, s) / f32(P.C);
  var q = 0.0;
  for (var c = li; c < P.C; c += 256u) { let d = ld_inp(x + c) - m; q += d * d; }
  let r = inverseSqrt(wg_sum(li, q) / f32(P.C) + P.eps);
  for (var c = li; c < P.C; c += 256u) { st_out(x + c, (ld_inp(x + c) - m) * r * ld_weight(c) + ld_bias(c)); }
  if (li == 0u) { st_mean(n, m); st_rstd(n, r); }
}`,
};

const K_LN_BWD: KernelDef = {
  name: "layernorm_backward",
  tensors: [["dinp", "w"], ["dout", "r"], ["inp", "r"], ["weight", "r"], ["mean", "r"], ["rstd", "r"]],
  ints: ["N", "C"], floats: [],
  code: `${ROW_REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u) {
  let n = row_of(wid);
  if (n >= P.N) { return; }
  let x = n * P.C;
  let m = ld_mean(n);
  let r = ld_rstd(n);
  var s1 = 0.0;
  var s2 = 0.0;
  for (var c = li; c < P.C; c += 256u) {
    let dnorm = ld_dout(x + c) * ld_weight(c);
    s1 += dnorm;
    s2 += dnorm * (ld_inp(x + c) - m) * r;
  }
  let dmean = wg_sum(li, s1) / f32(P.C);
  let dnn = wg_sum(li, s2) / f32(P.C);
  for (var c = li; c < P.C; c += 256u) {
    let norm = (ld_inp(x + c) - m) * r;
    st_dinp(x + c, r * (ld_dout(x + c) * ld_weight(c) - dmean - norm * dnn));
  }
}`,
};

const K_EMB_FWD: KernelDef = {
  name: "embedding_forward",
  tensors: [["out", "w"], ["tokens", "r", "u32"], ["wte", "r"], ["wpe", "r"]],
  ints: ["n", "T", "C"], floats: [],
  code: `${ELEMENTWISE_GRID}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i < P.n; i += stride_of(nwg)) {
    let bt = i / P.C;
    let c = i % P.C;
    st_out(i, ld_wte(ld_tokens(bt) * P.C + c) + ld_wpe((bt % P.T) * P.C + c));
  }
}`,
};

// dwte[tok] += sum of dout over the positions holding tok. groups (u32):
// [tok_0..tok_{U-1} | start_0..start_U | positions grouped by token].
const K_EMB_BWD: KernelDef = {
  name: "embedding_backward",
  tensors: [["dwte", "rw"], ["groups", "r", "u32"], ["dout", "r"]],
  ints: ["U", "C"], floats: [],
  code: `
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u) {
  let u = wid.y * ${MAX_GROUPS}u + wid.x;
  if (u >= P.U) { return; }
  let tok = ld_groups(u);
  let p0 = ld_groups(P.U + u);
  let p1 = ld_groups(P.U + u + 1u);
  let pos = 2u * P.U + 1u;
  for (var c = li; c < P.C; c += 64u) {
    var s = 0.0;
    for (var p = p0; p < p1; p++) { s += ld_dout(ld_groups(pos + p) * P.C + c); }
    st_dwte(tok * P.C + c, ld_dwte(tok * P.C + c) + s);
  }
}`,
};

// Attention for short sequences: one workgroup per (b, h). The pattern is
// built in place in att (scores, then a softmax per row).
const ATT_COMMON = `
fn q_at(b: u32, t: u32, h: u32) -> u32 { return (b * P.T + t) * 3u * P.C + h * P.hs; }
fn k_at(b: u32, t: u32, h: u32) -> u32 { return q_at(b, t, h) + P.C; }
fn v_at(b: u32, t: u32, h: u32) -> u32 { return q_at(b, t, h) + 2u * P.C; }
fn o_at(b: u32, t: u32, h: u32) -> u32 { return (b * P.T + t) * P.C + h * P.hs; }`;

const K_ATT_PATTERN: KernelDef = {
  name: "attention_pattern",
  tensors: [["att", "rw"], ["qkv", "r"], ["bias", "r"]],
  ints: ["T", "C", "H", "hs"], floats: ["scale"],
  code: `${ATT_COMMON}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u) {
  let h = wid.x;
  let b = wid.y;
  let a0 = (b * P.H + h) * P.T * P.T;
  for (var e = li; e < P.T * P.T; e += 256u) {
    let q = q_at(b, e / P.T, h);
    let k = k_at(b, e % P.T, h);
    var s = 0.0;
    for (var j = 0u; j < P.hs; j++) { s = fma(ld_qkv(q + j), ld_qkv(k + j), s); }
    var x = s * P.scale;
    if (HAS_bias) { x += ld_bias(b * P.T * P.T + e); } // bias [B,T,T], shared by the heads
    st_att(a0 + e, x);
  }
  storageBarrier();
  for (var t = li; t < P.T; t += 256u) {
    let r = a0 + t * P.T;
    var mx = ld_att(r);
    for (var k = 1u; k < P.T; k++) { mx = max(mx, ld_att(r + k)); }
    var sum = 0.0;
    for (var k = 0u; k < P.T; k++) { let x = exp(ld_att(r + k) - mx); st_att(r + k, x); sum += x; }
    let inv = 1.0 / sum;
    for (var k = 0u; k < P.T; k++) { st_att(r + k, ld_att(r + k) * inv); }
  }
}`,
};

const K_ATT_APPLY: KernelDef = {
  name: "attention_apply",
  tensors: [["out", "w"], ["att", "r"], ["qkv", "r"]],
  ints: ["n", "T", "C", "H", "hs"], floats: [],
  code: `${ELEMENTWISE_GRID}${ATT_COMMON}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i < P.n; i += stride_of(nwg)) {
    let c = i % P.C;
    let bt = i / P.C;
    let b = bt / P.T;
    let t = bt % P.T;
    let h = c / P.hs;
    let j = c % P.hs;
    let r = ((b * P.H + h) * P.T + t) * P.T;
    var s = 0.0;
    for (var k = 0u; k < P.T; k++) { s = fma(ld_att(r + k), ld_qkv(v_at(b, k, h) + j), s); }
    st_out(i, s);
  }
}`,
};

const K_ATT_BWD: KernelDef = {
  name: "attention_backward",
  tensors: [["dqkv", "w"], ["datt", "rw"], ["dout", "r"], ["qkv", "r"], ["att", "r"]],
  ints: ["T", "C", "H", "hs"], floats: ["scale"],
  code: `${ATT_COMMON}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u) {
  let h = wid.x;
  let b = wid.y;
  let a0 = (b * P.H + h) * P.T * P.T;
  // datt[t,k] = dout[t] . v[k];  dv[k,j] = sum_t att[t,k] dout[t,j]
  for (var e = li; e < P.T * P.T; e += 256u) {
    let o = o_at(b, e / P.T, h);
    let v = v_at(b, e % P.T, h);
    var s = 0.0;
    for (var j = 0u; j < P.hs; j++) { s = fma(ld_dout(o + j), ld_qkv(v + j), s); }
    st_datt(a0 + e, s);
  }
  for (var e = li; e < P.T * P.hs; e += 256u) {
    let k = e / P.hs;
    let j = e % P.hs;
    var s = 0.0;
    for (var t = 0u; t < P.T; t++) { s = fma(ld_att(a0 + t * P.T + k), ld_dout(o_at(b, t, h) + j), s); }
    st_dqkv(v_at(b, k, h) + j, s);
  }
  storageBarrier();
  // softmax backward in place: datt = att (datt - sum_k att datt)
  for (var t = li; t < P.T; t += 256u) {
    let r = a0 + t * P.T;
    var ad = 0.0;
    for (var k = 0u; k < P.T; k++) { ad = fma(ld_att(r + k), ld_datt(r + k), ad); }
    for (var k = 0u; k < P.T; k++) { st_datt(r + k, ld_att(r + k) * (ld_datt(r + k) - ad)); }
  }
  storageBarrier();
  // dq[t] = scale sum_k datt[t,k] k[k];  dk[k] = scale sum_t datt[t,k] q[t]
  for (var e = li; e < P.T * P.hs; e += 256u) {
    let t = e / P.hs;
    let j = e % P.hs;
    var sq = 0.0;
    var sk = 0.0;
    for (var k = 0u; k < P.T; k++) {
      sq = fma(ld_datt(a0 + t * P.T + k), ld_qkv(k_at(b, k, h) + j), sq);
      sk = fma(ld_datt(a0 + k * P.T + t), ld_qkv(q_at(b, k, h) + j), sk);
    }
    st_dqkv(q_at(b, t, h) + j, sq * P.scale);
    st_dqkv(k_at(b, t, h) + j, sk * P.scale);
  }
}`,
};

// ---------------------------------------------------------------- the GPT's kernels

// Causal attention, one workgroup per (b, h) as above. SOFTMAX: softmax over
// k <= t; otherwise the scaled scores (linear variant). Entries k > t are 0.
function causalPatternDef(softmax: boolean): KernelDef {
  return {
    name: `causal_attention_pattern_${softmax ? "softmax" : "linear"}`,
    tensors: [["att", "rw"], ["qkv", "r"]],
    ints: ["T", "C", "H", "hs"], floats: ["scale"],
    code: `${ATT_COMMON}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u) {
  let h = wid.x;
  let b = wid.y;
  let a0 = (b * P.H + h) * P.T * P.T;
  for (var e = li; e < P.T * P.T; e += 256u) {
    let t = e / P.T;
    let kk = e % P.T;
    var s = 0.0;
    if (kk <= t) {
      let q = q_at(b, t, h);
      let k = k_at(b, kk, h);
      for (var j = 0u; j < P.hs; j++) { s = fma(ld_qkv(q + j), ld_qkv(k + j), s); }
    }
    st_att(a0 + e, s * P.scale);
  }
  ${softmax ? `storageBarrier();
  for (var t = li; t < P.T; t += 256u) {
    let r = a0 + t * P.T;
    var mx = ld_att(r);
    for (var k = 1u; k <= t; k++) { mx = max(mx, ld_att(r + k)); }
    var sum = 0.0;
    for (var k = 0u; k <= t; k++) { let x = exp(ld_att(r + k) - mx); st_att(r + k, x); sum += x; }
    let inv = 1.0 / sum;
    for (var k = 0u; k <= t; k++) { st_att(r + k, ld_att(r + k) * inv); }
  }` : ""}
}`,
  };
}

function causalBackwardDef(softmax: boolean): KernelDef {
  return {
    name: `causal_attention_backward_${softmax ? "softmax" : "linear"}`,
    tensors: [["dqkv", "w"], ["datt", "rw"], ["dout", "r"], ["qkv", "r"], ["att", "r"]],
    ints: ["T", "C", "H", "hs"], floats: ["scale"],
    code: `${ATT_COMMON}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u) {
  let h = wid.x;
  let b = wid.y;
  let a0 = (b * P.H + h) * P.T * P.T;
  // datt[t,k] = dout[t] . v[k] for k <= t, 0 above;  dv[k,j] = sum_{t>=k} att[t,k] dout[t,j]
  for (var e = li; e < P.T * P.T; e += 256u) {
    let t = e / P.T;
    let kk = e % P.T;
    var s = 0.0;
    if (kk <= t) {
      let o = o_at(b, t, h);
      let v = v_at(b, kk, h);
      for (var j = 0u; j < P.hs; j++) { s = fma(ld_dout(o + j), ld_qkv(v + j), s); }
    }
    st_datt(a0 + e, s);
  }
  for (var e = li; e < P.T * P.hs; e += 256u) {
    let k = e / P.hs;
    let j = e % P.hs;
    var s = 0.0;
    for (var t = k; t < P.T; t++) { s = fma(ld_att(a0 + t * P.T + k), ld_dout(o_at(b, t, h) + j), s); }
    st_dqkv(v_at(b, k, h) + j, s);
  }
  storageBarrier();
  ${softmax ? `// softmax backward in place: datt = att (datt - sum_{k<=t} att datt)
  for (var t = li; t < P.T; t += 256u) {
    let r = a0 + t * P.T;
    var ad = 0.0;
    for (var k = 0u; k <= t; k++) { ad = fma(ld_att(r + k), ld_datt(r + k), ad); }
    for (var k = 0u; k <= t; k++) { st_datt(r + k, ld_att(r + k) * (ld_datt(r + k) - ad)); }
  }
  storageBarrier();` : ""}
  // dq[t] = scale sum_{k<=t} datt[t,k] k[k];  dk[t] = scale sum_{k>=t} datt[k,t] q[k]
  for (var e = li; e < P.T * P.hs; e += 256u) {
    let t = e / P.hs;
    let j = e % P.hs;
    var sq = 0.0;
    var sk = 0.0;
    for (var k = 0u; k <= t; k++) { sq = fma(ld_datt(a0 + t * P.T + k), ld_qkv(k_at(b, k, h) + j), sq); }
    for (var k = t; k < P.T; k++) { sk = fma(ld_datt(a0 + k * P.T + t), ld_qkv(q_at(b, k, h) + j), sk); }
    st_dqkv(q_at(b, t, h) + j, sq * P.scale);
    st_dqkv(k_at(b, t, h) + j, sk * P.scale);
  }
}`,
  };
}

const K_CAUSAL = {
  pattern: { softmax: causalPatternDef(true), linear: causalPatternDef(false) },
  backward: { softmax: causalBackwardDef(true), linear: causalBackwardDef(false) },
};

// GELU, tanh form, as x sigma(2u) (no cancellation for x << 0).
const GELU_TANH = `
fn gelu_tanh_u(x: f32) -> f32 { return 0.7978845608028654 * (x + 0.044715 * x * x * x); }`;

const K_GELU_TANH_FWD: KernelDef = {
  name: "gelu_tanh_forward",
  tensors: [["out", "w"], ["inp", "r"]],
  ints: ["n"], floats: [],
  code: `${ELEMENTWISE_GRID}${GELU_TANH}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i < P.n; i += stride_of(nwg)) { let x = ld_inp(i); st_out(i, x / (1.0 + exp(-2.0 * gelu_tanh_u(x)))); }
}`,
};

const K_GELU_TANH_BWD: KernelDef = {
  name: "gelu_tanh_backward",
  tensors: [["dinp", "w"], ["inp", "r"], ["dout", "r"]],
  ints: ["n"], floats: [],
  code: `${ELEMENTWISE_GRID}${GELU_TANH}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i < P.n; i += stride_of(nwg)) {
    let x = ld_inp(i);
    let s = 1.0 / (1.0 + exp(-2.0 * gelu_tanh_u(x)));
    let du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
    st_dinp(i, ld_dout(i) * (s + 2.0 * x * s * (1.0 - s) * du));
  }
}`,
};

// Cross-entropy, one workgroup per row: rowloss[n] = logsumexp - logit[target],
// dlogits = g (softmax - onehot); a target >= V (the host's -1) leaves the row
// out (zeros). dlogits may alias logits: every read of a row comes before
// the barrier that precedes its writes.
const K_CE: KernelDef = {
  name: "cross_entropy",
  tensors: [["dlogits", "w"], ["rowloss", "w"], ["logits", "r"], ["targets", "r", "u32"]],
  ints: ["N", "V"], floats: ["g"],
  code: `${ROW_REDUCE}
fn wg_max(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { red[li] = max(red[li], red[li + w]); }
    workgroupBarrier();
  }
  let s = red[0];
  workgroupBarrier();
  return s;
}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3u) {
  let n = row_of(wid);
  if (n >= P.N) { return; }
  let r = n * P.V;
  let tgt = ld_targets(n);
  let valid = tgt < P.V;
  let lt = ld_logits(r + select(0u, tgt, valid));
  var m = -3.0e38;
  for (var c = li; c < P.V; c += 256u) { m = max(m, ld_logits(r + c)); }
  let mx = wg_max(li, m);
  var z = 0.0;
  for (var c = li; c < P.V; c += 256u) { z += exp(ld_logits(r + c) - mx); }
  let lse = mx + log(wg_sum(li, z));
  storageBarrier();
  if (li == 0u) { st_rowloss(n, select(0.0, lse - lt, valid)); }
  if (HAS_dlogits) {
    for (var c = li; c < P.V; c += 256u) {
      let p = exp(ld_logits(r + c) - lse);
      st_dlogits(r + c, select(0.0, P.g * (p - select(0.0, 1.0, c == tgt)), valid));
    }
  }
}`,
};

// loss[0] = scale * sum_i x[i] (one workgroup; the mean of the row losses).
const K_SUM_SCALED: KernelDef = {
  name: "sum_scaled",
  tensors: [["out", "w"], ["x", "r"]],
  ints: ["n"], floats: ["scale"],
  code: `
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = li; i < P.n; i += 256u) { s += ld_x(i); }
  part[li] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { part[li] += part[li + w]; }
    workgroupBarrier();
  }
  if (li == 0u) { st_out(0u, P.scale * part[0]); }
}`,
};

// ---------------------------------------------------------------- the device

interface Dawn {
  create(options: string[]): GPU;
  globals: object;
}

// The object returned by create() must outlive all GPU work (webgpu note).
let gpuRoot: GPU | null = null;
let instance: WebGpuKernels | null = null;

function describe(a: GPUAdapter): string {
  const i = a.info;
  return [i.description || i.device, i.vendor && `(${i.vendor}${i.architecture ? ` ${i.architecture}` : ""})`].filter(Boolean).join(" ") || "unknown adapter";
}

/** The webgpu backend (one device per process; a new one after a loss). */
export async function loadWebGpuKernels(): Promise<WebGpuKernels> {
  if (instance && !instance.isLost()) return instance;
  if (process.env.ABRUPT_WEBGPU_SOFTWARE === "1") {
    // The Vulkan loader reads these when Dawn creates its instance.
    const icd = join(repoRoot(), ".cache", "lavapipe", "lvp_icd.json");
    if (!existsSync(icd)) {
      throw new DeviceError(`webgpu: the software adapter was asked for (ABRUPT_WEBGPU_SOFTWARE=1) but ${icd} is missing: run scripts/install-vulkan.sh`);
    }
    process.env.VK_DRIVER_FILES = icd;
    process.env.VK_ICD_FILENAMES = icd;
  }
  if (!gpuRoot) {
    let dawn: Dawn;
    try {
      dawn = (await import("webgpu")) as unknown as Dawn;
    } catch (e) {
      throw new DeviceError(`webgpu: cannot load Dawn (npm package webgpu): ${(e as Error).message.split("\n")[0]}`);
    }
    Object.assign(globalThis, dawn.globals);
    gpuRoot = dawn.create([]);
  }
  const adapter = await gpuRoot.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    const hint = process.env.ABRUPT_WEBGPU_SOFTWARE === "1"
      ? "lavapipe in .cache/lavapipe did not load"
      : "no Vulkan/Metal/D3D12 driver found; for the CPU software adapter run scripts/install-vulkan.sh and set ABRUPT_WEBGPU_SOFTWARE=1";
    throw new DeviceError(`webgpu: no adapter found (${hint})`);
  }
  const name = describe(adapter);
  const L = adapter.limits;
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
        maxBufferSize: L.maxBufferSize,
        maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
        maxStorageBuffersPerShaderStage: Math.min(L.maxStorageBuffersPerShaderStage, 8),
      },
    });
  } catch (e) {
    throw new DeviceError(`webgpu (${name}): requestDevice failed: ${(e as Error).message.split("\n")[0]}`);
  }
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const software = info.isFallbackAdapter === true || info.architecture === "software" || /llvmpipe|swiftshader|warp/i.test(name);
  instance = new WebGpuKernels(device, name, software);
  return instance;
}

export class WebGpuKernels implements Kernels<GpuTensor> {
  readonly name = "webgpu" as const;
  readonly host = false;
  readonly device: GPUDevice;
  /** the adapter, in words (e.g. "NVIDIA H200 (nvidia hopper)") */
  readonly adapterName: string;
  /** a CPU (software) adapter such as lavapipe */
  readonly software: boolean;
  /** outputs per thread of the matmul tiles (2, 4 or 8), null = by shape and adapter */
  matmulTile: 2 | 4 | 8 | null = null;

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private ring: GPUBuffer;
  private ringData = new ArrayBuffer(RING_SLOTS * SLOT);
  private ringUsed = 0;
  private variants = new Map<string, Variant>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextId = 1;
  private scratch = new Map<string, GpuTensor>();
  private lost: string | null = null;
  private errors: string[] = [];
  private pendingChecks: Promise<void>[] = [];

  constructor(device: GPUDevice, adapterName: string, software: boolean) {
    this.device = device;
    this.adapterName = adapterName;
    this.software = software;
    this.ring = device.createBuffer({ label: "uniforms", size: RING_SLOTS * SLOT, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    void device.lost.then((info) => {
      this.lost ??= `${info.reason}${info.message ? `: ${info.message.split("\n")[0]}` : ""}`;
    });
    device.onuncapturederror = (ev) => {
      this.errors.push(ev.error.message.split("\n")[0]!);
    };
  }

  /** The kernel variants compiled so far (name|buffer slots|present tensors). */
  compiledKernels(): string[] {
    return [...this.variants.keys()];
  }

  isLost(): boolean {
    return this.lost !== null;
  }

  /** Releases the device (later calls fail as on a lost device). */
  destroy(): void {
    this.device.destroy();
    this.lost ??= "destroyed";
  }

  threads(): number {
    return 1;
  }

  // ------------------------------------------------------------- errors

  private fail(what: string): never {
    throw new DeviceError(`webgpu (${this.adapterName}): ${what}`);
  }

  private checkAlive(kernel: string): void {
    if (this.lost !== null) this.fail(`device lost (${this.lost}) before kernel ${kernel}`);
    if (this.errors.length > 0) {
      const e = this.errors.splice(0);
      this.fail(`${e[0]}${e.length > 1 ? ` (and ${e.length - 1} more errors)` : ""}`);
    }
  }

  /** Waits for pending shader checks, then throws the first device error if any. */
  private async settle(what: string): Promise<void> {
    const checks = this.pendingChecks.splice(0);
    await Promise.all(checks);
    this.checkAlive(what);
  }

  // ------------------------------------------------------------- memory

  alloc(n: number): GpuTensor {
    this.checkAlive("alloc");
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`alloc: bad size ${n}`);
    const bytes = Math.max(16, Math.ceil((n * 4) / 16) * 16);
    if (bytes > this.device.limits.maxStorageBufferBindingSize) {
      this.fail(`a tensor of ${n} floats (${(bytes / 2 ** 20).toFixed(0)} MiB) exceeds the adapter's storage binding limit of ${(this.device.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB`);
    }
    const buf = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    return { buf, off: 0, len: n };
  }

  view(t: GpuTensor, offset: number, n: number): GpuTensor {
    if (offset < 0 || n < 0 || offset + n > t.len) throw new RangeError(`view [${offset}, ${offset + n}) outside a tensor of ${t.len}`);
    return { buf: t.buf, off: t.off + offset, len: n };
  }

  size(t: GpuTensor): number {
    return t.len;
  }

  upload(dst: GpuTensor, src: F32): void {
    this.checkAlive("upload");
    if (src.length > dst.len) throw new RangeError(`upload: ${src.length} floats into a tensor of ${dst.len}`);
    this.submit(); // the write lands after every kernel recorded so far
    this.device.queue.writeBuffer(dst.buf, dst.off * 4, src.buffer, src.byteOffset, src.byteLength);
  }

  private uploadU32(dst: GpuTensor, src: Uint32Array): void {
    this.submit();
    this.device.queue.writeBuffer(dst.buf, dst.off * 4, src.buffer, src.byteOffset, src.byteLength);
  }

  async download(t: GpuTensor): Promise<F32> {
    this.checkAlive("download");
    const bytes = t.len * 4;
    if (bytes === 0) return new Float32Array(0);
    const staging = this.device.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.endPass();
    this.enc().copyBufferToBuffer(t.buf, t.off * 4, staging, 0, bytes);
    this.submit();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      await this.settle("download");
      this.fail(`reading back a tensor failed (${(e as Error).message.split("\n")[0]})`);
    }
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    await this.settle("download");
    return out;
  }

  zero(t: GpuTensor): void {
    this.checkAlive("zero");
    if (t.len === 0) return;
    this.endPass();
    this.enc().clearBuffer(t.buf, t.off * 4, t.len * 4);
  }

  copy(dst: GpuTensor, src: GpuTensor, n: number): void {
    this.checkAlive("copy");
    if (n > dst.len || n > src.len) throw new RangeError(`copy: ${n} floats between tensors of ${src.len} and ${dst.len}`);
    if (n === 0) return;
    this.endPass();
    this.enc().copyBufferToBuffer(src.buf, src.off * 4, dst.buf, dst.off * 4, n * 4);
  }

  async finish(): Promise<void> {
    this.checkAlive("finish");
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    await this.settle("finish");
  }

  // ----------------------------------------------------------- encoding

  private enc(): GPUCommandEncoder {
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** Submits everything recorded so far (uniforms first). */
  private submit(): void {
    this.endPass();
    if (!this.encoder) return;
    if (this.ringUsed > 0) this.device.queue.writeBuffer(this.ring, 0, this.ringData, 0, this.ringUsed * SLOT);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.ringUsed = 0;
  }

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) {
      id = this.nextId++;
      this.bufferIds.set(b, id);
    }
    return id;
  }

  /** An internal scratch tensor of at least n elements (grown on demand). */
  private scratchOf(name: string, n: number): GpuTensor {
    let s = this.scratch.get(name);
    if (!s || s.len < n) {
      s = this.alloc(Math.max(n, 2 * (s?.len ?? 0), 1024));
      this.scratch.set(name, s);
    }
    return s;
  }

  private variant(def: KernelDef, slots: number[], present: boolean[], modes: Mode[]): Variant {
    const key = `${def.name}|${slots.join(",")}|${present.map(Number).join("")}`;
    let v = this.variants.get(key);
    if (v) return v;
    // one binding per distinct buffer, read_write if any tensor on it is written
    const nb = Math.max(-1, ...slots) + 1;
    const writable = Array.from({ length: nb }, (_, s) => def.tensors.some((_t, i) => present[i] && slots[i] === s && modes[i] !== "r"));
    const elemOf = (s: number) => def.tensors.find((_t, i) => present[i] && slots[i] === s)?.[2] ?? "f32";
    const fields = [...def.tensors.map(([t]) => `${t}_off: u32`), ...def.ints.map((x) => `${x}: u32`), ...def.floats.map((x) => `${x}: f32`)];
    let code = `struct Params { ${fields.join(", ")} }\n@group(0) @binding(0) var<uniform> P: Params;\n`;
    for (let s = 0; s < nb; s++) {
      code += `@group(0) @binding(${s + 1}) var<storage, ${writable[s] ? "read_write" : "read"}> b${s}: array<${elemOf(s)}>;\n`;
    }
    def.tensors.forEach(([t, mode, ty = "f32"], i) => {
      code += `const HAS_${t} = ${present[i]};\n`;
      if (present[i]) {
        const b = `b${slots[i]}`;
        code += `fn ld_${t}(i: u32) -> ${ty} { return ${b}[P.${t}_off + i]; }\n`;
        if (mode !== "r") code += `fn st_${t}(i: u32, v: ${ty}) { ${b}[P.${t}_off + i] = v; }\n`;
      } else {
        code += `fn ld_${t}(i: u32) -> ${ty} { return ${ty}(0.0); }\n`;
        if (mode !== "r") code += `fn st_${t}(i: u32, v: ${ty}) { }\n`;
      }
    });
    code += def.code;
    const d = this.device;
    const layout = d.createBindGroupLayout({
      label: def.name,
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform", hasDynamicOffset: true } },
        ...writable.map((w, s) => ({ binding: s + 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: w ? "storage" as const : "read-only-storage" as const } })),
      ],
    });
    d.pushErrorScope("validation");
    d.pushErrorScope("internal");
    const module = d.createShaderModule({ label: def.name, code });
    const pipeline = d.createComputePipeline({ label: def.name, layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: "main" } });
    const scopes = [d.popErrorScope(), d.popErrorScope()];
    this.pendingChecks.push(
      Promise.all([module.getCompilationInfo(), ...scopes]).then(([info, e1, e2]) => {
        const msg = (info as GPUCompilationInfo).messages.find((m) => m.type === "error");
        const err = (e1 ?? e2) as GPUError | null;
        if (msg) this.errors.unshift(`shader of kernel ${def.name} does not compile: ${msg.lineNum}:${msg.linePos}: ${msg.message}`);
        else if (err) this.errors.unshift(`kernel ${def.name}: ${err.message.split("\n")[0]}`);
      }),
    );
    v = { pipeline, layout };
    this.variants.set(key, v);
    return v;
  }

  /**
   * Records one dispatch of a kernel: tensors in def.tensors order (null =
   * absent), u32 and f32 parameters in def order, and the workgroup grid.
   */
  run(def: KernelDef, tensors: Array<GpuTensor | null>, ints: number[], floats: number[], grid: [number, number?, number?]): void {
    this.checkAlive(def.name);
    if (tensors.length !== def.tensors.length || ints.length !== def.ints.length || floats.length !== def.floats.length) {
      throw new Error(`run ${def.name}: wrong number of arguments`);
    }
    const bufs: GPUBuffer[] = [];
    const slots = tensors.map((t) => {
      if (!t) return -1;
      let s = bufs.indexOf(t.buf);
      if (s < 0) s = bufs.push(t.buf) - 1;
      return s;
    });
    const present = tensors.map((t) => t !== null);
    const v = this.variant(def, slots, present, def.tensors.map(([, m]) => m));

    if (this.ringUsed === RING_SLOTS) this.submit();
    const slot = this.ringUsed++;
    const dv = new DataView(this.ringData, slot * SLOT, SLOT);
    let o = 0;
    tensors.forEach((t, i) => {
      dv.setUint32(o, t ? (def.tensors[i]![2] === "vec4<f32>" ? t.off / 4 : t.off) : 0, true);
      o += 4;
    });
    for (const x of ints) { dv.setUint32(o, x, true); o += 4; }
    for (const x of floats) { dv.setFloat32(o, x, true); o += 4; }
    if (o > SLOT) throw new Error(`run ${def.name}: too many parameters`);

    const bgKey = `${def.name}|${slots.join(",")}|${bufs.map((b) => this.bufferId(b)).join(",")}`;
    let bg = this.bindGroups.get(bgKey);
    if (!bg) {
      bg = this.device.createBindGroup({
        layout: v.layout,
        entries: [{ binding: 0, resource: { buffer: this.ring, size: SLOT } }, ...bufs.map((buffer, s) => ({ binding: s + 1, resource: { buffer } }))],
      });
      this.bindGroups.set(bgKey, bg);
    }
    const [x, y = 1, z = 1] = grid;
    if (x === 0 || y === 0 || z === 0) return;
    if (x > MAX_GROUPS || y > MAX_GROUPS || z > MAX_GROUPS) throw new Error(`run ${def.name}: grid ${x}x${y}x${z} too large`);
    this.pass ??= this.enc().beginComputePass();
    this.pass.setPipeline(v.pipeline);
    this.pass.setBindGroup(0, bg, [slot * SLOT]);
    this.pass.dispatchWorkgroups(x, y, z);
  }

  /** Workgroups for a grid-stride loop over n elements. */
  private gridFor(n: number): [number] {
    return [Math.min(Math.ceil(n / 256), 4096)];
  }

  /** Workgroups for one per row, rows laid out as y * 65535 + x. */
  private rowsGrid(n: number): [number, number] {
    return [Math.min(n, MAX_GROUPS), Math.ceil(n / MAX_GROUPS)];
  }

  private need(t: GpuTensor | null, n: number, what: string): void {
    if (t && t.len < n) throw new RangeError(`${what}: length ${t.len} < required ${n}`);
  }

  private noOverlap(what: string, out: GpuTensor, ...ins: Array<GpuTensor | null>): void {
    for (const t of ins) {
      if (t && t.buf === out.buf && t.off < out.off + out.len && out.off < t.off + t.len) {
        throw new RangeError(`${what}: output overlaps an input`);
      }
    }
  }

  // ------------------------------------------------------------ kernels

  matmul(C: GpuTensor, A: GpuTensor, B: GpuTensor, M: number, N: number, K: number, transA: boolean, transB: boolean, alpha: number, beta: number): void {
    this.gemm(C, A, B, null, M, N, K, transA, transB, alpha, beta);
  }

  private gemm(C: GpuTensor, A: GpuTensor, B: GpuTensor, bias: GpuTensor | null, M: number, N: number, K: number, transA: boolean, transB: boolean, alpha: number, beta: number): void {
    this.need(A, M * K, "matmul A");
    this.need(B, K * N, "matmul B");
    this.need(C, M * N, "matmul C");
    this.need(bias, N, "matmul bias");
    this.noOverlap("matmul", C, A, B, bias);
    if (M === 0 || N === 0) return;
    // 128x128 tiles once there are enough of them to fill a GPU
    // outputs per thread: 8x8 (128x128 tiles) once there are enough tiles to
    // fill a GPU, else 4x4; 2x2 on a software adapter, whose compiler
    // (LLVM in lavapipe) takes seconds on larger register tiles.
    const TM = this.matmulTile ?? (this.software ? 2 : M >= 1024 && N >= 256 ? 8 : 4);
    const tile = 16 * TM;
    // vec4 loads for A [M,K] @ B [N,K]^T (linear layers) when K and the
    // offsets allow and no other tensor shares their buffers as floats
    const vec4 = !transA && transB && K % 4 === 0 && A.off % 4 === 0 && B.off % 4 === 0 && C.buf !== A.buf && C.buf !== B.buf &&
      (!bias || (bias.off % 4 === 0 && bias.buf !== C.buf));
    const key = `${transA}${transB}${TM}${vec4}`;
    let def = MATMUL.get(key);
    if (!def) MATMUL.set(key, (def = matmulDef(transA, transB, TM, vec4)));
    this.run(def, [C, A, B, bias], [M, N, K], [alpha, beta], [Math.ceil(N / tile), Math.ceil(M / tile)]);
  }

  linearForward(out: GpuTensor, inp: GpuTensor, weight: GpuTensor, bias: GpuTensor | null, N: number, IC: number, OC: number): void {
    this.gemm(out, inp, weight, bias, N, OC, IC, false, true, 1, 0);
  }

  linearBackward(
    dinp: GpuTensor | null, dweight: GpuTensor | null, dbias: GpuTensor | null,
    dout: GpuTensor, inp: GpuTensor, weight: GpuTensor,
    N: number, IC: number, OC: number, accumulateDinp: boolean,
  ): void {
    this.need(dout, N * OC, "linearBackward dout");
    // dinp[N,IC] = dout[N,OC] @ weight[OC,IC]
    if (dinp) this.gemm(dinp, dout, weight, null, N, IC, OC, false, false, 1, accumulateDinp ? 1 : 0);
    // dweight[OC,IC] += dout^T @ inp[N,IC]
    if (dweight) this.gemm(dweight, dout, inp, null, OC, IC, N, true, false, 1, 1);
    if (dbias) this.colsum(dbias, dout, null, N, OC, OC);
  }

  /** dst[c] += sum_r val(r, c) over rows r < rows (val: src[r*ld+c], or the LayerNorm weight gradient). */
  private colsum(dst: GpuTensor, src: GpuTensor, ln: { x: GpuTensor; mean: GpuTensor; rstd: GpuTensor } | null, rows: number, cols: number, ld: number): void {
    this.need(dst, cols, "colsum dst");
    const chunks = Math.ceil(rows / COLSUM_ROWS);
    if (chunks === 0 || cols === 0) return;
    const part = this.scratchOf("colsum", chunks * cols);
    if (ln) this.run(K_COLSUM_LNW, [part, src, ln.x, ln.mean, ln.rstd], [rows, cols, ld], [], [Math.ceil(cols / 64), chunks]);
    else this.run(K_COLSUM, [part, src], [rows, cols, ld], [], [Math.ceil(cols / 64), chunks]);
    this.run(K_COLSUM_FINAL, [dst, part], [chunks, cols], [], this.gridFor(cols));
  }

  embeddingForward(out: GpuTensor, tokens: Int32Array, wte: GpuTensor, wpe: GpuTensor, B: number, T: number, C: number): void {
    const n = B * T;
    if (tokens.length < n) throw new RangeError(`embeddingForward tokens: length ${tokens.length} < required ${n}`);
    this.need(wpe, T * C, "embeddingForward wpe");
    this.need(out, n * C, "embeddingForward out");
    const V = Math.floor(wte.len / C);
    for (let i = 0; i < n; i++) {
      const tok = tokens[i]!;
      if (!(tok >= 0 && tok < V)) throw new RangeError(`embeddingForward: token ${tok} outside [0, ${V})`);
    }
    const tok = this.scratchOf("tokens", n);
    this.uploadU32(tok, new Uint32Array(tokens.buffer, tokens.byteOffset, n));
    this.run(K_EMB_FWD, [out, this.view(tok, 0, n), wte, wpe], [n * C, T, C], [], this.gridFor(n * C));
  }

  embeddingBackward(dwte: GpuTensor | null, dwpe: GpuTensor | null, dout: GpuTensor, tokens: Int32Array, B: number, T: number, C: number, paddingIdx: number): void {
    const n = B * T;
    if (tokens.length < n) throw new RangeError(`embeddingBackward tokens: length ${tokens.length} < required ${n}`);
    this.need(dout, n * C, "embeddingBackward dout");
    if (dwte) {
      // group positions by token on the host: no float atomics on the GPU
      const V = Math.floor(dwte.len / C);
      const count = new Uint32Array(V);
      for (let i = 0; i < n; i++) {
        const tok = tokens[i]!;
        if (!(tok >= 0 && tok < V)) throw new RangeError(`embeddingBackward: token ${tok} outside [0, ${V})`);
        if (tok !== paddingIdx) count[tok]!++;
      }
      const uniq: number[] = [];
      for (let v = 0; v < V; v++) if (count[v]! > 0) uniq.push(v);
      const U = uniq.length;
      const g = new Uint32Array(2 * U + 1 + n);
      const next = new Uint32Array(V);
      let p = 0;
      uniq.forEach((v, u) => {
        g[u] = v;
        g[U + u] = p;
        next[v] = p;
        p += count[v]!;
      });
      g[2 * U] = p;
      for (let i = 0; i < n; i++) {
        const tok = tokens[i]!;
        if (tok !== paddingIdx) g[2 * U + 1 + next[tok]!++] = i;
      }
      if (U > 0) {
        const groups = this.scratchOf("groups", g.length);
        this.uploadU32(groups, g);
        this.run(K_EMB_BWD, [dwte, this.view(groups, 0, g.length), dout], [U, C], [], this.rowsGrid(U));
      }
    }
    if (dwpe) {
      this.need(dwpe, T * C, "embeddingBackward dwpe");
      this.colsum(dwpe, dout, null, B, T * C, T * C);
    }
  }

  layernormForward(out: GpuTensor, mean: GpuTensor, rstd: GpuTensor, inp: GpuTensor, weight: GpuTensor, bias: GpuTensor, N: number, C: number, eps: number): void {
    this.need(inp, N * C, "layernormForward inp");
    this.need(out, N * C, "layernormForward out");
    this.need(mean, N, "layernormForward mean");
    this.need(rstd, N, "layernormForward rstd");
    this.need(weight, C, "layernormForward weight");
    this.need(bias, C, "layernormForward bias");
    this.noOverlap("layernormForward", out, inp);
    this.run(K_LN_FWD, [out, mean, rstd, inp, weight, bias], [N, C], [eps], this.rowsGrid(N));
  }

  layernormBackward(
    dinp: GpuTensor, dweight: GpuTensor | null, dbias: GpuTensor | null,
    dout: GpuTensor, inp: GpuTensor, weight: GpuTensor, mean: GpuTensor, rstd: GpuTensor, N: number, C: number,
  ): void {
    this.need(inp, N * C, "layernormBackward inp");
    this.need(dout, N * C, "layernormBackward dout");
    this.need(dinp, N * C, "layernormBackward dinp");
    this.noOverlap("layernormBackward", dinp, dout, inp);
    this.run(K_LN_BWD, [dinp, dout, inp, weight, mean, rstd], [N, C], [], this.rowsGrid(N));
    if (dweight) this.colsum(dweight, dout, { x: inp, mean, rstd }, N, C, C);
    if (dbias) this.colsum(dbias, dout, null, N, C, C);
  }

  private checkAttention(qkv: GpuTensor, B: number, T: number, C: number, H: number): void {
    if (!(Number.isInteger(H) && H > 0 && C % H === 0)) throw new RangeError(`attention: C=${C} not divisible by H=${H}`);
    this.need(qkv, B * T * 3 * C, "attention qkv");
    if (B > MAX_GROUPS || H > MAX_GROUPS) throw new RangeError(`attention: B=${B}, H=${H} too large`);
  }

  attentionPattern(att: GpuTensor, qkv: GpuTensor, B: number, T: number, C: number, H: number, bias?: GpuTensor | null): void {
    this.checkAttention(qkv, B, T, C, H);
    this.need(att, B * H * T * T, "attentionPattern att");
    this.need(bias ?? null, B * T * T, "attentionPattern bias");
    if (bias) this.noOverlap("attentionPattern", att, bias);
    const hs = C / H;
    this.run(K_ATT_PATTERN, [att, qkv, bias ?? null], [T, C, H, hs], [1 / Math.sqrt(hs)], [H, B]);
  }

  attentionApply(out: GpuTensor, att: GpuTensor, qkv: GpuTensor, B: number, T: number, C: number, H: number): void {
    this.checkAttention(qkv, B, T, C, H);
    this.need(att, B * H * T * T, "attentionApply att");
    this.need(out, B * T * C, "attentionApply out");
    this.noOverlap("attentionApply", out, att, qkv);
    this.run(K_ATT_APPLY, [out, att, qkv], [B * T * C, T, C, H, C / H], [], this.gridFor(B * T * C));
  }

  attentionBackward(dqkv: GpuTensor, datt: GpuTensor, dout: GpuTensor, qkv: GpuTensor, att: GpuTensor, B: number, T: number, C: number, H: number): void {
    this.checkAttention(qkv, B, T, C, H);
    this.need(att, B * H * T * T, "attentionBackward att");
    this.need(datt, B * H * T * T, "attentionBackward datt");
    this.need(dout, B * T * C, "attentionBackward dout");
    this.need(dqkv, B * T * 3 * C, "attentionBackward dqkv");
    this.noOverlap("attentionBackward", dqkv, datt, dout, qkv, att);
    const hs = C / H;
    this.run(K_ATT_BWD, [dqkv, datt, dout, qkv, att], [T, C, H, hs], [1 / Math.sqrt(hs)], [H, B]);
  }

  geluForward(out: GpuTensor, inp: GpuTensor, n: number): void {
    this.need(inp, n, "geluForward inp");
    this.need(out, n, "geluForward out");
    this.run(K_GELU_FWD, [out, inp], [n], [], this.gridFor(n));
  }

  geluBackward(dinp: GpuTensor, inp: GpuTensor, dout: GpuTensor, n: number): void {
    this.need(inp, n, "geluBackward inp");
    this.need(dout, n, "geluBackward dout");
    this.need(dinp, n, "geluBackward dinp");
    this.run(K_GELU_BWD, [dinp, inp, dout], [n], [], this.gridFor(n));
  }

  add(out: GpuTensor, a: GpuTensor, b: GpuTensor, n: number): void {
    this.need(a, n, "add a");
    this.need(b, n, "add b");
    this.need(out, n, "add out");
    this.run(K_ADD, [out, a, b], [n], [], this.gridFor(n));
  }

  mse(dpred: GpuTensor | null, pred: GpuTensor, target: GpuTensor, n: number, gradScale: number, sse?: GpuTensor | null): number {
    this.need(pred, n, "mse pred");
    this.need(target, n, "mse target");
    this.need(dpred, n, "mse dpred");
    this.need(sse ?? null, 1, "mse sse");
    if (dpred || sse) this.run(K_MSE, [dpred, pred, target, sse ?? null], [n], [gradScale], [1]);
    return NaN;
  }

  adam(param: GpuTensor, grad: GpuTensor, m: GpuTensor, v: GpuTensor, n: number, lr: number, beta1: number, beta2: number, eps: number, step: number, weightDecay = 0): void {
    this.need(param, n, "adam param");
    this.need(grad, n, "adam grad");
    this.need(m, n, "adam m");
    this.need(v, n, "adam v");
    if (!(Number.isInteger(step) && step >= 1)) throw new RangeError(`adam: step ${step} must be an integer >= 1`);
    const stepSize = lr / (1 - beta1 ** step);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
    this.run(K_ADAM, [param, grad, m, v], [n], [beta1, 1 - beta1, beta2, 1 - beta2, stepSize, bc2Sqrt, eps, 1 - lr * weightDecay], this.gridFor(n));
  }

  sgd(param: GpuTensor, grad: GpuTensor, n: number, lr: number, weightDecay = 0): void {
    this.need(param, n, "sgd param");
    this.need(grad, n, "sgd grad");
    this.noOverlap("sgd", param, grad);
    this.run(K_SGD, [param, grad], [n], [lr, weightDecay], this.gridFor(n));
  }

  // ------------------------------------------------------ the GPT's kernels

  private kindOf(kind: AttentionKind): AttentionKind {
    if (kind !== "softmax" && kind !== "linear") throw new RangeError(`causal attention: kind must be "softmax" or "linear", got ${String(kind)}`);
    return kind;
  }

  causalAttentionPattern(att: GpuTensor, qkv: GpuTensor, B: number, T: number, C: number, H: number, kind: AttentionKind): void {
    this.checkAttention(qkv, B, T, C, H);
    this.need(att, B * H * T * T, "causalAttentionPattern att");
    this.noOverlap("causalAttentionPattern", att, qkv);
    const hs = C / H;
    this.run(K_CAUSAL.pattern[this.kindOf(kind)], [att, qkv], [T, C, H, hs], [1 / Math.sqrt(hs)], [H, B]);
  }

  causalAttentionBackward(dqkv: GpuTensor, datt: GpuTensor, dout: GpuTensor, qkv: GpuTensor, att: GpuTensor, B: number, T: number, C: number, H: number, kind: AttentionKind): void {
    this.checkAttention(qkv, B, T, C, H);
    this.need(att, B * H * T * T, "causalAttentionBackward att");
    this.need(datt, B * H * T * T, "causalAttentionBackward datt");
    this.need(dout, B * T * C, "causalAttentionBackward dout");
    this.need(dqkv, B * T * 3 * C, "causalAttentionBackward dqkv");
    this.noOverlap("causalAttentionBackward", dqkv, datt, dout, qkv, att);
    const hs = C / H;
    this.run(K_CAUSAL.backward[this.kindOf(kind)], [dqkv, datt, dout, qkv, att], [T, C, H, hs], [1 / Math.sqrt(hs)], [H, B]);
  }

  geluTanhForward(out: GpuTensor, inp: GpuTensor, n: number): void {
    this.need(inp, n, "geluTanhForward inp");
    this.need(out, n, "geluTanhForward out");
    this.run(K_GELU_TANH_FWD, [out, inp], [n], [], this.gridFor(n));
  }

  geluTanhBackward(dinp: GpuTensor, inp: GpuTensor, dout: GpuTensor, n: number): void {
    this.need(inp, n, "geluTanhBackward inp");
    this.need(dout, n, "geluTanhBackward dout");
    this.need(dinp, n, "geluTanhBackward dinp");
    this.run(K_GELU_TANH_BWD, [dinp, inp, dout], [n], [], this.gridFor(n));
  }

  crossEntropy(dlogits: GpuTensor | null, rowLoss: GpuTensor | null, logits: GpuTensor, targets: Int32Array, N: number, V: number, gradScale: number, loss?: GpuTensor | null): number {
    this.need(logits, N * V, "crossEntropy logits");
    if (targets.length < N) throw new RangeError(`crossEntropy targets: length ${targets.length} < required ${N}`);
    this.need(dlogits, N * V, "crossEntropy dlogits");
    this.need(rowLoss, N, "crossEntropy rowLoss");
    this.need(loss ?? null, 1, "crossEntropy loss");
    if (rowLoss) this.noOverlap("crossEntropy", rowLoss, logits, dlogits);
    const count = countTargets(targets, N, V);
    if (N === 0) {
      if (loss) this.upload(loss, Float32Array.of(0));
      return NaN;
    }
    const tgt = this.scratchOf("targets", N);
    this.uploadU32(tgt, new Uint32Array(targets.buffer, targets.byteOffset, N));
    const rows = rowLoss ?? (loss ? this.scratchOf("rowloss", N) : null);
    this.run(K_CE, [dlogits, rows, logits, this.view(tgt, 0, N)], [N, V], [count > 0 ? gradScale / count : 0], this.rowsGrid(N));
    if (loss && rows) this.run(K_SUM_SCALED, [loss, rows], [N], [count > 0 ? 1 / count : 0], [1]);
    return NaN;
  }
}
