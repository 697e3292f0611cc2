// `abrupt bench` (npm run bench): ms per training step for the benchmark
// sizes on each backend, the machine's sgemm rate measured in the same run,
// the achieved fraction of it, and peak memory. Each measurement runs in its
// own child process so its peak RSS is its own. With webgpu (`--device
// webgpu`): ms/step and achieved TFLOP/s per size, and the matmul kernel
// alone on an n x n x n product (--matmul, default 4096). With `--torch
// PYTHON`: each cpu size also in PyTorch (tools/bench_torch.py, see
// bench-torch.ts), ours and PyTorch's children alternating in the same run,
// and the ratio ours/torch of their ms/step.

import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { allocBatch, sampleBatch } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import { getKernels, loadKernels } from "../kernels/index.js";
import type { BackendName, Kernels } from "../kernels/types.js";
import { stepMeasures } from "../analysis/measures.js";
import { Bert } from "../model/bert.js";
import { checkMemory, gptTrainingBytes, trainingBytes } from "../model/memory.js";
import { GPT_DEFAULT, Gpt, type GptConfig } from "../model/gpt.js";
import { GPT_VOCAB, allocGptBatch, sampleGptBatch } from "../data/sequence.js";
import { paramCount } from "../model/params.js";
import { type TorchResult, type TorchVersion, checkTorch, median, torchBench } from "./bench-torch.js";

export interface BenchSize {
  L: number; H: number; d: number; ff: number; B: number; m: number; n: number;
  /** the GPT variant (sequences of 2·m·n tokens, vocabulary 405) instead of the BERT */
  gpt?: boolean;
}

export const BENCH_SIZES: Record<string, BenchSize> = {
  S: { L: 2, H: 4, d: 128, ff: 512, B: 128, m: 7, n: 7 },
  M: { L: 4, H: 8, d: 256, ff: 1024, B: 256, m: 7, n: 7 },
  P: { L: 4, H: 8, d: 768, ff: 3072, B: 256, m: 7, n: 7 },
  /** SPEC §2's GPT (not among the default sizes) */
  G: { L: 2, H: 2, d: 256, ff: 1024, B: 256, m: 7, n: 7, gpt: true },
};

/** FLOPs of one training step (forward + backward ≈ 3× the forward products). */
export function stepFlops(s: BenchSize): number {
  const T = s.gpt ? 2 * s.m * s.n : s.m * s.n;
  const N = s.B * T;
  const perLayer = 2 * N * (3 * s.d * s.d + s.d * s.d + 2 * s.d * s.ff) + 4 * s.B * T * T * s.d;
  return 3 * (s.L * perLayer + 2 * N * s.d * (s.gpt ? GPT_VOCAB : 1));
}

/** Fails with one line on an unknown size or a step count below 1. */
export function checkBenchOptions(sizes: string[], steps: number): void {
  for (const s of sizes) if (!BENCH_SIZES[s]) throw new AbruptError(`unknown bench size "${s}" (sizes: ${Object.keys(BENCH_SIZES).join(", ")})`);
  if (!Number.isInteger(steps) || steps < 1) throw new AbruptError(`--steps must be at least 1 (got ${steps})`);
}

export interface ChildResult {
  size: string;
  backend: BackendName;
  steps: number;
  msPerStep: number;
  msAll: number[];
  maxRssMB: number;
  /** ms of one computation of the progress measures (train --progress-every) on the last step's activations, median of 3 */
  progressMs: number | null;
  /** their cost at --progress-every 100 as a fraction of the step time: progressMs / (100 · msPerStep); null for the GPT */
  progressOverhead100: number | null;
}

