// `abrupt analyze <experiment|all> RUN`: runs the experiments of SPEC §4 on
// a run's checkpoints (or on one safetensors file with --checkpoint) and
// writes <run>/analysis/<experiment>[-step-N].json with figures beside it;
// `all` also writes <run>/report.md.

import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { type AnalysisContext, type AnalysisOutput, type RunHandle, type Source, dataOfRun, makeContext, openRun, writeOutput } from "../analysis/context.js";
import { phasesOutput, pickSteps } from "../analysis/phases.js";
import { ABLATE_DEFAULTS, ablate } from "../analysis/ablate.js";
import { ATTENTION_DEFAULTS, attention } from "../analysis/attention.js";
import { COPY_DEFAULTS, copy } from "../analysis/copy.js";
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
import { getKernels } from "../kernels/index.js";
import type { BackendName } from "../kernels/types.js";

export interface AnalyzeFlags {
  checkpoint?: string;
  heads?: number;
  step?: string;
  seed: number;
  backend: BackendName;
  out?: string;
  m?: number; n?: number; rank?: number; pMask?: number; factor?: string;
  /** experiment options as key=value pairs (values: numbers, lists a,b,c, or JSON) */
  opt: string[];
}

/** An experiment: runs on one checkpoint (ctx.step), or on the run as a whole. */
export interface ExperimentDef {
  name: string;
  describe: string;
  /** default checkpoint selection when --step is not given */
  defaultStep: "pre" | "post" | "final" | "all" | "none";
  run(ctx: AnalysisContext, opts: Record<string, unknown>, run: RunHandle | null): AnalysisOutput | Promise<AnalysisOutput>;
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
    run: (ctx, o) => copy(ctx, withDefaults("copy", COPY_DEFAULTS, o)),
  },
  {
    name: "nnm",
    describe: "nuclear-norm minimisation baseline vs BERT over p_mask 0.10…0.60",
    defaultStep: "post",
    run: (ctx, o) => nnm(ctx, withDefaults("nnm", NNM_DEFAULTS, o)),
  },
  {
    name: "attention",
    describe: "mean attention patterns, row/column scores, head labels",
    defaultStep: "post",
    run: (ctx, o) => attention(ctx, withDefaults("attention", ATTENTION_DEFAULTS, o)),
  },
  {
    name: "probe",
    describe: "linear probes per layer: cell value, masked row, top singular vector",
    defaultStep: "post",
    run: (ctx, o) => probe(ctx, withDefaults("probe", PROBE_DEFAULTS, o)),
  },
  {
    name: "embeddings",
    describe: "token-embedding norms and PCA, position t-SNE, permuted positions",
    defaultStep: "post",
    run: (ctx, o, run) => {
      const opts = withDefaults("embeddings", EMBEDDINGS_DEFAULTS, o);
      if (run && opts.steps.length === 0) opts.steps = run.steps.filter((s) => s <= ctx.step);
      return embeddings(ctx, opts);
    },
  },
  {
    name: "patch",
    describe: "activation patching: run on -X with attention outputs from X",
    defaultStep: "post",
    run: (ctx, o) => patch(ctx, withDefaults("patch", PATCH_DEFAULTS, o)),
  },
  {
    name: "ablate",
    describe: "per-head importance: zero or mean-pattern ablation",
    defaultStep: "post",
    run: (ctx, o) => ablate(ctx, withDefaults("ablate", ABLATE_DEFAULTS, o)),
  },
  {
    name: "swap",
    describe: "swap Q/K/V, attention or non-attention weights between pre and post checkpoints",
    defaultStep: "none",
    run: (ctx, o, run) => {
      const opts = withDefaults("swap", SWAP_DEFAULTS, o);
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
    run: (ctx, o) => ood(ctx, withDefaults("ood", OOD_DEFAULTS, o)),
  },
  {
    name: "progress",
    describe: "attention progress, hidden-state collapse, repetition over training",
    defaultStep: "none",
    run: (ctx, o, run) => {
      const opts = withDefaults("progress", PROGRESS_DEFAULTS, o);
      if (run && opts.steps.length === 0) opts.steps = run.steps;
      if (run && opts.metrics === undefined) opts.metrics = run.metrics.map((l) => ({ step: l.step, loss: l.loss, loss_mask: l.loss_mask }));
      return progress(ctx, opts);
    },
  },
];

/** Experiment options: defaults overridden by --opt key=value; unknown keys are errors. */
function withDefaults<T extends object>(experiment: string, defaults: T, given: Record<string, unknown>): T {
  const known = Object.keys(defaults);
  for (const k of Object.keys(given)) {
    if (!known.includes(k)) throw new AbruptError(`${experiment}: unknown option "${k}" (options: ${known.join(", ") || "none"})`);
  }
  return { ...defaults, ...given } as T;
}

/** Parses --opt key=value: numbers, comma lists of numbers/strings, JSON, or strings. */
export function parseOpts(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const i = p.indexOf("=");
    if (i <= 0) throw new AbruptError(`--opt must be key=value (got "${p}")`);
    const k = p.slice(0, i), v = p.slice(i + 1);
    let val: unknown = v;
    if (/^[\[{]/.test(v)) {
      try { val = JSON.parse(v); } catch { throw new AbruptError(`--opt ${k}: not valid JSON: ${v}`); }
    } else if (v.includes(",")) {
      val = v.split(",").map((s) => (s.trim() !== "" && Number.isFinite(Number(s)) ? Number(s) : s.trim()));
    } else if (v.trim() !== "" && Number.isFinite(Number(v))) val = Number(v);
    else if (v === "true" || v === "false") val = v === "true";
    out[k] = val;
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
  const kernels = getKernels(f.backend);
  const outDir = resolve(f.out ?? (run ? join(run.dir, "analysis") : join(resolve(f.checkpoint!, ".."), "analysis")));
  const opts = parseOpts(f.opt);
  const results: AnalyzeResult[] = [];
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
    for (const step of steps) {
      const ctx = makeContext(source, data, kernels, f.seed, outDir, step);
      const out = await def.run(ctx, opts, run);
      const suffix = steps.length > 1 || experiment === "all" ? (step >= 0 && def.defaultStep !== "none" ? `-step-${step}` : "") : "";
      const files = await writeOutput(ctx, def.name, out, suffix);
      results.push({ experiment: def.name, step, files, findings: out.findings });
    }
  }
  if (experiment === "all") writeReport(run, source, outDir, results);
  return results;
}

function writeReport(run: RunHandle | null, source: Source, outDir: string, results: AnalyzeResult[]): void {
  const root = run ? run.dir : outDir;
  mkdirSync(root, { recursive: true });
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
  const file = join(root, "report.md");
  writeFileSync(file + `.tmp-${process.pid}`, lines.join("\n") + "\n");
  renameSync(file + `.tmp-${process.pid}`, file);
}
