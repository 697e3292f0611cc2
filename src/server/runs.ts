// The runs folder as the dashboard sees it: which sub-folders are runs, their
// config, status (running / finished / interrupted / failed / stale /
// malformed), metrics read incrementally from a byte offset, checkpoints,
// phases (plateau and drop) and the problems found (unreadable config, bad
// metrics lines, missing checkpoints). Nothing here throws on a malformed
// run: problems are reported, so one broken folder never hides the others.
//
// Paths: every run is named by one folder name directly under the runs
// folder; `runDir` rejects anything else (separators, `..`, absolute paths,
// NUL) and checks that the real path (symlinks resolved) stays inside.

import { familyOf } from "../family/index.js";
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, realpathSync, statSync } from "node:fs";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { detectPhases, type Phases } from "../analysis/phases.js";
import { type RunConfig, checkpointSteps, lastStepOf } from "../train/config.js";
import { type MetricsLine, parseMetricsLine } from "../train/metrics.js";
import { applyItems } from "./apply-items.js";
import type { MetricsRow, RunStatus, WireRunSummary } from "./wire.js";
import { listCheckpoints, readRunConfig } from "../store/run.js";

/** A path error: 400 (malformed request) or 404 (no such run/file). */
export class PathError extends Error {
  constructor(public status: 400 | 404, message: string) {
    super(message);
  }
}

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._@+=-]{0,199}$/;

/** True when `child` (absolute) is `root` or inside it. */
export function isInside(root: string, child: string): boolean {
  const rel = relative(root, child);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel) && !rel.split(sep).includes(".."));
}

/** The folder of run `name` inside `root`, or a PathError. */
export function runDir(root: string, name: string): string {
  if (!NAME_RE.test(name) || name.includes("..")) throw new PathError(400, `bad run name ${JSON.stringify(name)}`);
  const dir = resolve(root, name);
  if (!isInside(root, dir) || dir === root) throw new PathError(400, `bad run name ${JSON.stringify(name)}`);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new PathError(404, `no run ${JSON.stringify(name)}`);
  if (!isInside(realpathSync(root), realpathSync(dir))) throw new PathError(404, `no run ${JSON.stringify(name)}`);
  return dir;
}

/**
 * A file of a run given by a relative path (e.g. "analysis/attention.json"):
 * segments of safe characters only, no `..`, no absolute path, and the real
 * path must stay inside the run folder (and so inside the runs folder).
 */
export function runFile(root: string, name: string, rel: string): string {
  const dir = runDir(root, name);
  const parts = rel.split("/");
  if (rel === "" || isAbsolute(rel) || rel.includes("\\") || rel.includes("\0") || parts.some((p) => !NAME_RE.test(p) || p.includes(".."))) {
    throw new PathError(400, `bad file path ${JSON.stringify(rel)}`);
  }
  const file = resolve(dir, ...parts);
  if (!isInside(dir, file)) throw new PathError(400, `bad file path ${JSON.stringify(rel)}`);
  if (!existsSync(file) || !statSync(file).isFile()) throw new PathError(404, `no file ${JSON.stringify(rel)} in run ${name}`);
  if (!isInside(realpathSync(root), realpathSync(file))) throw new PathError(404, `no file ${JSON.stringify(rel)}`);
  return file;
}

/** Sub-folders of `root` that look like runs (config, metrics, status or checkpoints). */
export function listRunNames(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && NAME_RE.test(e.name))
    .filter((e) => ["config.json", "metrics.jsonl", "status.json", "checkpoints"].some((f) => existsSync(join(root, e.name, f))))
    .map((e) => e.name)
    .sort();
}

// ---------------------------------------------------------------- metrics

/** One parsed item of metrics.jsonl: a step line, or a resume marker. */
export type MetricsItem = MetricsLine | { resume_from: number };

export interface MetricsChunk {
  items: MetricsItem[];
  /** byte offset just after the last complete line read */
  offset: number;
  /** complete lines that were not JSON metrics */
  bad: number;
  /** bytes after the last newline (a line being written, or a truncated last line) */
  partial: number;
}

/** Reads the complete lines of metrics.jsonl from byte `offset` on. */
export function readMetricsFrom(file: string, offset: number): MetricsChunk {
  if (!existsSync(file)) return { items: [], offset: 0, bad: 0, partial: 0 };
  const size = statSync(file).size;
  if (size < offset) offset = 0; // the file was replaced: start again
  if (size === offset) return { items: [], offset, bad: 0, partial: 0 };
  const fd = openSync(file, "r");
  const buf = Buffer.alloc(size - offset);
  try {
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  const last = buf.lastIndexOf(0x0a);
  if (last < 0) return { items: [], offset, bad: 0, partial: buf.length };
  const items: MetricsItem[] = [];
  let bad = 0;
  for (const raw of buf.subarray(0, last).toString("utf8").split("\n")) {
    if (!raw.trim()) continue;
    const o = parseMetricsLine(raw);
    if (o === null) bad++;
    else items.push(o);
  }
  return { items, offset: offset + last + 1, bad, partial: buf.length - last - 1 };
}

// ------------------------------------------------------------------ runs

/** A run folder as the dashboard sends it (the page's view of it: wire.ts), with the server's full types. */
export interface RunSummary extends WireRunSummary {
  config: RunConfig | null;
  last: MetricsLine | null;
  phases: Phases | null;
  updated: string | null;
}

function alive(pid: unknown): boolean {
  if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Compact metrics row: [step, L, L_mask, L_obs, eval L, then the run's
 * family's three measure columns (the BERT's attn progress, collapse,
 * repetition; a GPT's eval greedy accuracy, MSE and non-value share at hidden
 * cells: ModelFamily.measureColumns)] (null where the step has none), 5
 * significant digits.
 */
export function metricsRow(l: MetricsLine, measures: readonly string[]): MetricsRow {
  const r = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? Number(x.toPrecision(5)) : null);
  const f = l as unknown as Record<string, unknown>;
  return [l.step, r(l.loss), r(l.loss_mask), r(l.loss_obs), r(l.eval_loss), ...measures.map((k) => r(f[k]))];
}

