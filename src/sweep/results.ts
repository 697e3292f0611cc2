// A sweep's results: DIR/sweep.json (an interface scripts rely on) and its
// figures (Kaplan–Meier curves against step and wall seconds, P(drop) with
// Wilson intervals, a phase diagram over two grid axes).
//
// sweep.json: {"cells": [{"key", "overrides", "runs": [{"seed", "dir",
// "steps", "plateau_end", "drop", "seconds", ...}], "p_drop", "p_drop_ci":
// [lo, hi], "median_plateau_end", "survival": [[step, fraction], ...], ...}]}
// with null for events that did not happen. `survival` is the fraction of
// seeds still on the plateau (Kaplan–Meier; runs that never left it are
// censored at their last step); `survival_drop` the fraction not yet dropped.
// P(drop) counts the runs that have ended (finished, or stopped at
// max_steps): a run still going is left out of it, but is in the curves,
// censored at its current step.

import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { z } from "zod";
import { AbruptError } from "../errors.js";
import { detectEvents } from "../train/events.js";
import { type EventSignal, familyOf } from "../family/index.js";
import { type MetricsLine, readMetrics } from "../train/metrics.js";
import { writeFigure } from "../viz/plot.js";
import { writeJsonAtomic } from "../store/files.js";
import { readStatus, runDirOf } from "./runs.js";
import { type KaplanMeier, type Observation, kaplanMeier, wilson } from "./stats.js";
import { alignedSpec, kmSpec, pDropSpec, phaseSpec } from "../viz/sweep.js";

export interface SweepRun {
  seed: number;
  dir: string;
  /** last step trained */
  steps: number;
  plateau_end: number | null;
  drop: number | null;
  /** seconds of training (sum of the steps' wall times) */
  seconds: number;
  plateau_end_seconds: number | null;
  drop_seconds: number | null;
  /** "finished" (ended: dropped and stopped, or reached its last step), "running", "interrupted", "queued" or "failed" */
  status: string;
}

export interface SweepCell {
  key: string;
  overrides: Record<string, unknown>;
  runs: SweepRun[];
  /** runs that have ended (they count in p_drop) */
  n_ended: number;
  n_drop: number;
  p_drop: number | null;
  p_drop_ci: [number, number] | null;
  median_plateau_end: number | null;
  median_plateau_end_ci: [number | null, number | null];
  median_drop: number | null;
  median_drop_ci: [number | null, number | null];
  median_drop_seconds: number | null;
  median_drop_seconds_ci: [number | null, number | null];
  survival: Array<[number, number]>;
  survival_drop: Array<[number, number]>;
  survival_seconds: Array<[number, number]>;
  survival_drop_seconds: Array<[number, number]>;
}

export interface SweepResults {
  id: string;
  axes: string[];
  updated: string;
  cells: SweepCell[];
}

interface SpecFile { id: string; axes: string[]; cells: Array<{ key: string; overrides: Record<string, unknown>; runs: string[] }> }

export function readSpecFile(dir: string): SpecFile {
  const f = join(dir, "sweep-spec.json");
  if (!existsSync(f)) throw new AbruptError(`${dir} is not a sweep folder (no sweep-spec.json)`);
  try {
    return JSON.parse(readFileSync(f, "utf8")) as SpecFile;
  } catch (e) {
    throw new AbruptError(`${f} is not valid JSON: ${(e as Error).message}`);
  }
}

/** One run's events and times, by the one definition (src/train/events.ts); `lines`: its metrics if already read. */
/** `signal`: the family's event signal (src/family/; default the BERT's). */
export function runResult(dir: string, name: string, seed: number, rank: number, lines?: MetricsLine[], signal?: EventSignal): SweepRun {
  const rd = runDirOf(dir, name);
  lines ??= readMetrics(join(rd, "metrics.jsonl")).lines;
  const ev = detectEvents(lines, rank, signal);
  let cum = 0, pes: number | null = null;
  for (const l of lines) {
    cum += l.ms ?? 0;
    if (ev.plateau_end !== null && l.step === ev.plateau_end) pes = cum / 1000;
  }
  const st = readStatus(rd);
  const status = !existsSync(rd) || lines.length === 0 ? "queued" : st?.status ?? "running";
  const r3 = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    seed, dir: relative(dir, rd), steps: ev.steps, plateau_end: ev.plateau_end, drop: ev.drop,
    seconds: r3(ev.seconds)!, plateau_end_seconds: r3(pes), drop_seconds: r3(ev.drop_seconds), status,
  };
}

