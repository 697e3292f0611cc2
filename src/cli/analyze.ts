// `abrupt analyze <experiment|all> RUN`: runs the experiments of SPEC §4 on
// a run's checkpoints (or on one safetensors file with --checkpoint) and
// writes <run>/analysis/<experiment>[-step-N].json with figures beside it;
// `all` also writes <run>/report.md.

import { existsSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { type AnalysisContext, type AnalysisOutput, type Source, dataOfRun, makeContext, writeOutput } from "../analysis/context.js";
import { CHUNK } from "../analysis/forward.js";
import { type RunHandle, openRun } from "../store/run.js";
import { detectPhases, phasesOutput, pickSteps } from "../analysis/phases.js";
import { ABLATE_DEFAULTS, ablate } from "../analysis/ablate.js";
import { ATTENTION_DEFAULTS, attention } from "../analysis/attention.js";
import { COPY_DEFAULTS, copy, copyOverTraining } from "../analysis/copy.js";
import { EMBEDDINGS_DEFAULTS, embeddings } from "../analysis/embeddings.js";
import { NNM_DEFAULTS, nnm } from "../analysis/nnm.js";
import { OOD_DEFAULTS, ood } from "../analysis/ood.js";
import { PATCH_DEFAULTS, patch } from "../analysis/patch.js";
import { PROBE_DEFAULTS, probe } from "../analysis/probe.js";
import { PROGRESS_DEFAULTS, progress } from "../analysis/progress.js";
import { SWAP_DEFAULTS, swap } from "../analysis/swap.js";
import { componentOutput } from "../analysis/component.js";
import type { DataConfig } from "../data/matrix.js";
import { validateDataConfig } from "../data/matrix.js";
import { AbruptError } from "../errors.js";
import { type AttnBiasConfig, parseAttnBias } from "../train/config.js";
import { loadKernels } from "../kernels/index.js";
import type { BackendName } from "../kernels/types.js";
import { checkMemory, inferenceBytes } from "../model/memory.js";
import type { ModelConfig } from "../model/params.js";
import { ensureDir, writeFileAtomic } from "../store/files.js";

export interface AnalyzeFlags {
  checkpoint?: string;
  heads?: number;
  step?: string;
  seed: number;
  backend: BackendName;
  out?: string;
  m?: number; n?: number; rank?: number; pMask?: number; factor?: string;
  /** clamp values outside [-10, 10] instead of failing */
  clamp?: boolean;
  /** experiment options as key=value pairs (values: numbers, lists a,b,c, or JSON) */
  opt: string[];
  /** the attention intervention for the model's forwards, C[@STEP][:LAYERS] as `train --attn-bias` */
  attnBias?: string;
  /** called when a job (an experiment on one checkpoint) starts and when a result is ready */
  onProgress?: (ev: AnalyzeEvent) => void;
}

/** Progress of `analyze`: jobs are (experiment, checkpoint) pairs; `done` of `total` have finished. */
export type AnalyzeEvent =
  | { kind: "start"; experiment: string; step: number; done: number; total: number }
  | { kind: "done"; result: AnalyzeResult; done: number; total: number; seconds: number | null };

/** An experiment: runs on one checkpoint (ctx.step), or on the run as a whole. */
export interface ExperimentDef {
  name: string;
  describe: string;
  /** default checkpoint selection when --step is not given */
  defaultStep: "pre" | "post" | "final" | "all" | "none";
  /** the experiment's options and their defaults (for --opt key=value) */
  defaults?: object;
  run(ctx: AnalysisContext, opts: Record<string, unknown>, run: RunHandle | null): AnalysisOutput | Promise<AnalysisOutput>;
  /**
   * With `--step all`: one result over training from the per-checkpoint
   * JSONs, written as <experiment>-over-training.json and figures.
   */
  summarize?(per: Array<{ step: number; json: Record<string, unknown> }>, run: RunHandle | null): AnalysisOutput;
}

export const EXPERIMENTS: ExperimentDef[] = [
  {
    name: "phases",
    describe: "plateau onset/end, drop step, plateau level vs the copy level",
    defaultStep: "none",
    run: (_ctx, _o, run) => {
      if (!run) throw new AbruptError("phases needs a run directory (metrics.jsonl), not a lone checkpoint");
      return phasesOutput(run);
    },
  },
  {
    name: "copy",
    describe: "MASK replaced by value tokens, and random full-rank inputs: does the model copy?",
    defaultStep: "pre",
    defaults: COPY_DEFAULTS,
    run: (ctx, o) => copy(ctx, o as unknown as typeof COPY_DEFAULTS),
    summarize: (per, run) => copyOverTraining(per, run ? (detectPhases(run.metrics, run.cfg.data.rank, run.cfg.data.p_mask).drop?.step ?? null) : null),
  },
  {
    name: "nnm",
    describe: "nuclear-norm minimisation baseline vs BERT over p_mask 0.10…0.60",
    defaultStep: "post",
    defaults: NNM_DEFAULTS,
    run: (ctx, o) => nnm(ctx, o as unknown as typeof NNM_DEFAULTS),
  },
  {
    name: "attention",
    describe: "mean attention patterns, row/column scores, head labels",
    defaultStep: "post",
    defaults: ATTENTION_DEFAULTS,
    run: (ctx, o) => attention(ctx, o as unknown as typeof ATTENTION_DEFAULTS),
  },
  {
    name: "probe",
    describe: "linear probes per layer: cell value, masked row, top singular vector",
    defaultStep: "post",
    defaults: PROBE_DEFAULTS,
    run: (ctx, o) => probe(ctx, o as unknown as typeof PROBE_DEFAULTS),
  },
  {
    name: "embeddings",
    describe: "token-embedding norms and PCA, position t-SNE, permuted positions",
    defaultStep: "post",
    defaults: EMBEDDINGS_DEFAULTS,
    run: (ctx, o, run) => {
      const opts = { ...(o as unknown as typeof EMBEDDINGS_DEFAULTS) };
      if (run && opts.steps.length === 0) opts.steps = run.steps.filter((s) => s <= ctx.step);
      return embeddings(ctx, opts);
    },
  },
  {
    name: "patch",
    describe: "activation patching: run on -X with attention outputs from X",
    defaultStep: "post",
    defaults: PATCH_DEFAULTS,
    run: (ctx, o) => patch(ctx, o as unknown as typeof PATCH_DEFAULTS),
  },
  {
    name: "ablate",
    describe: "per-head importance: zero or mean-pattern ablation",
    defaultStep: "post",
    defaults: ABLATE_DEFAULTS,
    run: (ctx, o) => ablate(ctx, o as unknown as typeof ABLATE_DEFAULTS),
  },
  {
    name: "swap",
    describe: "swap Q/K/V, attention or non-attention weights between pre and post checkpoints",
    defaultStep: "none",
    defaults: SWAP_DEFAULTS,
    run: (ctx, o, run) => {
      const opts = { ...(o as unknown as typeof SWAP_DEFAULTS) };
      if (run) {
        if (opts.stepA === null) opts.stepA = pickSteps(run, "pre")[0]!;
        if (opts.stepB === null) opts.stepB = pickSteps(run, "post")[0]!;
      }
      return swap(ctx, opts);
    },
  },
  {
    name: "component",
    describe: "a --train-only run against the run it was initialised from: when does its drop come?",
    defaultStep: "none",
    run: (_ctx, _o, run) => {
      if (!run) throw new AbruptError("component needs a run directory made with --init-from/--train-only");
      return componentOutput(run);
    },
  },
  {
    name: "ood",
    describe: "out of distribution: factors, ranks, p_mask, sizes; BERT vs NNM",
    defaultStep: "post",
    defaults: OOD_DEFAULTS,
    run: (ctx, o) => ood(ctx, o as unknown as typeof OOD_DEFAULTS),
  },
  {
    name: "progress",
    describe: "attention progress, hidden-state collapse, repetition over training",
    defaultStep: "none",
    defaults: PROGRESS_DEFAULTS,
    run: (ctx, o, run) => {
      const opts = { ...(o as unknown as typeof PROGRESS_DEFAULTS) };
      if (run && opts.steps.length === 0) opts.steps = run.steps;
      if (run && opts.metrics === undefined) opts.metrics = run.metrics.map((l) => ({ step: l.step, loss: l.loss, loss_mask: l.loss_mask }));
      return progress(ctx, opts);
    },
  },
];

/** Types of options whose default is null. */
const NULL_KINDS: Record<string, "strings" | "number" | "numbers" | "json"> = {
  heads: "strings", hooks: "strings", stepA: "number", stepB: "number", queryCell: "numbers", variants: "json",
};

/**
 * Types an option value like its default: numbers, booleans, strings,
 * comma lists of numbers or strings, or JSON (any value starting with [ or {).
 */
function coerce(experiment: string, key: string, dflt: unknown, raw: string): unknown {
  const bad = (what: string) => new AbruptError(`${experiment}: option ${key} must be ${what} (got "${raw}")`);
  if (/^\s*[[{]/.test(raw)) {
    try { return JSON.parse(raw); } catch { throw bad("valid JSON"); }
  }
  const num = (x: string) => {
    const v = Number(x);
    if (x.trim() === "" || !Number.isFinite(v)) throw bad(Array.isArray(dflt) ? "a comma list of numbers" : "a number");
    return v;
  };
  const kind = dflt === null || dflt === undefined ? NULL_KINDS[key] ?? "strings"
    : Array.isArray(dflt) ? (typeof dflt[0] === "string" ? "strings" : "numbers")
    : typeof dflt;
  switch (kind) {
    case "number": return num(raw);
    case "boolean":
      if (raw !== "true" && raw !== "false") throw bad("true or false");
      return raw === "true";
    case "numbers": return raw.split(",").map(num);
    case "strings": return raw.split(",").map((x) => x.trim()).filter(Boolean);
    case "json": throw bad("JSON");
    default: return raw;
  }
}

/** Options that count matrices or iterations: integers in [min, max] (the memory check comes on top). */
const COUNTS: Record<string, [number, number]> = {
  batch: [1, 2 ** 24], matrices: [1, 2 ** 24], train: [1, 2 ** 24], test: [1, 2 ** 24], permutations: [0, 10_000], tsneIterations: [1, 1_000_000],
};

/**
 * Experiment options: defaults overridden by --opt key=value. A key no
 * experiment knows is an error; with `all`, each experiment takes its keys.
 */
export function withDefaults(def: ExperimentDef, given: Record<string, string>, all: boolean): Record<string, unknown> {
  const known = Object.keys(def.defaults ?? {});
  const out: Record<string, unknown> = { ...(def.defaults ?? {}) };
  for (const [k, v] of Object.entries(given)) {
    if (known.includes(k)) out[k] = coerce(def.name, k, (def.defaults as Record<string, unknown>)[k], v);
    else if (!all) throw new AbruptError(`${def.name}: unknown option "${k}" (options: ${known.join(", ") || "none"})`);
    const range = COUNTS[k];
    const x = out[k];
    if (range && known.includes(k) && !(typeof x === "number" && Number.isInteger(x) && x >= range[0] && x <= range[1])) {
      throw new AbruptError(`${def.name}: option ${k} must be an integer in ${range[0]}..${range[1]} (got ${v})`);
    }
  }
  return out;
}

/** Experiments whose `batch` option is the number of matrices per forward pass (the others pass CHUNK at a time). */
const BATCH_IS_CHUNK = new Set(["probe", "embeddings", "progress"]);

/**
 * Fails with one line when an experiment's options need more memory than is
 * free: the two models a context holds, their activations per forward pass,
 * and what it keeps per matrix.
 */
export function checkAnalysisMemory(def: ExperimentDef, opts: Record<string, unknown>, cfg: ModelConfig, data: DataConfig, backend: BackendName): void {
  if (!def.defaults) return;
  const count = (k: string) => (typeof opts[k] === "number" ? (opts[k] as number) : 0);
  const samples = Math.max(1, count("batch"), count("matrices"), count("train") + count("test"));
  const chunk = BATCH_IS_CHUNK.has(def.name) ? Math.max(1, count("batch")) : CHUNK;
  const T = data.m * data.n;
  checkMemory(inferenceBytes(cfg, T, { samples, chunk, models: 2 }, backend === "webgpu"),
    `${def.name} on ${samples} ${data.m}×${data.n} matrices with BERT L${cfg.L} d${cfg.d} ff${cfg.ff}`);
}

/** Parses --opt key=value pairs into raw strings (typed later against the experiment's defaults). */
export function parseOpts(pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf("=");
    if (i <= 0) throw new AbruptError(`--opt must be key=value (got "${p}")`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

export function findExperiment(name: string): ExperimentDef {
  const e = EXPERIMENTS.find((x) => x.name === name);
  if (!e) throw new AbruptError(`unknown experiment "${name}" (experiments: ${EXPERIMENTS.map((x) => x.name).join(", ")}, all)`);
  return e;
}

function dataFromFlags(base: DataConfig | null, f: AnalyzeFlags): DataConfig {
  const d: DataConfig = base ?? { m: 7, n: 7, rank: 2, pMask: 0.3, prec: 2, factor: "uniform", clamp: false };
  const out = { ...d };
  if (f.m !== undefined) out.m = f.m;
  if (f.n !== undefined) out.n = f.n;
  if (f.rank !== undefined) out.rank = f.rank;
  if (f.pMask !== undefined) out.pMask = f.pMask;
  if (f.clamp) out.clamp = true;
  if (f.factor !== undefined) {
    if (!["uniform", "gaussian", "laplace"].includes(f.factor)) throw new AbruptError(`--factor must be uniform, gaussian or laplace (got "${f.factor}")`);
    out.factor = f.factor as DataConfig["factor"];
  }
  validateDataConfig(out);
  return out;
}

export interface AnalyzeResult {
  experiment: string;
  step: number;
  files: string[];
  findings: string[];
}

/** Runs one experiment (or all) and writes results; returns what was written. */
export async function analyze(experiment: string, runDir: string | undefined, f: AnalyzeFlags): Promise<AnalyzeResult[]> {
  const defs = experiment === "all" ? EXPERIMENTS : [findExperiment(experiment)];
  let run: RunHandle | null = null;
  let source: Source;
  if (f.checkpoint) {
    if (!existsSync(f.checkpoint)) throw new AbruptError(`checkpoint ${f.checkpoint} does not exist`);
    source = { kind: "checkpoint", file: resolve(f.checkpoint), ...(f.heads !== undefined ? { heads: f.heads } : {}) };
  } else {
    if (!runDir) throw new AbruptError("give a run directory, or --checkpoint FILE");
    run = openRun(runDir);
    source = { kind: "run", run };
  }
  const data = dataFromFlags(run ? dataOfRun(run) : null, f);
  const attnBias = f.attnBias !== undefined ? parseAttnBias(f.attnBias) : null;
  if (attnBias && run) {
    const L = run.cfg.model.L;
    for (const l of attnBias.layers ?? []) if (l >= L) throw new AbruptError(`--attn-bias: layer ${l} is outside 0..${L - 1} (the model has ${L} layers)`);
    const lastCk = run.steps.at(-1) ?? 0;
    if (attnBias.from > lastCk) throw new AbruptError(`--attn-bias: step ${attnBias.from} is past the run's last checkpoint (step ${lastCk})`);
  }
  const kernels = await loadKernels(f.backend);
  const outDir = resolve(f.out ?? (run ? join(run.dir, "analysis") : join(resolve(f.checkpoint!, ".."), "analysis")));
  const opts = parseOpts(f.opt);
  if (f.seed < 0 || !Number.isInteger(f.seed)) throw new AbruptError(`--seed must be a non-negative integer (got ${f.seed})`);
  ensureDir(outDir, "output folder");
  if (experiment === "all") {
    for (const k of Object.keys(opts)) {
      if (!defs.some((d) => Object.keys(d.defaults ?? {}).includes(k))) throw new AbruptError(`unknown option "${k}" (no experiment takes it)`);
    }
  }
  // the plan first (experiments × checkpoints), so progress can count jobs
  const plan: Array<{ def: ExperimentDef; steps: number[]; spec: string; skip?: string }> = [];
  for (const def of defs) {
    let steps: number[];
    const spec = f.step ?? def.defaultStep;
    if (def.defaultStep === "none") steps = [run ? (run.steps.at(-1) ?? -1) : -1];
    else if (!run) steps = [-1];
    else if (experiment === "all" && f.step === undefined && def.defaultStep !== "all") {
      // `all`: each per-checkpoint experiment before and after the drop, where they exist
      steps = [];
      for (const s of ["pre", "post"]) {
        try { steps.push(...pickSteps(run, s)); } catch { /* no such phase */ }
      }
      if (steps.length === 0) steps = pickSteps(run, "final");
      steps = [...new Set(steps)];
    } else steps = pickSteps(run, spec);
    if (experiment === "all" && def.name === "component" && !run?.cfg.train.init_from) {
      plan.push({ def, steps: [], spec, skip: "not run: this run was not made with --init-from/--train-only" });
    } else plan.push({ def, steps, spec });
  }
  const total = plan.reduce((n, p) => n + p.steps.length, 0);
  let done = 0;

  const results: AnalyzeResult[] = [];
  const report = (r: AnalyzeResult, seconds: number | null) => {
    results.push(r);
    f.onProgress?.({ kind: "done", result: r, done, total, seconds });
  };
  for (const { def, steps, spec, skip } of plan) {
    if (skip) {
      report({ experiment: def.name, step: -1, files: [], findings: [skip] }, null);
      continue;
    }
    const per: Array<{ step: number; json: Record<string, unknown> }> = [];
    let resolved: Record<string, unknown> = {};
    for (const step of steps) {
      f.onProgress?.({ kind: "start", experiment: def.name, step, done, total });
      const t0 = performance.now();
      const ctx = makeContext(source, data, kernels, f.seed, outDir, step, attnBias);
      let out: AnalysisOutput;
      try {
        resolved = withDefaults(def, opts, experiment === "all");
        checkAnalysisMemory(def, resolved, run ? run.cfg.model : ctx.model().cfg, data, f.backend);
        out = await def.run(ctx, resolved, run);
      } catch (e) {
        // with `all`, one experiment that cannot run here (e.g. swap without a
        // drop) is reported, not fatal
        if (experiment !== "all" || !(e instanceof AbruptError)) throw e;
        done++;
        report({ experiment: def.name, step, files: [], findings: [`not run: ${e.message}`] }, (performance.now() - t0) / 1000);
        continue;
      }
      const suffix = (steps.length > 1 || experiment === "all" ? (step >= 0 && def.defaultStep !== "none" ? `-step-${step}` : "") : "") + attnBiasTag(attnBias);
      const files = await writeOutput(ctx, def.name, out, suffix, attnBias ? { ...resolved, attn_bias: attnBias } : resolved);
      per.push({ step, json: out.json });
      done++;
      report({ experiment: def.name, step, files, findings: out.findings }, (performance.now() - t0) / 1000);
    }
    if (def.summarize && spec === "all" && per.length >= 2) {
      const out = def.summarize(per, run);
      const ctx = makeContext(source, data, kernels, f.seed, outDir, -1, attnBias);
      const files = await writeOutput(ctx, def.name, out, "-over-training" + attnBiasTag(attnBias), attnBias ? { ...resolved, attn_bias: attnBias } : resolved);
      report({ experiment: `${def.name} over training`, step: -1, files, findings: out.findings }, null);
    }
  }
  if (experiment === "all") writeReport(run, source, outDir, results);
  return results;
}

/** File-name tag of results under an intervention, so they never replace the plain ones: -attn-bias-c2-from100-l0.1 */
function attnBiasTag(b: AttnBiasConfig | null): string {
  if (!b) return "";
  return `-attn-bias-c${b.c}${b.from > 0 ? `-from${b.from}` : ""}${b.until != null ? `-until${b.until}` : ""}${b.layers ? `-l${b.layers.join(".")}` : ""}`;
}

function writeReport(run: RunHandle | null, source: Source, outDir: string, results: AnalyzeResult[]): void {
  const root = run ? run.dir : outDir;
  const lines: string[] = [];
  const title = run ? basename(run.dir) : basename(source.kind === "checkpoint" ? source.file : outDir);
  lines.push(`# abrupt report: ${title}`, "");
  if (run) {
    const c = run.cfg;
    lines.push(`Run: ${c.data.m}×${c.data.n} rank ${c.data.rank}, p_mask ${c.data.p_mask}; BERT L${c.model.L} H${c.model.H} d${c.model.d} ff${c.model.ff}; batch ${c.train.batch}, lr ${c.train.lr}; ${run.metrics.length} steps logged; checkpoints ${run.steps.join(", ")}.`, "");
  }
  for (const r of results) {
    lines.push(`## ${r.experiment}${r.step >= 0 ? ` (checkpoint step ${r.step})` : ""}`, "");
    for (const f of r.findings) lines.push(`- ${f}`);
    lines.push("");
    for (const file of r.files) {
      const rel = relative(root, file);
      if (file.endsWith(".png")) lines.push(`![${r.experiment}](${rel})`, "");
      else if (file.endsWith(".json")) lines.push(`Numbers: [${rel}](${rel})`, "");
    }
  }
  writeFileAtomic(join(root, "report.md"), lines.join("\n") + "\n");
}
