// A run folder, as `abrupt train` writes it and everything else reads it:
//
//   RUN/config.json                                the resolved run config (src/train/config.ts)
//   RUN/metrics.jsonl                              one line per step (src/train/metrics.ts)
//   RUN/status.json, RUN/summary.json              the run's state and its events
//   RUN/checkpoints/step-NNNNNNN.safetensors       parameters (src/store/checkpoint.ts)
//   RUN/checkpoints/step-NNNNNNN.adam.safetensors  the Adam state and data PRNG of that step
//   RUN/analysis/                                  results of `abrupt analyze` and the dashboard
//
// Checkpoint paths are built here and nowhere else; the config is read here
// for the trainer's tools, the analyses and the dashboard alike.

import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { AbruptError } from "../errors.js";
import { PartialRunConfigSchema, type RunConfig, resolveConfig } from "../train/config.js";
import { type MetricsLine, readMetrics } from "../train/metrics.js";

/** The checkpoint folder of a run. */
export const checkpointDir = (runDir: string): string => join(runDir, "checkpoints");

/** The base name of the checkpoint of `step`: step-0000042. */
export function ckptName(step: number): string {
  return `step-${String(step).padStart(7, "0")}`;
}

/** The parameters of `step`: RUN/checkpoints/step-NNNNNNN.safetensors. */
export const checkpointPath = (runDir: string, step: number): string => join(checkpointDir(runDir), `${ckptName(step)}.safetensors`);

/** The Adam state of `step`: RUN/checkpoints/step-NNNNNNN.adam.safetensors. */
export const adamPath = (runDir: string, step: number): string => join(checkpointDir(runDir), `${ckptName(step)}.adam.safetensors`);

/** The checkpoint steps on disk, ascending. */
export function listCheckpoints(runDir: string): number[] {
  const dir = checkpointDir(runDir);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => /^step-(\d+)\.safetensors$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** The newest checkpoint that has its Adam state (what --resume continues from), or null. */
export function resumeStep(runDir: string): number | null {
  return [...listCheckpoints(runDir)].reverse().find((s) => existsSync(adamPath(runDir, s))) ?? null;
}

/**
 * The resolved config of a run folder (fields added since the run was
 * written are filled from its preset's defaults), or the problem in words:
 * "no config.json", "config.json is not valid JSON (…)", "config.json: …".
 */
export function readRunConfig(dir: string): { cfg: RunConfig; problem: null } | { cfg: null; problem: string } {
  const file = join(dir, "config.json");
  if (!existsSync(file)) return { cfg: null, problem: "no config.json" };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    return { cfg: null, problem: `config.json is not valid JSON (${(e as Error).message})` };
  }
  const parsed = PartialRunConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    return { cfg: null, problem: `config.json: ${i.path.join(".")}: ${i.message}` };
  }
  try {
    return { cfg: resolveConfig(parsed.data.preset, parsed.data, {}), problem: null };
  } catch (e) {
    return { cfg: null, problem: `config.json: ${(e as Error).message}` };
  }
}

/** A run folder opened for analysis: its config, metrics and checkpoints. */
export interface RunHandle {
  /** absolute path */
  dir: string;
  cfg: RunConfig;
  metrics: MetricsLine[];
  /** checkpoint steps on disk, ascending */
  steps: number[];
}

/** Opens a run folder; fails with one line if it is not a readable run. */
export function openRun(dir: string): RunHandle {
  const abs = resolve(dir);
  if (!existsSync(abs)) throw new AbruptError(`run directory ${dir} does not exist`);
  const { cfg, problem } = readRunConfig(abs);
  if (!cfg) throw new AbruptError(problem === "no config.json" ? `${dir} is not a run directory (no config.json)` : `${dir}: ${problem}`);
  return { dir: abs, cfg, metrics: readMetrics(join(abs, "metrics.jsonl")).lines, steps: listCheckpoints(abs) };
}

/** The checkpoint file of `step` of an opened run; fails with one line listing the steps there are. */
export function runCheckpoint(run: RunHandle, step: number): string {
  if (!run.steps.includes(step)) {
    const list = run.steps.length > 12 ? [...run.steps.slice(0, 6), "…", ...run.steps.slice(-5)] : run.steps;
    throw new AbruptError(`checkpoint step ${step} does not exist in ${run.dir} (available: ${list.join(", ") || "none"})`);
  }
  return checkpointPath(run.dir, step);
}
