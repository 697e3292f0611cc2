// Times the cpu kernels: sgemm GFLOP/s on the model's product shapes,
// attention at several head sizes, and every kernel at one model shape.
// Usage: node dist/tools/bench-kernels.js [threads]

import { loadCpuKernels } from "../src/kernels/cpu.js";

const k = loadCpuKernels();
if (process.argv[2]) k.setThreads(Number(process.argv[2]));

function randn(n: number, seed = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

/** Median milliseconds of `reps` timed runs after one warm-up. */
function time(f: () => void, reps = 7): number {
  f();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    f();
    ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return ts.sort((a, b) => a - b)[reps >> 1]!;
}

console.log(`threads ${k.threads()}; ${k.blasInfo()}`);

// --- sgemm: linear forward (N x OC x IC), dinp and dweight products
console.log("\nsgemm                                  ms    GFLOP/s");
for (const [N, OC, IC] of [[12544, 384, 128], [6272, 1024, 256], [6272, 512, 128], [6272, 128, 512]]) {
  const A = randn(N * Math.max(IC, OC)), W = randn(OC * IC), C = new Float32Array(N * Math.max(IC, OC));
  const dw = new Float32Array(OC * IC);
  const flop = 2 * N * OC * IC;
  const cases: [string, () => void][] = [
    [`fwd    ${N}x${OC}x${IC}`, () => k.matmul(C, A, W, N, OC, IC, false, true, 1, 0)],
    [`dinp   ${N}x${IC}x${OC}`, () => k.matmul(C, A, W, N, IC, OC, false, false, 1, 0)],
    [`dW     ${OC}x${IC}x${N}`, () => k.matmul(dw, A, C, OC, IC, N, true, false, 1, 1)],
  ];
  for (const [name, f] of cases) {
    const ms = time(f);
    console.log(`${name.padEnd(34)} ${ms.toFixed(2).padStart(7)} ${(flop / ms / 1e6).toFixed(1).padStart(8)}`);
  }
}

// --- attention at several head sizes
console.log("\nattention (ms)                    pattern   apply  backward");
for (const [B, T, C, H] of [[128, 49, 128, 4], [128, 49, 256, 16], [256, 49, 768, 8], [128, 16, 64, 4]]) {
  const qkv = randn(B * T * 3 * C), att = new Float32Array(B * H * T * T), datt = new Float32Array(B * H * T * T);
  const out = new Float32Array(B * T * C), dout = randn(B * T * C, 2), dqkv = new Float32Array(B * T * 3 * C);
  const ms = [
    time(() => k.attentionPattern(att, qkv, B, T, C, H)),
    time(() => k.attentionApply(out, att, qkv, B, T, C, H)),
    time(() => k.attentionBackward(dqkv, datt, dout, qkv, att, B, T, C, H)),
  ];
  console.log(`B=${B} T=${T} C=${C} H=${H} (hs ${C / H})`.padEnd(34) + ms.map((x) => x.toFixed(2).padStart(8)).join(" "));
}

// --- every kernel at one shape
const [B, T, C, H, F, V] = [128, 49, 128, 4, 512, 2002];
const N = B * T;
console.log(`\nkernels at B=${B} T=${T} C=${C} H=${H} F=${F} (ms)`);
const x = randn(N * C), y = randn(N * C, 3), qkv = randn(N * 3 * C), hF = randn(N * F), dF = randn(N * F, 4);
const wQKV = randn(3 * C * C), bQKV = randn(3 * C), w1 = randn(F * C), b1 = randn(F), w2 = randn(C * F), b2 = randn(C);
const out = new Float32Array(N * F), dinp = new Float32Array(N * F), dW = new Float32Array(F * C), dB = new Float32Array(F);
const att = new Float32Array(B * H * T * T), datt = new Float32Array(B * H * T * T), dqkv = new Float32Array(N * 3 * C);
const mean = new Float32Array(N), rstd = new Float32Array(N), lw = randn(C), lb = randn(C);
const tokens = Int32Array.from({ length: N }, (_, i) => (i * 7919) % V), wte = randn(V * C), wpe = randn(512 * C);
const p = randn(N * C), m = new Float32Array(N * C), v = new Float32Array(N * C);
k.attentionPattern(att, qkv, B, T, C, H);
k.layernormForward(out, mean, rstd, x, lw, lb, N, C, 1e-12);
const rows: [string, () => void][] = [
  ["linearForward qkv (C->3C)", () => k.linearForward(out, x, wQKV, bQKV, N, C, 3 * C)],
  ["linearBackward qkv", () => k.linearBackward(dinp, dW, dB, qkv, x, wQKV, N, C, 3 * C, false)],
  ["linearForward fc1 (C->F)", () => k.linearForward(out, x, w1, b1, N, C, F)],
  ["linearBackward fc1", () => k.linearBackward(dinp, dW, dB, dF, x, w1, N, C, F, false)],
  ["linearForward fc2 (F->C)", () => k.linearForward(out, hF, w2, b2, N, F, C)],
  ["linearBackward fc2", () => k.linearBackward(dinp, dW, dB, x, hF, w2, N, F, C, false)],
  ["attentionPattern", () => k.attentionPattern(att, qkv, B, T, C, H)],
  ["attentionApply", () => k.attentionApply(out, att, qkv, B, T, C, H)],
  ["attentionBackward", () => k.attentionBackward(dqkv, datt, y, qkv, att, B, T, C, H)],
  ["layernormForward", () => k.layernormForward(out, mean, rstd, x, lw, lb, N, C, 1e-12)],
  ["layernormBackward", () => k.layernormBackward(dinp, dW, dB, y, x, lw, mean, rstd, N, C)],
  ["geluForward (N*F)", () => k.geluForward(out, hF, N * F)],
  ["geluBackward (N*F)", () => k.geluBackward(dinp, hF, dF, N * F)],
  ["add (N*C)", () => k.add(out, x, y, N * C)],
  ["embeddingForward", () => k.embeddingForward(out, tokens, wte, wpe, B, T, C)],
  ["embeddingBackward", () => k.embeddingBackward(wte, wpe, x, tokens, B, T, C, 0)],
  ["mse (N)", () => k.mse(dinp, x, y, N, 1 / N)],
  ["adam (N*C params)", () => k.adam(p, x, m, v, N * C, 1e-4, 0.9, 0.999, 1e-8, 1)],
];
for (const [name, f] of rows) console.log(`${name.padEnd(28)} ${time(f).toFixed(3).padStart(8)}`);