/** Runs `steps` timed training steps (after one warm-up step) in this process. */
export async function benchInProcess(size: string, backend: BackendName, steps: number, threads: number): Promise<ChildResult> {
  const s = BENCH_SIZES[size];
  if (!s) throw new AbruptError(`unknown bench size "${size}" (sizes: ${Object.keys(BENCH_SIZES).join(", ")})`);
  checkBenchOptions([size], steps);
  if (s.gpt) return benchGpt(size, s, backend, steps, threads);
  const cfg = { vocab: 2002, positions: 512, L: s.L, H: s.H, d: s.d, ff: s.ff, lnEps: 1e-12 };
  checkMemory(trainingBytes(cfg, s.B, s.m * s.n, 0, backend === "webgpu"), `bench size ${size} (batch ${s.B} of ${s.m}×${s.n} matrices with BERT L${s.L} d${s.d} ff${s.ff})`);
  const k = await loadKernels(backend);
  if (threads > 0) k.setThreads?.(threads);
  const model = new Bert(cfg, k);
  model.init(1);
  const n = paramCount(model.cfg);
  const m = k.alloc(n), v = k.alloc(n);
  const rng = new Rng(7);
  const data = { m: s.m, n: s.n, rank: 2, pMask: 0.3, prec: 2, factor: "uniform" as const, clamp: false };
  const batch = allocBatch(s.B, s.m, s.n);
  const T = s.m * s.n;
  const dpred = k.alloc(s.B * T);
  const targets = k.alloc(s.B * T);
  const times: number[] = [];
  let lastOut: Float32Array = new Float32Array(0);
  for (let i = 0; i <= steps; i++) {
    const t0 = performance.now();
    sampleBatch(rng, data, s.B, batch);
    k.upload(targets, batch.targets);
    model.zeroGrad();
    const out = model.forward(batch.tokens, s.B, T);
    const outHost = k.download(out); // as the trainer: the outputs come back for the metrics
    k.mse(dpred, out, targets, s.B * T, 1 / (s.B * T));
    model.backward(dpred);
    k.adam(model.params, model.grads, m, v, n, 1e-4, 0.9, 0.999, 1e-8, i + 1);
    lastOut = await outHost;
    await k.finish();
    if (i > 0) times.push(performance.now() - t0);
  }
  const sorted = [...times].sort((a, b) => a - b);
  const msPerStep = sorted[Math.floor(sorted.length / 2)]!;
  // the progress measures as the trainer computes them: from the step's activations, no extra forward
  const pm: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    await stepMeasures(model as Bert<unknown>, batch, lastOut, data.prec);
    pm.push(performance.now() - t0);
  }
  const progressMs = [...pm].sort((a, b) => a - b)[1]!;
  return {
    size, backend, steps,
    msPerStep,
    progressMs: Math.round(progressMs * 100) / 100,
    progressOverhead100: progressMs / (100 * msPerStep),
    msAll: times.map((t) => Math.round(t * 10) / 10),
    maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

/**
 * The GPT's training step as a trainer would run it: sample a batch of
 * sequences, forward, next-token loss (the per-position losses come back
 * for the metrics), backward, Adam over all parameters.
 */
async function benchGpt(size: string, s: BenchSize, backend: BackendName, steps: number, threads: number): Promise<ChildResult> {
  const T = 2 * s.m * s.n;
  const cfg: GptConfig = { ...GPT_DEFAULT, block: T + 1, L: s.L, H: s.H, d: s.d, ff: s.ff };
  checkMemory(gptTrainingBytes(cfg, s.B, T, backend === "webgpu"), `bench size ${size} (batch ${s.B} of ${s.m}×${s.n} matrices with GPT L${s.L} d${s.d} ff${s.ff})`);
  const k = await loadKernels(backend);
  if (threads > 0) k.setThreads?.(threads);
  const model = new Gpt(cfg, k);
  model.init(1);
  const m = k.alloc(model.size), v = k.alloc(model.size);
  const rng = new Rng(7);
  const data = { m: s.m, n: s.n, rank: 2, pMask: 0.3, prec: 2, factor: "uniform" as const, clamp: false };
  const batch = allocGptBatch(s.B, s.m, s.n);
  const times: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const t0 = performance.now();
    sampleGptBatch(rng, data, s.B, batch);
    model.zeroGrad();
    model.forward(batch.inputs, s.B, T);
    const loss = model.loss(batch.targets);
    const rows = k.download(loss.rowLoss);
    model.backward(loss.dlogits!);
    k.adam(model.params, model.grads, m, v, model.size, 1e-4, 0.9, 0.999, 1e-8, i + 1);
    await rows;
    await k.finish();
    if (i > 0) times.push(performance.now() - t0);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return {
    size, backend, steps,
    msPerStep: sorted[Math.floor(sorted.length / 2)]!,
    msAll: times.map((t) => Math.round(t * 10) / 10),
    maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
    progressMs: null,
    progressOverhead100: null,
  };
}

/**
 * Milliseconds of one `call()` (a kernel call on k): one warm-up call (which
 * also compiles on webgpu), then the best of 3 rounds of `reps` calls, each
 * round waited for with k.finish().
 */
export async function timeKernel<Buf>(k: Kernels<Buf>, call: () => void, reps: number): Promise<number> {
  call();
  await k.finish();
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) call();
    await k.finish();
    best = Math.min(best, (performance.now() - t0) / reps);
  }
  return best;
}

