// Per-batch metrics of SPEC §3 and the metrics.jsonl file.

import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { AbruptError } from "../errors.js";
import { fsReason } from "../store/files.js";
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

/** Metrics of the eval set as logged: each key of `m` (or of `keys`, in that order) prefixed "eval_". */
export function evalFields<M extends object>(m: M, keys: ReadonlyArray<keyof M & string> = Object.keys(m) as Array<keyof M & string>): Record<string, number> {
  return Object.fromEntries(keys.map((k) => [`eval_${k}`, m[k] as number]));
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

/**
 * Append-only writer: each line is written (and reaches the OS) at once. A
 * file that ends without a newline (a run killed mid-write) is repaired
 * first, so the next line starts on a line of its own: a last line that is a
 * whole record gets its newline, a partial one is cut off (it is a step after
 * the newest checkpoint, which the resumed run writes again).
 */
export class MetricsWriter {
  private fd: number;
  constructor(readonly file: string) {
    try {
      this.fd = openSync(file, "a+");
      repairTail(this.fd);
    } catch (e) {
      throw new AbruptError(`cannot write ${file}: ${fsReason(e)}`);
    }
  }
  write(obj: object): void {
    try {
      writeSync(this.fd, JSON.stringify(obj, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v)) + "\n");
    } catch (e) {
      throw new AbruptError(`cannot write ${this.file}: ${fsReason(e)}`);
    }
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** Ends the file open in `fd` with a newline: completes a whole last record, cuts a partial one. */
function repairTail(fd: number): void {
  const size = fstatSync(fd).size;
  if (size === 0) return;
  const last = Buffer.alloc(1);
  readSync(fd, last, 0, 1, size - 1);
  if (last[0] === 0x0a) return;
  // find the start of the last line
  const chunk = Buffer.alloc(Math.min(size, 1 << 16));
  let start = 0;
  for (let end = size; end > 0 && start === 0;) {
    const n = Math.min(chunk.length, end);
    readSync(fd, chunk, 0, n, end - n);
    const i = chunk.subarray(0, n).lastIndexOf(0x0a);
    if (i >= 0) start = end - n + i + 1;
    end -= n;
  }
  const tail = Buffer.alloc(size - start);
  readSync(fd, tail, 0, tail.length, start);
  if (parseMetricsLine(tail.toString("utf8")) !== null) writeSync(fd, "\n");
  else ftruncateSync(fd, start);
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
