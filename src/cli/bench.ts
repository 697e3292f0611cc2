// `abrupt bench` (npm run bench): ms per training step for the benchmark
// sizes on each backend, the machine's sgemm rate measured in the same run,
// the achieved fraction of it, and peak memory. Each measurement runs in its
// own child process so its peak RSS is its own.

import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { allocBatch, sampleBatch } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import { getKernels } from "../kernels/index.js";
import type { BackendName } from "../kernels/types.js";
import { Bert } from "../model/bert.js";

export interface BenchSize {
  L: number; H: number; d: number; ff: number; B: number; m: number; n: number;
}

export const BENCH_SIZES: Record<string, BenchSize> = {
  S: { L: 2, H: 4, d: 128, ff: 512, B: 128, m: 7, n: 7 },
  M: { L: 4, H: 8, d: 256, ff: 1024, B: 256, m: 7, n: 7 },
  P: { L: 4, H: 8, d: 768, ff: 3072, B: 256, m: 7, n: 7 },
};

/** FLOPs of one training step (forward + backward ≈ 3× the forward products). */
export function stepFlops(s: BenchSize): number {
  const T = s.m * s.n;
  const N = s.B * T;
  const perLayer = 2 * N * (3 * s.d * s.d + s.d * s.d + 2 * s.d * s.ff) + 4 * s.B * T * T * s.d;
  return 3 * (s.L * perLayer + 2 * N * s.d);
}

export interface ChildResult {
  size: string;
  backend: BackendName;
  steps: number;
  msPerStep: number;
  msAll: number[];
  maxRssMB: number;
}

/** Runs `steps` timed training steps (after one warm-up step) in this process. */
export function benchInProcess(size: string, backend: BackendName, steps: number, threads: number): ChildResult {
  const s = BENCH_SIZES[size];
  if (!s) throw new AbruptError(`unknown bench size "${size}" (sizes: ${Object.keys(BENCH_SIZES).join(", ")})`);
  const k = getKernels(backend);
  if (threads > 0) k.setThreads?.(threads);
  const model = new Bert({ vocab: 2002, positions: 512, L: s.L, H: s.H, d: s.d, ff: s.ff, lnEps: 1e-12 }, k);
  model.init(1);
  const n = model.params.length;
  const m = new Float32Array(n), v = new Float32Array(n);
  const rng = new Rng(7);
  const data = { m: s.m, n: s.n, rank: 2, pMask: 0.3, prec: 2, factor: "uniform" as const, clamp: false };
  const batch = allocBatch(s.B, s.m, s.n);
  const T = s.m * s.n;
  const dpred = new Float32Array(s.B * T);
  const times: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const t0 = performance.now();
    sampleBatch(rng, data, s.B, batch);
    model.zeroGrad();
    const out = model.forward(batch.tokens, s.B, T);
    k.mse(dpred, out, batch.targets, s.B * T, 1 / (s.B * T));
    model.backward(dpred);
    k.adam(model.params, model.grads, m, v, n, 1e-4, 0.9, 0.999, 1e-8, i + 1);
    if (i > 0) times.push(performance.now() - t0);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return {
    size, backend, steps,
    msPerStep: sorted[Math.floor(sorted.length / 2)]!,
    msAll: times.map((t) => Math.round(t * 10) / 10),
    maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

/** sgemm GFLOP/s of the cpu backend on a training-shaped product (N=12544 rows). */
export function measureSgemm(threads: number): { gflops: number; shape: string } {
  const k = getKernels("cpu");
  if (threads > 0) k.setThreads?.(threads);
  const M = 12544, K = 256, N = 1024;
  const rng = new Rng(3);
  const A = new Float32Array(M * K).map(() => rng.range(-1, 1));
  const B = new Float32Array(N * K).map(() => rng.range(-1, 1));
  const C = new Float32Array(M * N);
  k.matmul(C, A, B, M, N, K, false, true, 1, 0);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    k.matmul(C, A, B, M, N, K, false, true, 1, 0);
    best = Math.min(best, performance.now() - t0);
  }
  return { gflops: (2 * M * N * K) / (best / 1000) / 1e9, shape: `${M}x${K} · (${N}x${K})ᵀ` };
}

export interface BenchOptions {
  backends: BackendName[];
  sizes: string[];
  steps: number;
  threads: number;
  json?: string;
}

export function runBench(o: BenchOptions): object {
  const main = fileURLToPath(new URL("./main.js", import.meta.url));
  const sg = measureSgemm(o.threads);
  const threads = getKernels("cpu").threads();
  console.log(`sgemm (cpu backend, ${threads} threads, ${sg.shape}): ${sg.gflops.toFixed(1)} GFLOP/s`);
  const rows: Array<ChildResult & { gflops: number; ofPeak: number }> = [];
  for (const backend of o.backends) {
    for (const size of o.sizes) {
      // the ref backend is the oracle, not a contender: one step of S only
      if (backend === "ref" && size !== "S") continue;
      const steps = backend === "ref" ? 1 : size === "P" ? Math.min(o.steps, 2) : o.steps;
      const r = spawnSync(process.execPath, [main, "bench", "--child", size, "--backend", backend, "--steps", String(steps), "--threads", String(o.threads)], { encoding: "utf8", maxBuffer: 1 << 24 });
      if (r.status !== 0) throw new AbruptError(`bench ${size} on ${backend} failed: ${(r.stderr || "").trim().split("\n").pop()}`);
      const res = JSON.parse(r.stdout.trim().split("\n").pop()!) as ChildResult;
      const gflops = stepFlops(BENCH_SIZES[size]!) / (res.msPerStep / 1000) / 1e9;
      const row = { ...res, gflops, ofPeak: gflops / sg.gflops };
      rows.push(row);
      console.log(`${size.padEnd(2)} ${backend.padEnd(4)} ${res.msPerStep.toFixed(1).padStart(9)} ms/step  ${gflops.toFixed(1).padStart(6)} GFLOP/s  ${(100 * row.ofPeak).toFixed(0).padStart(3)}% of sgemm  peak RSS ${res.maxRssMB} MB`);
    }
  }
  return { sgemm: sg, threads, rows };
}