/** GFLOP/s of a backend's matmul on an n x n x n product (best of a few). */
export async function measureMatmul(backend: BackendName, n: number): Promise<{ gflops: number; ms: number; n: number }> {
  const k = await loadKernels(backend);
  const rng = new Rng(5);
  const A = k.alloc(n * n), B = k.alloc(n * n), C = k.alloc(n * n);
  k.upload(A, new Float32Array(n * n).map(() => rng.range(-1, 1)));
  k.upload(B, new Float32Array(n * n).map(() => rng.range(-1, 1)));
  const best = await timeKernel(k, () => k.matmul(C, A, B, n, n, n, false, false, 1, 0), 5);
  return { gflops: (2 * n ** 3) / (best / 1000) / 1e9, ms: best, n };
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
  /** n of the n x n x n matmul measured on webgpu (0 = skip) */
  matmul: number;
  json?: string;
  /** a python that imports torch: each cpu size is also timed in PyTorch, alternating with ours */
  torch?: string;
  /** with torch: pairs (ours, torch) per size; each side's ms/step is the median of its runs' medians */
  repeat?: number;
}

/** A cpu row's PyTorch peer, measured in the same run. */
export interface TorchPeer {
  /** median over the runs of their median ms/step */
  msPerStep: number;
  /** each run's median ms/step, in run order */
  runs: number[];
  /** our row's msPerStep / the peer's */
  ratio: number;
  /** ours/torch of each pair (ours run i, torch run i) */
  pairRatios: number[];
  threads: number;
}

/** Fails with one line on a --repeat below 1 or a --torch without the cpu backend. */
export function checkTorchOptions(backends: BackendName[], torch: string | undefined, repeat: number): void {
  if (!Number.isInteger(repeat) || repeat < 1) throw new AbruptError(`--repeat must be at least 1 (got ${repeat})`);
  if (torch !== undefined && !backends.includes("cpu")) throw new AbruptError(`--torch compares PyTorch with the cpu backend: add cpu to --backends`);
}

