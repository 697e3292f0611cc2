// The training loop of SPEC §3: a fresh batch every step, MSE over all cells,
// Adam (PyTorch semantics), metrics appended to metrics.jsonl, checkpoints
// (safetensors, paper names) with the Adam state and the data PRNG state so
// that --resume continues bit-identically.

import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Rng, type RngState } from "../data/rng.js";
import { AbruptError, DeviceError } from "../errors.js";
import { type FamilyModel, type ModelFamily, familyOf } from "../family/index.js";
import { loadKernels } from "../kernels/index.js";
import { checkMemory } from "../model/memory.js";
import { loadOptimizerState, saveOptimizerState } from "../store/checkpoint.js";
import { ensureDir, removeStaleTemps, writeJsonAtomic } from "../store/files.js";
import { lockRun } from "../store/lock.js";
import { adamPath, checkpointDir, checkpointPath, ckptName, listCheckpoints, resumeStep } from "../store/run.js";
import { type RunConfig, checkpointSteps, lastStepOf, lrAt } from "./config.js";
import { EventTracker } from "./events.js";
import { type MetricsLine, MetricsWriter, readMetrics } from "./metrics.js";
import { ProgressBar } from "./progress-bar.js";

/** Seeds derived from the run seed: model init, training data, eval set. */
export function seedsOf(seed: number) {
  return { init: seed, data: (seed ^ 0x5bd1e995) >>> 0, eval: (seed + 0x27d4eb2f) >>> 0 };
}

/** Fails with one line when the run's sizes need more memory than is free (before anything is allocated). */
export function checkTrainMemory(cfg: RunConfig): void {
  const m = cfg.model, d = cfg.data, t = cfg.train;
  const evalB = t.eval_every > 0 ? t.eval_batch : 0;
  const fam = familyOf(cfg);
  checkMemory(fam.trainingBytes(cfg),
    `batch ${t.batch}${evalB ? ` (eval batch ${evalB})` : ""} of ${d.m}×${d.n} matrices with ${fam.describe(cfg)} positions ${m.positions}`);
}

export interface TrainOptions {
  outDir: string;
  resume?: boolean;
  /** no progress bar / log lines */
  quiet?: boolean;
  /** stop after this step without finishing (tests of resume) */
  stopAfter?: number;
  /** called once the run folder is set up, before the first step */
  onStart?: () => void;
  /** called after every step */
  onStep?: (line: MetricsLine) => void;
}

export interface TrainResult {
  status: "finished" | "interrupted" | "stopped";
  /** why a finished run ended: its last step, max_steps, or stop_after_drop steps after the drop */
  reason: "steps" | "max_steps" | "after_drop" | null;
  step: number;
  last: MetricsLine | null;
}

/** Contiguous [start, end, decayed] ranges of trainable parameters. */
function trainableRanges(fam: ModelFamily, cfg: RunConfig, model: FamilyModel<unknown>): Array<[number, number, boolean]> {
  const ranges: Array<[number, number, boolean]> = [];
  for (const s of fam.specs(cfg)) {
    if (model.isFrozen(s.group)) continue;
    const last = ranges[ranges.length - 1];
    const d = fam.decays(s.name);
    if (last && last[1] === s.offset && last[2] === d) last[1] = s.offset + s.size;
    else ranges.push([s.offset, s.offset + s.size, d]);
  }
  return ranges;
}

/**
 * Sets every parameter from RUN_DIR@STEP except the groups named by
 * `trainOnly`, which keep their fresh initialisation (component dynamics).
 */
async function initFrom(fam: ModelFamily, cfg: RunConfig, model: FamilyModel<unknown>, spec: string, trainOnly: string[]): Promise<void> {
  const at = spec.lastIndexOf("@");
  const dir = spec.slice(0, at);
  const step = Number(spec.slice(at + 1));
  const file = checkpointPath(dir, step);
  if (!existsSync(file)) throw new AbruptError(`--init-from: ${file} does not exist`);
  let loaded: Float32Array;
  try {
    loaded = fam.load(file, cfg);
  } catch (e) {
    throw e instanceof AbruptError ? new AbruptError(`--init-from: ${e.message}`) : e;
  }
  const fresh = await model.paramsHost();
  const params = loaded.slice();
  for (const s of fam.specs(cfg)) {
    if (trainOnly.some((sel) => fam.groupMatches(s.group, sel))) params.set(fresh.subarray(s.offset, s.offset + s.size), s.offset);
  }
  model.setParams(params);
}

