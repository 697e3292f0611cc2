// Analyses for the dashboard and `abrupt report`, computed from a run's
// checkpoints with the experiments of `abrupt analyze` (src/analysis) and
// cached in the run folder with the same writer and the same JSON:
//
//   <run>/analysis/<experiment>-step-<N>.json           default options, seed 0
//                                                        (the name `abrupt analyze all` uses)
//   <run>/analysis/<experiment>-step-<N>-<hash>.json    other options or seed
//   <run>/analysis/progress.json                         progress over all checkpoints
//                                                        (what `abrupt analyze progress RUN` writes);
//                                                        recomputed when new checkpoints appear
//                                                        (so any experiment served over the run: <experiment>.json)
//   <run>/analysis/sample-step-<N>-seed-<S>-<mask>.json  one sample for the matrix view (dashboard only)
//
// Which experiments are served, and how, comes from the registry
// (src/analysis/index.ts): each experiment's `dashboard` field.
//
// A cached file is used when it exists and matches (its step, for progress
// its list of checkpoint steps, and under a plain name the default options,
// which every JSON records in `options`); otherwise the experiment runs and
// the file is written (temp + rename, by writeOutput), figures left out: the
// page and the report draw them from the JSON.

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { ensureDir } from "../store/files.js";
import { join } from "node:path";
import { type AnalysisOutput, dataOfRun, lossSplit, makeContext } from "../analysis/context.js";
import { checkAnalysisMemory, withDefaults } from "../analysis/experiment.js";
import type { Experiment } from "../analysis/experiment.js";
import { EXPERIMENTS, findExperiment } from "../analysis/index.js";
import { writeOutput } from "../analysis/output.js";
import { forwardBatch } from "../analysis/forward.js";
import { defaultStructuredSpec } from "../analysis/attention.js";
import { structuredMask, sampleBatch } from "../data/matrix.js";
import { Rng } from "../data/rng.js";
import { AbruptError } from "../errors.js";
import { getKernels } from "../kernels/index.js";
import { listCheckpoints, openRun } from "../store/run.js";

/** How the dashboard serves an experiment of the registry (its `dashboard` field, by default from its steps). */
const servedAs = (e: Experiment): "step" | "run" | false => e.dashboard ?? (e.steps === "none" ? "run" : "step");

/** Experiments the dashboard computes per checkpoint (plus "sample", its own), and over the run: from the registry. */
export const PER_STEP: readonly string[] = [...EXPERIMENTS.filter((e) => servedAs(e) === "step").map((e) => e.name), "sample"];
export const PER_RUN: readonly string[] = EXPERIMENTS.filter((e) => servedAs(e) === "run").map((e) => e.name);
/** The name of a served analysis (an experiment of PER_STEP or PER_RUN, or "sample"). */
export type Kind = string;

export function isKind(x: string): x is Kind {
  return PER_STEP.includes(x) || PER_RUN.includes(x);
}

/** Whether an analysis is computed once over the run (no step). */
export const isPerRun = (kind: Kind): boolean => PER_RUN.includes(kind);

export interface ComputeRequest {
  /** absolute run folder (already checked to be inside the runs folder) */
  dir: string;
  kind: Kind;
  /** checkpoint step (ignored for progress) */
  step: number;
  seed: number;
  /** experiment options as raw key=value strings (typed like `--opt`) */
  opts: Record<string, string>;
}

export interface ComputeResult {
  json: Record<string, unknown>;
  file: string;
  cached: boolean;
}

function hashOf(x: unknown): string {
  const canon = (v: unknown): unknown =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])]))
      : v;
  return createHash("sha1").update(JSON.stringify(canon(x))).digest("hex").slice(0, 10);
}

/** The cache file of a request (relative to the run's analysis folder). */
export function cacheName(req: ComputeRequest): string {
  const plain = Object.keys(req.opts).length === 0 && req.seed === 0;
  if (req.kind === "sample") {
    const mask = req.opts["mask"] ?? "random";
    if (mask !== "random" && mask !== "structured") throw new AbruptError(`sample: option mask must be random or structured (got "${mask}")`);
    const extra = Object.keys(req.opts).filter((k) => k !== "mask");
    if (extra.length) throw new AbruptError(`sample: unknown option "${extra[0]}" (options: mask)`);
    return `sample-step-${req.step}-seed-${req.seed}-${mask}.json`;
  }
  if (isPerRun(req.kind)) return plain ? `${req.kind}.json` : `${req.kind}-${hashOf({ opts: req.opts, seed: req.seed })}.json`;
  return `${req.kind}-step-${req.step}${plain ? "" : `-${hashOf({ opts: req.opts, seed: req.seed })}`}.json`;
}

function readCached(file: string): Record<string, unknown> | null {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch {
    return null; // a broken cache file is recomputed
  }
}

