// The `cpu` backend: the native addon built from native/abrupt.c (OpenBLAS
// sgemm + OpenMP). Threads default to the number of online CPUs.

import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AbruptError } from "../errors.js";
import { hostMemory } from "./ref.js";
import type { AttentionKind, F32, Kernels } from "./types.js";

/** The addon's causal attention takes a boolean (softmax) for the kind. */
type GptNative = "causalAttentionPattern" | "causalAttentionBackward";

/** What the addon exports besides the Kernels methods. */
interface Addon extends Omit<Kernels, "name" | "host" | keyof typeof hostMemory | GptNative> {
  setThreads(n: number): void;
  blasInfo(): string;
  causalAttentionPattern(att: F32, qkv: F32, B: number, T: number, C: number, H: number, softmax: boolean): void;
  causalAttentionBackward(dqkv: F32, datt: F32, dout: F32, qkv: F32, att: F32, B: number, T: number, C: number, H: number, softmax: boolean): void;
}

function softmaxOf(kind: AttentionKind): boolean {
  if (kind !== "softmax" && kind !== "linear") throw new RangeError(`causal attention: kind must be "softmax" or "linear", got ${String(kind)}`);
  return kind === "softmax";
}

export interface CpuKernels extends Kernels {
  /** Threads for OpenMP and OpenBLAS alike (default: online CPUs). */
  setThreads(n: number): void;
  /** OpenBLAS build and core, e.g. "OpenBLAS 0.3.21 ... core Haswell; parallel openmp". */
  blasInfo(): string;
}

/** The folder holding package.json, walking up from this compiled file. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new AbruptError("cannot locate the abrupt package root (no package.json above the kernels)");
    dir = up;
  }
}

/**
 * OpenBLAS 0.3.21 (Debian 12) does not recognise AVX-512 on AMD Zen 4 and
 * falls back to its Haswell (AVX2) kernels; its SkylakeX kernels are ~1.5x
 * faster there (sgemm 6272x1024x256: 118 vs 69 GFLOP/s on 2 cores). OpenBLAS
 * reads OPENBLAS_CORETYPE when the addon loads, so set it first, and only if
 * the CPU has every AVX-512 subset those kernels use and the user set nothing.
 */
function preferAvx512Blas(): void {
  if (process.env.OPENBLAS_CORETYPE !== undefined || process.platform !== "linux") return;
  let cpuinfo = "";
  try {
    cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return;
  }
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? "").trim().split(/\s+/));
  if (["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"].every((f) => flags.has(f))) {
    process.env.OPENBLAS_CORETYPE = "SkylakeX";
  }
}

let addon: Addon | undefined;

export function loadCpuKernels(): CpuKernels {
  if (!addon) {
    const file = join(repoRoot(), "native", "build", "Release", "abrupt.node");
    if (!existsSync(file)) {
      throw new AbruptError(`native cpu backend not built (${file} is missing): run \`npm run build:native\``);
    }
    preferAvx512Blas();
    try {
      addon = createRequire(import.meta.url)(file) as Addon;
    } catch (e) {
      const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
      throw new AbruptError(`native cpu backend failed to load (${why}): run \`npm run build:native\``);
    }
  }
  const a = addon;
  return {
    name: "cpu",
    ...hostMemory,
    threads: () => a.threads(),
    setThreads: (n) => a.setThreads(n),
    blasInfo: () => a.blasInfo(),
    matmul: a.matmul,
    linearForward: a.linearForward,
    linearBackward: a.linearBackward,
    embeddingForward: a.embeddingForward,
    embeddingBackward: a.embeddingBackward,
    layernormForward: a.layernormForward,
    layernormBackward: a.layernormBackward,
    attentionPattern: a.attentionPattern,
    attentionApply: a.attentionApply,
    attentionBackward: a.attentionBackward,
    geluForward: a.geluForward,
    geluBackward: a.geluBackward,
    add: a.add,
    mse: (dpred: F32 | null, pred: F32, target: F32, n: number, gradScale: number, sse?: F32 | null) => {
      const sum = a.mse(dpred, pred, target, n, gradScale);
      if (sse) sse[0] = sum;
      return sum;
    },
    adam: a.adam,
    causalAttentionPattern: (att, qkv, B, T, C, H, kind) => a.causalAttentionPattern(att, qkv, B, T, C, H, softmaxOf(kind)),
    causalAttentionBackward: (dqkv, datt, dout, qkv, att, B, T, C, H, kind) =>
      a.causalAttentionBackward(dqkv, datt, dout, qkv, att, B, T, C, H, softmaxOf(kind)),
    geluTanhForward: a.geluTanhForward,
    geluTanhBackward: a.geluTanhBackward,
    crossEntropy: (dlogits, rowLoss, logits, targets, N, V, gradScale, loss) => {
      const mean = a.crossEntropy(dlogits, rowLoss, logits, targets, N, V, gradScale);
      if (loss) {
        if (loss.length < 1) throw new RangeError("crossEntropy: loss has 0 elements, needs 1");
        loss[0] = mean;
      }
      return mean;
    },
    sgd: a.sgd,
  };
}