const curve = (km: KaplanMeier): Array<[number, number]> => [[0, 1], ...km.points.map((p) => [p.t, Math.round(p.s * 1e6) / 1e6] as [number, number])];

export function cellResult(key: string, overrides: Record<string, unknown>, runs: SweepRun[]): SweepCell {
  const started = runs.filter((r) => r.status !== "queued");
  const obs = (ev: (r: SweepRun) => number | null, cens: (r: SweepRun) => number): Observation[] =>
    started.map((r) => (ev(r) !== null ? { t: ev(r)!, event: true } : { t: cens(r), event: false }));
  const plateau = kaplanMeier(obs((r) => r.plateau_end, (r) => r.steps));
  const drop = kaplanMeier(obs((r) => r.drop, (r) => r.steps));
  const plateauS = kaplanMeier(obs((r) => r.plateau_end_seconds, (r) => r.seconds));
  const dropS = kaplanMeier(obs((r) => r.drop_seconds, (r) => r.seconds));
  const ended = runs.filter((r) => r.status === "finished");
  const k = ended.filter((r) => r.drop !== null).length;
  return {
    key, overrides, runs,
    n_ended: ended.length,
    n_drop: k,
    p_drop: ended.length ? k / ended.length : null,
    p_drop_ci: ended.length ? wilson(k, ended.length) : null,
    median_plateau_end: plateau.median,
    median_plateau_end_ci: plateau.medianCi,
    median_drop: drop.median,
    median_drop_ci: drop.medianCi,
    median_drop_seconds: dropS.median,
    median_drop_seconds_ci: dropS.medianCi,
    survival: curve(plateau),
    survival_drop: curve(drop),
    survival_seconds: curve(plateauS),
    survival_drop_seconds: curve(dropS),
  };
}

/** The results of every cell; `run` gives one run's (the dashboard passes a cached runResult). */
export function sweepResults(dir: string, run: typeof runResult = runResult): SweepResults {
  const spec = readSpecFile(dir);
  const cells = spec.cells.map((c) => {
    const runs = c.runs.map((name) => {
      const plan = JSON.parse(readFileSync(join(dir, "plan", `${name}.json`), "utf8")) as { family?: string; train: { seed: number }; data: { rank: number } };
      return run(dir, name, plan.train.seed, plan.data.rank, undefined, familyOf(plan).events);
    });
    return cellResult(c.key, c.overrides, runs);
  });
  return { id: spec.id, axes: spec.axes, updated: new Date().toISOString(), cells };
}

// ----------------------------------------------------------------- figures

export interface AnalyzeSweepOptions {
  out?: string;
  /**
   * other sweep folders whose cells join the figures (e.g. a baseline run
   * as its own sweep), as "FOLDER" or "FOLDER:CELL,CELL"; they are named
   * "FOLDERNAME/CELL" and written with this sweep's to OUT/compared.json
   */
  with?: string[];
  /** metrics fields to draw against steps since each run's drop (e.g. attn_progress) */
  aligned?: string[];
  x?: string;
  y?: string;
  metric?: "p_drop" | "median_plateau_end";
}

