// How much memory a model needs, in bytes, before anything is allocated:
// the buffers of bert.ts (parameters, gradients, per-shape activations,
// backward scratch), Adam's moments and the batches. Train, analyze, predict
// and bench call checkMemory with it, so a size that cannot fit fails at once
// with one line instead of growing until the machine swaps or the process dies.

import { freemem, totalmem } from "node:os";
import { AbruptError } from "../errors.js";
import type { ModelConfig } from "./params.js";

const F32 = 4;
/** The largest buffer (in elements) the kernels take: the native code indexes rows with 32-bit ints. */
export const MAX_ELEMENTS = 2 ** 31 - 1;

/** paramCount of params.ts in closed form (no list of tensors: L may be absurd). */
export function paramFloats(c: ModelConfig): number {
  const { vocab: V, positions: P, d: C, ff: F, L } = c;
  const layer = 3 * C * C + 3 * C + C * C + C + 2 * C + F * C + F + C * F + C + 2 * C;
  return V * C + P * C + 2 * C + L * layer + C + 1;
}

/** Floats of the activations of one forward pass on [B,T] (bert.ts allocActs). */
function actFloats(c: ModelConfig, B: number, T: number): number {
  const N = B * T;
  const perLayer = 10 * N * c.d + 2 * N * c.ff + 4 * N + B * c.H * T * T;
  return 2 * N * c.d + 2 * N + c.L * perLayer + N;
}

/** Floats of the backward scratch buffers on [B,T] (bert.ts backward). */
function gradFloats(c: ModelConfig, B: number, T: number): number {
  const N = B * T;
  return 6 * N * c.d + N * c.ff + B * c.H * T * T;
}

/** The largest single buffer of a model on [B,T], in elements. */
function largestBuffer(c: ModelConfig, B: number, T: number): number {
  const N = B * T;
  return Math.max(paramFloats(c), 3 * N * c.d, N * c.ff, B * c.H * T * T);
}

export interface MemoryNeed {
  /** bytes in host memory */
  host: number;
  /** bytes on the device (0 on host backends: they count in `host`) */
  device: number;
  largest: number;
}

/**
 * Training: parameters, gradients, Adam m and v and the host copies a
 * checkpoint makes, the activations and backward buffers of a [B,T] step,
 * the eval pass's activations, and the batches.
 */
export function trainingBytes(c: ModelConfig, B: number, T: number, evalB: number, onDevice: boolean): MemoryNeed {
  const P = paramFloats(c);
  const model = F32 * (4 * P + actFloats(c, B, T) + gradFloats(c, B, T) + 3 * B * T + (evalB > 0 ? actFloats(c, evalB, T) : 0));
  const host = F32 * 4 * P + 13 * B * T + 13 * evalB * T;
  return { host: onDevice ? host : host + model, device: onDevice ? model : 0, largest: Math.max(largestBuffer(c, B, T), evalB > 0 ? largestBuffer(c, evalB, T) : 0) };
}

/**
 * Inference (analyses, predict): `models` models held at once, each with
 * its activations for `chunk` samples per pass, and `samples` samples kept
 * on the host with what an analysis keeps per sample (inputs, outputs and
 * at most one activation per layer).
 */
export function inferenceBytes(c: ModelConfig, T: number, o: { samples: number; chunk: number; models?: number }, onDevice: boolean): MemoryNeed {
  const P = paramFloats(c);
  const chunk = Math.max(1, Math.min(o.chunk, o.samples));
  const model = (o.models ?? 1) * F32 * (2 * P + actFloats(c, chunk, T));
  const host = o.samples * T * (64 + F32 * c.d * (c.L + 1));
  return { host: onDevice ? host : host + model, device: onDevice ? model : 0, largest: largestBuffer(c, chunk, T) };
}

export function formatBytes(b: number): string {
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0;
  while (b >= 1000 && i < units.length - 1) {
    b /= 1000;
    i++;
  }
  return i === units.length - 1 && b >= 1000 ? `${b.toExponential(1)} ${units[i]}` : `${b.toPrecision(3)} ${units[i]}`;
}

/** Free and total host memory (the container's limit, where it has one). */
export function hostMemory(): { free: number; total: number } {
  const limit = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.() ?? 0;
  const total = limit > 0 && limit < totalmem() ? limit : totalmem();
  return { free: Math.min(freemem(), total), total };
}

/**
 * Fails with one line when `need` cannot fit: more host memory than is free,
 * or a buffer larger than the kernels take. `what` names the sizes, e.g.
 * "batch 100000000 of 4×4 matrices, BERT L4 d64 ff256".
 */
export function checkMemory(need: MemoryNeed, what: string): void {
  if (!Number.isFinite(need.host + need.device) || need.largest > MAX_ELEMENTS) {
    throw new AbruptError(`${what} needs about ${formatBytes(need.host + need.device)} of memory, with one buffer of ${need.largest.toPrecision(3)} floats (a buffer holds at most 2^31 - 1)`);
  }
  const { free, total } = hostMemory();
  if (need.host > free) {
    throw new AbruptError(`${what} needs about ${formatBytes(need.host)} of memory; ${formatBytes(free)} is free (of ${formatBytes(total)})`);
  }
}