/** Runs `abrupt bench --child ...` in a fresh process; returns its last stdout line as JSON. */
function child<R>(args: string[], what: string): R {
  const main = fileURLToPath(new URL("../cli/main.js", import.meta.url));
  const r = spawnSync(process.execPath, [main, "bench", ...args], { encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    const err = (r.stderr || "").trim().split("\n").filter((l) => !l.startsWith("Warning:")).pop();
    throw new AbruptError(`bench ${what} failed: ${err ?? `exit ${r.status}`}`);
  }
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as R;
}

export function runBench(o: BenchOptions): object {
  // before any timing: a python that does not run or import torch fails here, in one line
  const torch: TorchVersion | null = o.torch !== undefined ? checkTorch(o.torch) : null;
  const hasCpu = o.backends.some((b) => b !== "webgpu");
  const sg = hasCpu ? measureSgemm(o.threads) : null;
  const threads = hasCpu ? getKernels("cpu").threads() : 0;
  if (sg) console.log(`sgemm (cpu backend, ${threads} threads, ${sg.shape}): ${sg.gflops.toFixed(1)} GFLOP/s`);
  const rows: Array<ChildResult & { gflops: number; ofPeak: number | null; torch?: TorchPeer }> = [];
  let matmul: { gflops: number; ms: number; n: number } | null = null;
  for (const backend of o.backends) {
    if (backend === "webgpu" && o.matmul > 0) {
      matmul = child<{ gflops: number; ms: number; n: number }>(["--child", `matmul:${o.matmul}`, "--backend", backend], `matmul ${o.matmul}³ on ${backend}`);
      console.log(`matmul ${o.matmul}³ webgpu: ${matmul.ms.toFixed(2)} ms  ${(matmul.gflops / 1000).toFixed(3)} TFLOP/s (${matmul.gflops.toFixed(1)} GFLOP/s)`);
    }
    for (const size of o.sizes) {
      // the ref backend is the oracle, not a contender: one step of S only
      if (backend === "ref" && size !== "S") continue;
      const steps = backend === "ref" ? 1 : size === "P" && backend !== "webgpu" ? Math.min(o.steps, 2) : o.steps;
      const ours = () => child<ChildResult>(["--child", size, "--backend", backend, "--steps", String(steps), "--threads", String(o.threads)], `${size} on ${backend}`);
      let res: ChildResult;
      let peer: TorchPeer | null = null;
      if (torch && backend === "cpu") {
        // ours, torch, ours, torch …: the machine's load falls on both alike
        const mine: ChildResult[] = [], theirs: TorchResult[] = [];
        for (let r = 0; r < (o.repeat ?? 1); r++) {
          mine.push(ours());
          theirs.push(torchBench(o.torch!, size, BENCH_SIZES[size]!, steps, threads));
        }
        res = { ...mine[0]!, msPerStep: median(mine.map((x) => x.msPerStep)), msAll: mine.flatMap((x) => x.msAll), maxRssMB: Math.max(...mine.map((x) => x.maxRssMB)) };
        const runs = theirs.map((x) => x.msPerStep);
        const msTorch = median(runs);
        peer = { msPerStep: msTorch, runs, ratio: res.msPerStep / msTorch, pairRatios: mine.map((x, i) => x.msPerStep / runs[i]!), threads: theirs[0]!.threads };
      } else res = ours();
      const gflops = stepFlops(BENCH_SIZES[size]!) / (res.msPerStep / 1000) / 1e9;
      const row = { ...res, gflops, ofPeak: sg && backend !== "webgpu" ? gflops / sg.gflops : null, ...(peer ? { torch: peer } : {}) };
      rows.push(row);
      const rate = backend === "webgpu" ? `${(gflops / 1000).toFixed(3).padStart(7)} TFLOP/s (${gflops.toFixed(1)} GFLOP/s)` : `${gflops.toFixed(1).padStart(6)} GFLOP/s  ${(100 * row.ofPeak!).toFixed(0).padStart(3)}% of sgemm`;
      console.log(`${size.padEnd(2)} ${backend.padEnd(6)} ${res.msPerStep.toFixed(1).padStart(9)} ms/step  ${rate}  peak RSS ${res.maxRssMB} MB`);
      if (res.progressMs !== null && res.progressOverhead100 !== null) console.log(`   progress measures: ${res.progressMs.toFixed(2)} ms each, ${(100 * res.progressOverhead100).toFixed(3)}% of the step time at --progress-every 100`);
      if (peer) console.log(`   torch ${torch!.torch} (${peer.threads} threads): ${peer.msPerStep.toFixed(1)} ms/step  ours/torch ${peer.ratio.toFixed(2)}×${peer.runs.length > 1 ? `  (pairs: ${peer.pairRatios.map((r) => r.toFixed(2)).join(", ")})` : ""}`);
    }
  }
  const compared = rows.filter((r) => r.torch);
  if (torch && compared.length > 0) {
    console.log(`ours vs PyTorch ${torch.torch}, same run, ${threads} threads, sgemm ${sg!.gflops.toFixed(1)} GFLOP/s:`);
    console.log(`size  ours ms/step  torch ms/step  ours/torch`);
    for (const r of compared) console.log(`${r.size.padEnd(4)}  ${r.msPerStep.toFixed(1).padStart(12)}  ${r.torch!.msPerStep.toFixed(1).padStart(13)}  ${r.torch!.ratio.toFixed(2).padStart(9)}×`);
  }
  return { sgemm: sg, threads, matmul, rows, ...(torch ? { torch: { executable: o.torch!, ...torch, repeat: o.repeat ?? 1 } } : {}) };
}
