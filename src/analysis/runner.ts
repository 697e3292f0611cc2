// `abrupt analyze <experiment|all> RUN`: runs experiments (index.ts) on a
// run's checkpoints, or on one safetensors file, and writes
// <out>/<experiment>[-step-N].json with figures beside it (output.ts); `all`
// also writes the run's report.md.
//
// The plan comes first: (experiment, checkpoint) jobs, from --step or each
// experiment's default steps (with `all`: its pre and post checkpoints where
// they exist), so progress can count jobs; then each job runs in its own
// context. With `all`, an experiment that cannot run here (e.g. swap without
// a drop) is reported, not fatal.
//
// A GPT run or checkpoint runs the experiments that list "gpt" in their
// families; another is refused in one line (`analyze all`: listed as skipped,
// with its reason, in report.md and on stderr).

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { DataConfig } from "../data/matrix.js";
import { validateDataConfig } from "../data/matrix.js";
import { AbruptError } from "../errors.js";
import { loadKernels } from "../kernels/index.js";
import type { BackendName } from "../kernels/types.js";
import { ensureDir } from "../store/files.js";
import { type RunHandle, openRun } from "../store/run.js";
import { type AttnBiasConfig, parseAttnBias } from "../train/config.js";
import { type AnalysisOutput, type FamilyName, type Source, dataOfRun, makeContext, sourceFamily } from "./context.js";
import { type Experiment, checkAnalysisMemory, optionNames, parseOpts, refusal, withDefaults } from "./experiment.js";
import { gptConfigOf } from "../family/gpt.js";
import { EXPERIMENTS, findExperiment } from "./index.js";
import { type AnalyzeResult, writeOutput, writeReportMd } from "./output.js";
import { pickSteps } from "./phases.js";

export type { AnalyzeResult } from "./output.js";

/** What to analyse and how: `abrupt analyze`'s flags. */
export interface AnalyzeOptions {
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
  /** the attention intervention for the model's forwards, C[@STEP[-UNTIL]][:LAYERS] as `train --attn-bias` */
  attnBias?: string;
  /** called when a job (an experiment on one checkpoint) starts and when a result is ready */
  onProgress?: (ev: AnalyzeEvent) => void;
}

/** Progress of `analyze`: jobs are (experiment, checkpoint) pairs; `done` of `total` have finished. */
export type AnalyzeEvent =
  | { kind: "start"; experiment: string; step: number; done: number; total: number }
  | { kind: "done"; result: AnalyzeResult; done: number; total: number; seconds: number | null };

/** The data config of the analysis: the run's (or 7×7 rank 2 for a lone checkpoint), changed by the flags. */
function dataFromFlags(base: DataConfig | null, f: AnalyzeOptions): DataConfig {
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

/** File-name tag of results under an intervention, so they never replace the plain ones: -attn-bias-c2-from100-l0.1 */
function attnBiasTag(b: AttnBiasConfig | null): string {
  if (!b) return "";
  return `-attn-bias-c${b.c}${b.from > 0 ? `-from${b.from}` : ""}${b.until != null ? `-until${b.until}` : ""}${b.layers ? `-l${b.layers.join(".")}` : ""}`;
}

interface Job { def: Experiment; steps: number[]; spec: string; skip?: string }

/** The jobs: each experiment with the checkpoints it runs on. */
function plan(defs: readonly Experiment[], run: RunHandle | null, all: boolean, step: string | undefined, family: FamilyName): Job[] {
  const jobs: Job[] = [];
  for (const def of defs) {
    const refused = refusal(def, family);
    if (refused) {
      jobs.push({ def, steps: [], spec: step ?? def.steps, skip: `not run: ${refused}` });
      continue;
    }
    let steps: number[];
    const spec = step ?? def.steps;
    if (def.steps === "none") steps = [run ? (run.steps.at(-1) ?? -1) : -1];
    else if (!run) steps = [-1];
    else if (all && step === undefined && def.steps !== "all") {
      // `all`: each per-checkpoint experiment before and after the drop, where they exist
      steps = [];
      for (const s of ["pre", "post"]) {
        try { steps.push(...pickSteps(run, s)); } catch { /* no such phase */ }
      }
      if (steps.length === 0) steps = pickSteps(run, "final");
      steps = [...new Set(steps)];
    } else steps = pickSteps(run, spec);
    if (all && def.name === "component" && !run?.cfg.train.init_from) {
      jobs.push({ def, steps: [], spec, skip: "not run: this run was not made with --init-from/--train-only" });
    } else jobs.push({ def, steps, spec });
  }
  return jobs;
}

/** Runs one experiment (or all) and writes results; returns what was written. */
export async function analyze(experiment: string, runDir: string | undefined, f: AnalyzeOptions): Promise<AnalyzeResult[]> {
  const all = experiment === "all";
  const defs = all ? EXPERIMENTS : [findExperiment(experiment)];
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
  const family = sourceFamily(source);
  if (!all) {
    const refused = refusal(defs[0]!, family);
    if (refused) throw new AbruptError(refused);
  }
  const data = dataFromFlags(run ? dataOfRun(run) : null, f);
  const attnBias = f.attnBias !== undefined ? parseAttnBias(f.attnBias) : null;
  if (attnBias && family === "gpt") throw new AbruptError("--attn-bias is for the BERT (its target keys are the masked cell's row and column); the source is a GPT");
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
  if (all) {
    for (const k of Object.keys(opts)) {
      if (!defs.some((d) => optionNames(d).includes(k))) throw new AbruptError(`unknown option "${k}" (no experiment takes it)`);
    }
  }
  const jobs = plan(defs, run, all, f.step, family);
  const total = jobs.reduce((n, p) => n + p.steps.length, 0);
  let done = 0;

  const results: AnalyzeResult[] = [];
  const report = (r: AnalyzeResult, seconds: number | null) => {
    results.push(r);
    f.onProgress?.({ kind: "done", result: r, done, total, seconds });
  };
  for (const { def, steps, spec, skip } of jobs) {
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
        const o = withDefaults(def, opts, all);
        resolved = o;
        const cfg = family === "gpt" ? (run ? gptConfigOf(run.cfg) : ctx.gpt!().cfg) : run ? run.cfg.model : ctx.model().cfg;
        checkAnalysisMemory(def, o, cfg, data, f.backend);
        out = await def.run(ctx, o, run);
      } catch (e) {
        // with `all`, one experiment that cannot run here (e.g. swap without a
        // drop) is reported, not fatal
        if (!all || !(e instanceof AbruptError)) throw e;
        done++;
        report({ experiment: def.name, step, files: [], findings: [`not run: ${e.message}`] }, (performance.now() - t0) / 1000);
        continue;
      }
      const suffix = (steps.length > 1 || all ? (step >= 0 && def.steps !== "none" ? `-step-${step}` : "") : "") + attnBiasTag(attnBias);
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
  if (all) writeReportMd(run, source, outDir, results);
  return results;
}