/** Writes DIR/sweep.json and the figures; returns the results and the files written. */
export async function analyzeSweep(dir: string, o: AnalyzeSweepOptions = {}): Promise<{ results: SweepResults; files: string[]; compared?: SweepResults }> {
  const res = sweepResults(dir);
  const files: string[] = [];
  writeJsonAtomic(join(dir, "sweep.json"), res);
  files.push(join(dir, "sweep.json"));
  const out = o.out ?? join(dir, "analysis");
  const others = (o.with ?? []).flatMap((w) => otherCells(dir, w));
  mkdirSync(out, { recursive: true });
  const saved = new Set(others.filter((c) => c.saved).map((c) => c.key));
  const all: SweepCell[] = [...others.map(({ saved: _, ...c }) => c), ...res.cells];
  const compared = others.length > 0 ? { ...res, cells: all } : undefined;
  if (compared) {
    writeJsonAtomic(join(out, "compared.json"), compared);
    files.push(join(out, "compared.json"));
  }
  if (all.some((c) => c.runs.some((r) => r.status !== "queued"))) {
    files.push(...(await writeFigure(kmSpec(all, "step"), join(out, "km-steps"))));
    files.push(...(await writeFigure(kmSpec(all, "seconds"), join(out, "km-seconds"))));
  }
  if (all.some((c) => c.p_drop !== null)) files.push(...(await writeFigure(pDropSpec(all), join(out, "p-drop"))));
  // each run's metrics read once for all the aligned fields
  const logs = new Map<string, MetricsLine[]>();
  const readLog = (f: string) => logs.get(f) ?? logs.set(f, readMetrics(f).lines).get(f)!;
  // a saved summary's cells have no metrics to align
  const withLogs = all.filter((c) => !saved.has(c.key));
  for (const field of o.aligned ?? []) {
    const al = alignedAtDrop(dir, withLogs, field, readLog);
    writeJsonAtomic(join(out, `aligned-${field}.json`), { field, bin: ALIGN_BIN, cells: al });
    files.push(join(out, `aligned-${field}.json`), ...(await writeFigure(alignedSpec(al, field), join(out, `aligned-${field}`))));
  }
  const xKey = o.x ?? res.axes[0], yKey = o.y ?? res.axes[1];
  for (const k of [o.x, o.y]) if (k !== undefined && !res.axes.includes(k)) throw new AbruptError(`--${k === o.x ? "x" : "y"} ${k} is not a grid axis of this sweep (axes: ${res.axes.join(", ") || "none"})`);
  if (xKey && yKey && xKey !== yKey) {
    for (const m of o.metric ? [o.metric] : (["p_drop", "median_plateau_end"] as const)) {
      files.push(...(await writeFigure(phaseSpec(res.cells, xKey, yKey, m), join(out, `phase-${m}`))));
    }
  }
  return { results: res, files, ...(compared ? { compared } : {}) };
}

/**
 * The cells of another sweep for --with "SOURCE[:CELL,CELL]", renamed
 * "NAME/CELL", their run dirs made relative to this sweep's `dir`. SOURCE is
 * a sweep folder (its runs are read), or a saved summary: a sweep.json file,
 * or a folder that holds one and no sweep-spec.json (docs/sweeps/NAME/, where
 * the runs themselves are gone); a summary's cells are recomputed from its
 * runs' events, and `saved` is set since their metrics are not there.
 */
function otherCells(dir0: string, spec: string): Array<SweepCell & { saved?: true }> {
  const m = /^(.*?)(?::([^:/]+))?$/.exec(spec)!;
  const src = m[1]!, want = m[2]?.split(",").map((x) => x.trim()).filter(Boolean) ?? null;
  if (!existsSync(src)) throw new AbruptError(`--with ${spec}: ${src} does not exist`);
  const file = statSync(src).isFile() ? src : !existsSync(join(src, "sweep-spec.json")) && existsSync(join(src, "sweep.json")) ? join(src, "sweep.json") : null;
  const dir = file ? dirname(file) : src;
  const res = file ? savedResults(file, spec) : sweepResults(dir);
  const name = basename(resolve(dir));
  for (const k of want ?? []) {
    if (!res.cells.some((c) => c.key === k)) throw new AbruptError(`--with ${spec}: ${src} has no cell "${k}" (cells: ${res.cells.map((c) => c.key).join(", ")})`);
  }
  return res.cells.filter((c) => !want || want.includes(c.key)).map((c) => ({
    ...c, key: `${name}/${c.key}`, runs: c.runs.map((r) => ({ ...r, dir: relative(dir0, join(dir, r.dir)) })), ...(file ? { saved: true as const } : {}),
  }));
}

/** What a saved sweep.json needs for its cells to be recomputed: each run's seed, folder, steps, status and events. */
const ev = z.number().nullable().optional().transform((x) => x ?? null);
const SavedRun = z.object({
  seed: z.number(), dir: z.string(), steps: z.number(), status: z.string(),
  plateau_end: ev, drop: ev, seconds: z.number().optional().transform((x) => x ?? 0), plateau_end_seconds: ev, drop_seconds: ev,
});
const SavedSweep = z.object({
  id: z.string().optional(), axes: z.array(z.string()).optional(), updated: z.string().optional(),
  cells: z.array(z.object({ key: z.string(), overrides: z.record(z.string(), z.unknown()).optional(), runs: z.array(SavedRun) })),
});

