// The JSON that `abrupt serve` (server.ts) sends and the page
// (web/src/main.ts) reads: what the page relies on, in one place. Types
// only, and importing nothing but types from src/viz, so that the page's
// compiler (DOM, no Node types) reads it. The server's own types are checked
// against these (server/runs.ts: RunSummary extends WireRunSummary; server.ts:
// each response `satisfies` its type), so a field the page reads cannot go
// away on one side only.

import type { SweepCellView } from "../viz/sweep.js";

export type RunStatus = "running" | "finished" | "interrupted" | "stopped" | "failed" | "stale" | "malformed" | "unknown";

/** The plateau and the drop of a run (src/analysis/phases.ts), as far as the page reads them. */
export interface Phases {
  window: number;
  plateau: { onset: number; end: number; level: number; levelMask: number } | null;
  drop: { step: number; lossBefore: number; lossAfter: number } | null;
  final: { step: number; loss: number } | null;
}

/** A run's config (src/train/config.ts), as far as the page reads it. */
export interface RunConfigView {
  data: { m: number; n: number; rank: number; p_mask: number; factor: string };
  model: { L: number; H: number; d: number; ff: number };
  train: { batch: number; lr: number; steps: number };
}

/** GET /api/runs/<run>, and the `run` event: one run folder (server/runs.ts summarizeRun). */
export interface WireRunSummary {
  name: string;
  status: RunStatus;
  /** what is wrong with the folder, in words (empty when nothing is) */
  problems: string[];
  config: RunConfigView | null;
  /** the model family (src/family/): "bert" or "gpt" (null: no readable config) */
  family: string | null;
  /** steps planned (config) and done (last metrics line) */
  steps: number | null;
  stepsDone: number;
  last: { step: number; loss: number; loss_mask: number; loss_obs: number } | null;
  lastEval: { step: number; eval_loss: number } | null;
  checkpoints: number[];
  phases: Phases | null;
  /** copy levels of this run: p_mask·r/9 (L) and r/9 (L_mask); null for a GPT (its losses are cross-entropies) */
  copyLevel: { loss: number; loss_mask: number } | null;
  error: string | null;
}

/** GET /api/runs */
export interface RunsResponse {
  root: string;
  runs: WireRunSummary[];
}

/**
 * One metrics line as a row: [step, L, L_mask, L_obs, eval L, attn progress,
 * collapse, repetition], each null where the step has none (5 significant
 * digits, null for NaN). For a GPT run (family "gpt") the losses are
 * next-token cross-entropies and the last three columns are the eval set's
 * greedy accuracy, greedy MSE and share of non-value tokens at hidden cells.
 */
export type MetricsRow = Array<number | null>;

/** An item of a `metrics` event: a row, or a resume marker (the run went back to that step); see apply-items.ts. */
export type MetricsRowItem = MetricsRow | { resume_from: number };

/** GET /api/runs/<run>/metrics */
export interface MetricsResponse {
  offset: number;
  bad: number;
  partial: number;
  rows: MetricsRow[];
}

/** The `metrics` event of /api/runs/<run>/events: the lines appended after byte `offset`. */
export interface MetricsEvent {
  offset: number;
  bad: number;
  items: MetricsRowItem[];
}

/** A sweep cell (src/sweep/results.ts), as far as the page reads it. */
export interface WireSweepCell extends SweepCellView {
  runs: Array<{ seed: number; dir: string; steps: number; plateau_end: number | null; drop: number | null; seconds: number; status: string }>;
  n_drop: number;
  median_plateau_end_ci: [number | null, number | null];
  median_drop: number | null;
  median_drop_ci: [number | null, number | null];
  median_drop_seconds: number | null;
  median_drop_seconds_ci: [number | null, number | null];
}

/** GET /api/sweep */
export interface SweepResponse {
  sweep: { id: string; axes: string[]; updated: string; cells: WireSweepCell[] } | null;
}
