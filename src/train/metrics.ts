// Per-batch metrics of SPEC §3 and the metrics.jsonl file.

import { closeSync, existsSync, openSync, readFileSync, writeSync } from "node:fs";
import type { Batch } from "../data/matrix.js";

export interface BatchMetrics {
  /** MSE over all cells */
  loss: number;
  /** MSE over hidden cells (NaN if none) */
  loss_mask: number;
  /** MSE over observed cells (NaN if none) */
  loss_obs: number;
  /** mean |output| at hidden cells */
  mask_abs: number;
}

/** L, L_mask, L_obs and mean |output| at hidden cells of outputs against targets (hidden: 1 = hidden). */
export function splitMetrics(out: Float32Array, targets: Float32Array, hidden: Uint8Array): BatchMetrics {
  let se = 0, seM = 0, seO = 0, absM = 0, nM = 0;
  for (let i = 0; i < out.length; i++) {
    const e = out[i]! - targets[i]!;
    const e2 = e * e;
    se += e2;
    if (hidden[i]) {
      seM += e2;
      absM += Math.abs(out[i]!);
      nM++;
    } else {
      seO += e2;
    }
  }
  const nO = out.length - nM;
  return {
    loss: se / out.length,
    loss_mask: nM ? seM / nM : NaN,
    loss_obs: nO ? seO / nO : NaN,
    mask_abs: nM ? absM / nM : NaN,
  };
}

export function batchMetrics(out: Float32Array, batch: Batch): BatchMetrics {
  return splitMetrics(out, batch.targets, batch.hidden);
}

export interface MetricsLine {
  step: number;
  loss: number;
  loss_mask: number;
  loss_obs: number;
  mask_abs: number;
  lr: number;
  /** wall time of the step in ms */
  ms: number;
  eval_loss?: number;
  eval_loss_mask?: number;
  eval_loss_obs?: number;
  eval_mask_abs?: number;
  /** every train.progress_every steps: the progress measures of the step's batch (src/analysis/measures.ts) */
  attn_progress?: number;
  attn_progress_layers?: number[];
  attn_progress_best_head?: { layer: number; head: number; value: number };
  collapse?: number;
  collapse_sites?: Record<string, number>;
  repetition?: number;
}

/** Append-only writer: each line is written (and reaches the OS) at once. */
export class MetricsWriter {
  private fd: number;
  constructor(file: string) {
    this.fd = openSync(file, "a");
  }
  write(obj: object): void {
    writeSync(this.fd, JSON.stringify(obj, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v)) + "\n");
  }
  close(): void {
    closeSync(this.fd);
  }
}

/**
 * One line of metrics.jsonl: a step's metrics, a `{"resume_from": s}` marker,
 * or null for a line that is not valid JSON or neither of those.
 */
export function parseMetricsLine(raw: string): MetricsLine | { resume_from: number } | null {
  let o: unknown;
  try {
    o = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!o || typeof o !== "object") return null;
  if (typeof (o as MetricsLine).step === "number") return o as MetricsLine;
  if (typeof (o as { resume_from?: unknown }).resume_from === "number") return { resume_from: (o as { resume_from: number }).resume_from };
  return null;
}

/**
 * Reads metrics.jsonl. Lines that are not JSON (a run killed mid-write) are
 * skipped and counted. A `{"resume_from": s}` line means the run was resumed
 * from step s: later lines for a step replace earlier ones.
 */
export function readMetrics(file: string): { lines: MetricsLine[]; bad: number } {
  if (!existsSync(file)) return { lines: [], bad: 0 };
  const byStep = new Map<number, MetricsLine>();
  let bad = 0;
  for (const raw of readFileSync(file, "utf8").split("\n")) {
    if (!raw.trim()) continue;
    const o = parseMetricsLine(raw);
    if (o === null) bad++;
    else if ("step" in o) byStep.set(o.step, o);
  }
  const lines = [...byStep.values()].sort((a, b) => a.step - b.step);
  return { lines, bad };
}