/** A saved sweep.json, its cells recomputed from the runs' events (so its statistics are this version's). */
function savedResults(file: string, spec: string): SweepResults {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new AbruptError(`--with ${spec}: ${file} is not valid JSON: ${(e as Error).message}`);
  }
  const r = SavedSweep.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new AbruptError(`--with ${spec}: ${file} is not a sweep.json (it needs "cells", each with a "key" and "runs" of seed, dir, steps, status; ${i.path.join(".") || "top"}: ${i.message})`);
  }
  const d = r.data;
  return { id: d.id ?? basename(dirname(file)), axes: d.axes ?? [], updated: d.updated ?? "", cells: d.cells.map((c) => cellResult(c.key, c.overrides ?? {}, c.runs)) };
}

/** Bin width, in steps, of the curves aligned at the drop. */
export const ALIGN_BIN = 100;

export interface AlignedPoint {
  /** bin start, in steps since the drop (negative: before it) */
  offset: number;
  mean: number;
  /** mean ± 1.96 standard errors over the runs in the bin (the mean itself with one run) */
  lo: number;
  hi: number;
  /** runs with a value in the bin */
  n: number;
}
export interface AlignedCell { key: string; runs: number; points: AlignedPoint[] }

/**
 * A numeric metrics field of every run that dropped, against steps since its
 * drop (binned by ALIGN_BIN; a run's values in a bin are averaged first, so
 * each run counts once per bin): the mean over runs and a normal 95% band.
 * Bins with fewer than two runs are left out. `dir`: the folder the cells'
 * run dirs are relative to.
 */
export function alignedAtDrop(dir: string, cells: SweepCell[], field: string, read: (file: string) => MetricsLine[] = (f) => readMetrics(f).lines): AlignedCell[] {
  let seen = false;
  const out = cells.map((c) => {
    const bins = new Map<number, number[]>();
    const dropped = c.runs.filter((r) => r.drop !== null);
    for (const r of dropped) {
      const per = new Map<number, number[]>();
      for (const l of read(join(dir, r.dir, "metrics.jsonl"))) {
        const v = (l as unknown as Record<string, unknown>)[field];
        if (typeof v !== "number" || !Number.isFinite(v)) continue;
        seen = true;
        const b = Math.floor((l.step - r.drop!) / ALIGN_BIN) * ALIGN_BIN;
        (per.get(b) ?? per.set(b, []).get(b)!).push(v);
      }
      for (const [b, vs] of per) (bins.get(b) ?? bins.set(b, []).get(b)!).push(vs.reduce((a, x) => a + x, 0) / vs.length);
    }
    const points = [...bins.entries()].filter(([, vs]) => vs.length >= 2).sort((a, b) => a[0] - b[0]).map(([offset, vs]) => {
      const n = vs.length, mean = vs.reduce((a, x) => a + x, 0) / n;
      const se = Math.sqrt(vs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1) / n);
      const r6 = (x: number) => Math.round(x * 1e6) / 1e6;
      return { offset, mean: r6(mean), lo: r6(mean - 1.96 * se), hi: r6(mean + 1.96 * se), n };
    });
    return { key: c.key, runs: dropped.length, points };
  });
  if (!seen && cells.some((c) => c.runs.some((r) => r.drop !== null))) {
    throw new AbruptError(`--aligned ${field}: no run of the sweep logged a number "${field}" in metrics.jsonl (e.g. attn_progress, collapse, repetition with --progress-every; loss_mask)`);
  }
  return out;
}

/** One line per cell: P(drop) with its interval and the medians. */
export function sweepFindings(res: SweepResults): string[] {
  const f = (x: number | null) => (x === null ? "not reached" : String(Math.round(x)));
  return res.cells.map((c) => {
    const p = c.p_drop === null ? "P(drop) –" : `P(drop) ${c.n_drop}/${c.n_ended} = ${c.p_drop.toFixed(2)} [${c.p_drop_ci![0].toFixed(2)}, ${c.p_drop_ci![1].toFixed(2)}]`;
    const ci = (v: [number | null, number | null]) => `[${f(v[0])}, ${f(v[1])}]`;
    return `${c.key}: ${p}; median plateau end ${f(c.median_plateau_end)} ${ci(c.median_plateau_end_ci)}; median drop ${f(c.median_drop)} steps ${ci(c.median_drop_ci)}, ${f(c.median_drop_seconds)} s`;
  });
}