export async function train(cfg: RunConfig, opts: TrainOptions): Promise<TrainResult> {
  const { outDir } = opts;
  checkTrainMemory(cfg);
  ensureDir(outDir, "run folder");
  const lock = lockRun(outDir);
  removeStaleTemps(outDir, ["checkpoints", "analysis"]);
  try {
    return await trainLocked(cfg, opts, lock);
  } finally {
    lock.release();
  }
}

async function trainLocked(cfg: RunConfig, opts: TrainOptions, lock: { beat(): void }): Promise<TrainResult> {
  const { outDir } = opts;
  const t = cfg.train;
  const ckptDir = checkpointDir(outDir);
  const metricsFile = join(outDir, "metrics.jsonl");
  let startStep = 0;
  const kernels = await loadKernels(t.backend);
  if (t.threads > 0 && kernels.setThreads) kernels.setThreads(t.threads);
  const fam = familyOf(cfg);
  const model: FamilyModel<unknown> = fam.create(cfg, kernels);
  if (t.train_only.length > 0) {
    // freeze everything the selectors do not name
    for (const sel of t.train_only) model.setFrozen([sel]); // validates each selector
    const groups = model.groupNames();
    const keep = groups.filter((g) => t.train_only.some((sel) => fam.groupMatches(g, sel)));
    model.setFrozen([...new Set([...t.freeze, ...groups.filter((g) => !keep.includes(g))])]);
  } else {
    model.setFrozen(t.freeze);
  }
  const n = model.size;
  const adamM = kernels.alloc(n);
  const adamV = kernels.alloc(n);
  const seeds = seedsOf(t.seed);
  let rng = new Rng(seeds.data);

  if (opts.resume) {
    if (listCheckpoints(outDir).length === 0) throw new AbruptError(`cannot resume: ${ckptDir} has no checkpoint`);
    const step = resumeStep(outDir);
    if (step === null) throw new AbruptError(`cannot resume: no checkpoint in ${ckptDir} has its Adam state (*.adam.safetensors)`);
    const params = fam.load(checkpointPath(outDir, step), cfg);
    if (params.length !== n) throw new AbruptError(`cannot resume: checkpoint has ${params.length} parameters, the config needs ${n}`);
    kernels.upload(model.params, params);
    const os = loadOptimizerState(adamPath(outDir, step), n);
    kernels.upload(adamM, os.m);
    kernels.upload(adamV, os.v);
    if (os.step !== step) throw new AbruptError(`cannot resume: Adam state is for step ${os.step}, checkpoint for step ${step}`);
    const rs = JSON.parse(os.meta["rng"] ?? "null") as RngState | null;
    if (!rs || rs.length !== 4) throw new AbruptError(`cannot resume: Adam state file has no data PRNG state`);
    rng = new Rng(rs);
    startStep = step;
  } else {
    if (existsSync(metricsFile) || listCheckpoints(outDir).length > 0) {
      throw new AbruptError(`${outDir} already holds a run (use --resume to continue it, or another --out)`);
    }
    fam.init(model, cfg, seeds.init);
    if (t.init_from) await initFrom(fam, cfg, model, t.init_from, t.train_only);
  }
  ensureDir(ckptDir, "checkpoint folder");
  writeJsonAtomic(join(outDir, "config.json"), cfg);

  const trainer = fam.trainer(cfg, model, seeds.eval);
  const ranges = trainableRanges(fam, cfg, model);
  const ckSteps = checkpointSteps(t);
  const writer = new MetricsWriter(metricsFile);
  // the events so far (a resumed run replays its log up to the checkpoint)
  const events = new EventTracker(cfg.data.rank, fam.events);
  if (opts.resume) for (const l of readMetrics(metricsFile).lines) if (l.step <= startStep) events.pushLine(l);
  if (opts.resume) writer.write({ resume_from: startStep, time: new Date().toISOString() });
  const end = lastStepOf(t);
  // a sweep's runs stop (and keep their checkpoint) when the sweep process is gone
  const parent = process.env["ABRUPT_STOP_WITH_PARENT"] === "1" ? process.ppid : null;
  // "running" only once everything the loop needs is there (a failure before it leaves no stale status)
  writeJsonAtomic(join(outDir, "status.json"), { status: "running", step: startStep, pid: process.pid, updated: new Date().toISOString() });
  opts.onStart?.();

  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.on("SIGINT", onSigint);
  process.on("SIGTERM", onSigint);

  const saveAt = async (step: number) => {
    const meta = { step: String(step), seed: String(t.seed), run_config: JSON.stringify(cfg) };
    const [params, m, v] = [await kernels.download(model.params), await kernels.download(adamM), await kernels.download(adamV)];
    fam.save(checkpointPath(outDir, step), cfg, params, meta);
    saveOptimizerState(adamPath(outDir, step), m, v, step, { rng: JSON.stringify(rng.state()) });
    if (t.keep_optimizer === "last") {
      for (const s of listCheckpoints(outDir)) {
        const f = adamPath(outDir, s);
        if (s !== step && existsSync(f)) rmSync(f);
      }
    }
  };

  const progress = opts.quiet ? null : new ProgressBar(end, startStep);
  let last: MetricsLine | null = null;
  let step = startStep;
  let lastSaved = startStep;
  let status: TrainResult["status"] = "finished";
  let reason: TrainResult["reason"] = null;
  try {
    const dropAtStart = events.result().drop;
    if (t.stop_after_drop !== null && dropAtStart !== null && step >= dropAtStart + t.stop_after_drop) reason = "after_drop";
    while (step < end && reason === null) {
      const t0 = performance.now();
      step++;
      model.zeroGrad();
      const losses = trainer.step(rng, step, events.result().drop); // forward, loss and backward are queued
      const lr = lrAt(t, step);
      for (const [a, b, decayed] of ranges) {
        const v = (x: unknown) => kernels.view(x, a, b - a);
        const wd = decayed ? t.weight_decay : 0;
        if (t.optimizer === "sgd") kernels.sgd(v(model.params), v(model.grads), b - a, lr, wd);
        else kernels.adam(v(model.params), v(model.grads), v(adamM), v(adamV), b - a, lr, t.beta1, t.beta2, t.eps, step, wd);
      }
      const m = await losses;
      if (!Number.isFinite(m.loss)) {
        throw new AbruptError(`loss became ${m.loss} at step ${step}; stopped (last checkpoint: ${lastSaved > 0 ? ckptName(lastSaved) : "none"})`);
      }
      const line = { step, ...m, lr, ms: 0 } as MetricsLine;
      Object.assign(line, await trainer.extras(step));
      line.ms = Math.round((performance.now() - t0) * 100) / 100;
      writer.write(line);
      last = line;
      const happened = events.pushLine(line);
      if (ckSteps.has(step) || (t.ckpt_events && (happened.left || happened.drop))) {
        await saveAt(step);
        lastSaved = step;
      }
      lock.beat();
      progress?.update(line);
      opts.onStep?.(line);
      if (opts.stopAfter !== undefined && step >= opts.stopAfter) {
        status = "stopped";
        break;
      }
      const drop = events.result().drop;
      if (t.stop_after_drop !== null && drop !== null && step >= drop + t.stop_after_drop) {
        reason = "after_drop";
        break;
      }
      await new Promise((r) => setImmediate(r));
      if (parent !== null && process.ppid !== parent) interrupted = true;
      if (interrupted) {
        status = "interrupted";
        break;
      }
    }
    if (status === "finished" && reason === null) reason = step < t.steps ? "max_steps" : "steps";
    if (lastSaved !== step && step > startStep) {
      await saveAt(step);
      lastSaved = step;
    }
    writeJsonAtomic(join(outDir, "status.json"), { status, ...(reason ? { reason } : {}), step, updated: new Date().toISOString() });
  } catch (e) {
    // a lost device keeps the checkpoints on disk: name the newest
    const err = e instanceof DeviceError ? new AbruptError(`${e.message}; stopped at step ${step} (last checkpoint: ${lastSaved > 0 ? ckptName(lastSaved) : "none"})`) : e;
    try {
      writeJsonAtomic(join(outDir, "status.json"), { status: "failed", step, error: (err as Error).message, updated: new Date().toISOString() });
    } catch {
      /* e.g. the disk is full: the error itself says what happened */
    }
    throw err;
  } finally {
    progress?.stop();
    writer.close();
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigint);
  }
  return { status, reason, step, last };
}