/** A run's metrics, kept in memory and extended from the last byte read. */
export class MetricsCache {
  lines: MetricsLine[] = [];
  offset = 0;
  bad = 0;
  partial = 0;
  private ino = -1;
  constructor(readonly file: string) {}

  /** Reads what was appended since the last call; returns the new items. */
  update(): MetricsItem[] {
    let ino = -1;
    try {
      const st = statSync(this.file);
      ino = st.ino;
      if (st.size < this.offset || (this.ino >= 0 && ino !== this.ino)) this.reset();
    } catch {
      if (this.offset > 0) this.reset();
      return [];
    }
    this.ino = ino;
    const chunk = readMetricsFrom(this.file, this.offset);
    applyItems(this.lines, chunk.items, (l) => l.step);
    this.offset = chunk.offset;
    this.bad += chunk.bad;
    this.partial = chunk.partial;
    return chunk.items;
  }

  private reset(): void {
    this.lines = [];
    this.offset = 0;
    this.bad = 0;
    this.partial = 0;
  }
}

/** Summary of one run folder, given its (updated) metrics cache. */
export function summarizeRun(root: string, name: string, metrics: MetricsCache): RunSummary {
  const dir = join(root, name);
  const problems: string[] = [];
  const { cfg, problem } = readRunConfig(dir);
  if (problem) problems.push(problem);
  let statusRaw: { status?: unknown; pid?: unknown; updated?: unknown; error?: unknown } = {};
  const statusFile = join(dir, "status.json");
  if (existsSync(statusFile)) {
    try {
      statusRaw = JSON.parse(readFileSync(statusFile, "utf8")) as typeof statusRaw;
    } catch {
      problems.push("status.json is not valid JSON");
    }
  }
  if (!existsSync(metrics.file)) problems.push("no metrics.jsonl");
  if (metrics.bad > 0) problems.push(`${metrics.bad} unreadable line${metrics.bad > 1 ? "s" : ""} in metrics.jsonl`);
  let status: RunStatus = (["running", "finished", "interrupted", "stopped", "failed"] as const).find((s) => s === statusRaw.status) ?? "unknown";
  if (status === "running" && statusRaw.pid !== undefined && !alive(statusRaw.pid)) {
    status = "stale";
    problems.push("status says running but its process is gone");
  }
  if (metrics.partial > 0 && status !== "running") problems.push("metrics.jsonl ends with a truncated line");
  const lines = metrics.lines;
  const last = lines.at(-1) ?? null;
  let checkpoints: number[] = [];
  try {
    checkpoints = listCheckpoints(dir);
  } catch {
    problems.push("checkpoints/ cannot be read");
  }
  if (cfg && last) {
    const expected = [...checkpointSteps(cfg.train)].filter((s) => s <= last.step && (status !== "running" || s < last.step)).sort((a, b) => a - b);
    const missing = expected.filter((s) => !checkpoints.includes(s));
    // a checkpoint the config asks for is absent; resumed or --init-from runs start later, so only count steps after the first line
    const first = lines[0]!.step;
    const miss = missing.filter((s) => s >= first);
    if (miss.length > 0) problems.push(`missing checkpoint${miss.length > 1 ? "s" : ""} at step${miss.length > 1 ? "s" : ""} ${miss.slice(0, 5).join(", ")}${miss.length > 5 ? ", …" : ""}`);
  }
  if (!cfg) status = "malformed";
  let lastEval: RunSummary["lastEval"] = null;
  for (let i = lines.length - 1; i >= 0 && i >= lines.length - 100000; i--) {
    const e = lines[i]!.eval_loss;
    if (typeof e === "number") { lastEval = { step: lines[i]!.step, eval_loss: e }; break; }
  }
  return {
    name, status, problems, config: cfg, family: cfg ? familyOf(cfg).name : null,
    steps: cfg ? lastStepOf(cfg.train) : null,
    stepsDone: last ? last.step : 0,
    last, lastEval, checkpoints,
    phases: cfg && lines.length > 0 ? detectPhases(lines, cfg.data.rank, cfg.data.p_mask, familyOf(cfg).events) : null,
    copyLevel: cfg && familyOf(cfg).name === "bert" ? { loss: (cfg.data.p_mask * cfg.data.rank) / 9, loss_mask: cfg.data.rank / 9 } : null,
    updated: typeof statusRaw.updated === "string" ? statusRaw.updated : null,
    error: typeof statusRaw.error === "string" ? statusRaw.error : null,
  };
}