/** One sample for the matrix view: input (null = hidden), target, prediction, error. */
async function sampleOutput(dir: string, step: number, seed: number, mask: "random" | "structured"): Promise<AnalysisOutput> {
  const run = openRun(dir);
  const data = dataOfRun(run);
  const ctx = makeContext({ kind: "run", run }, data, getKernels("cpu"), seed, "", step);
  const model = ctx.model();
  const { m, n } = data;
  const mk = mask === "structured" ? structuredMask(m, n, defaultStructuredSpec(m, n)) : undefined;
  const batch = sampleBatch(new Rng(seed), data, 1, undefined, mk);
  const out = await forwardBatch(model, batch);
  const grid = <T>(f: (t: number) => T): T[][] => Array.from({ length: m }, (_, i) => Array.from({ length: n }, (_, j) => f(i * n + j)));
  const r4 = (x: number) => Math.round(x * 1e4) / 1e4;
  const loss = lossSplit(out, batch.targets, batch.hidden);
  return {
    json: {
      m, n, mask,
      input: grid((t) => (batch.hidden[t] ? null : r4(batch.targets[t]!))),
      target: grid((t) => r4(batch.targets[t]!)),
      prediction: grid((t) => r4(out[t]!)),
      error: grid((t) => r4(out[t]! - batch.targets[t]!)),
      loss,
    },
    figures: [],
    findings: [
      `one ${m}×${n} matrix (seed ${seed}, ${mask} mask): MSE ${loss.loss.toPrecision(3)} over all cells, ${Number.isFinite(loss.loss_mask) ? loss.loss_mask.toPrecision(3) : "n/a"} over hidden cells`,
    ],
  };
}

/**
 * The cached result of a request if there is a valid one (no model is
 * loaded: cheap enough for the server's own thread), else null.
 */
export function lookupCache(req: ComputeRequest): ComputeResult | null {
  const file = join(req.dir, "analysis", cacheName(req));
  const cached = readCached(file);
  if (!cached) return null;
  if (isPerRun(req.kind)) {
    // over the run: valid for the checkpoints it was computed from (progress lists them; otherwise the last)
    const ckpts = listCheckpoints(req.dir);
    const have = Array.isArray(cached["steps"]) ? (cached["steps"] as Array<{ step: number }>).map((s) => s.step) : null;
    const fresh = have ? have.join(",") === ckpts.join(",") : cached["step"] === ckpts.at(-1);
    return fresh ? { json: cached, file, cached: true } : null;
  }
  return cached["step"] === req.step && optionsMatch(req, cached) && listCheckpoints(req.dir).includes(req.step) ? { json: cached, file, cached: true } : null;
}

/**
 * A cache file under the plain name (`<exp>-step-N.json`, also written by
 * `abrupt analyze all`) stands for the default options: it is used only if it
 * records exactly those (an `analyze all --opt batch=16` result is recomputed).
 * Other options are part of the file name (a hash), so they always match.
 */
function optionsMatch(req: ComputeRequest, cached: Record<string, unknown>): boolean {
  if (req.kind === "sample") return true;
  if (Object.keys(req.opts).length > 0 || req.seed !== 0) return true;
  const defaults = withDefaults(findExperiment(req.kind), {}, false);
  return hashOf(cached["options"] ?? null) === hashOf(defaults);
}

/** Computes (or reads from the cache) one analysis of one run. */
export async function compute(req: ComputeRequest): Promise<ComputeResult> {
  const outDir = join(req.dir, "analysis");
  const file = join(outDir, cacheName(req));
  const run = openRun(req.dir);
  if (isPerRun(req.kind)) {
    if (run.steps.length === 0) throw new AbruptError(`${req.dir} has no checkpoints`);
  } else if (!run.steps.includes(req.step)) {
    throw new AbruptError(`checkpoint step ${req.step} does not exist (available: ${run.steps.join(", ") || "none"})`);
  }
  const hit = lookupCache(req);
  if (hit) return hit;
  const data = dataOfRun(run);
  const step = isPerRun(req.kind) ? run.steps.at(-1)! : req.step;
  const ctx = makeContext({ kind: "run", run }, data, getKernels("cpu"), req.seed, outDir, step);
  let out: AnalysisOutput;
  let options: Record<string, unknown> | undefined;
  if (req.kind === "sample") {
    out = await sampleOutput(req.dir, req.step, req.seed, (req.opts["mask"] ?? "random") as "random" | "structured");
  } else {
    const def = findExperiment(req.kind);
    options = withDefaults(def, req.opts, false);
    checkAnalysisMemory(def, options, run.cfg.model, data, "cpu");
    out = await def.run(ctx, options, run);
  }
  ensureDir(outDir, "analysis folder");
  const base = cacheName(req).replace(/\.json$/, "");
  await writeOutput(ctx, req.kind, { ...out, figures: [] }, base.slice(req.kind.length), options);
  const json = readCached(file);
  if (!json) throw new Error(`cache file ${file} was not written`);
  return { json, file, cached: false };
}

/**
 * The most a dashboard request may ask for (counts of matrices and
 * iterations, list lengths, option lengths); beyond it the server answers
 * 400. `abrupt analyze` and `abrupt report` have only the memory check.
 */
export const SERVER_LIMITS: Record<string, number> = { batch: 1024, matrices: 1024, train: 8192, test: 2048, permutations: 20, tsneIterations: 2000 };
const MAX_LIST = 64;
const MAX_RAW = 2000;

export function boundOptions(req: ComputeRequest): void {
  for (const [k, raw] of Object.entries(req.opts)) {
    if (raw.length > MAX_RAW) throw new AbruptError(`${req.kind}: option ${k} is ${raw.length} characters long; the dashboard takes at most ${MAX_RAW}`);
  }
  if (req.kind === "sample") return;
  for (const [k, v] of Object.entries(withDefaults(findExperiment(req.kind), req.opts, false))) {
    const max = SERVER_LIMITS[k];
    if (max !== undefined && typeof v === "number" && v > max) {
      throw new AbruptError(`${req.kind}: ${k}=${v} is more than the dashboard allows (${max}); use abrupt analyze for larger analyses`);
    }
    if (Array.isArray(v) && v.length > MAX_LIST) throw new AbruptError(`${req.kind}: ${k} has ${v.length} entries; the dashboard takes at most ${MAX_LIST}`);
  }
}

