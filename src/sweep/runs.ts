// A sweep's folder and the execution of one of its runs.
//
// DIR/sweep-spec.json   the sweep file as parsed (an output folder holds one sweep)
// DIR/plan/NAME.json    each run's resolved config (what `abrupt train --config` gets)
// DIR/runs/NAME/        an ordinary run folder, as made by `abrupt train`
// DIR/sweep.json        the results (src/sweep/results.ts)
//
// A run is executed as a child `abrupt train` process: fresh, or `--resume`
// from its newest checkpoint. A run that finished is skipped; one killed
// before its first checkpoint starts again from step 0, which gives the same
// numbers.

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { AbruptError } from "../errors.js";
import { lockOwner } from "../store/lock.js";
import { checkpointDir } from "../store/run.js";
import { writeJsonAtomic } from "../store/files.js";
import { lastStepOf } from "../train/config.js";
import { type PlannedRun, type SweepPlan, canonical } from "./spec.js";

const BIN = join(resolve(fileURLToPath(new URL("../../..", import.meta.url))), "bin", "abrupt.js");

export const runDirOf = (dir: string, name: string) => join(dir, "runs", name);

/** Creates DIR for a plan, or checks that DIR holds the same sweep (unless `force`). */
export function prepareSweepDir(dir: string, plan: SweepPlan, force: boolean): void {
  const specFile = join(dir, "sweep-spec.json");
  if (existsSync(specFile) && !force) {
    let old: { id?: string } = {};
    try {
      old = JSON.parse(readFileSync(specFile, "utf8")) as { id?: string };
    } catch {
      throw new AbruptError(`${specFile} is not valid JSON; give --force to replace it`);
    }
    if (old.id !== plan.id) throw new AbruptError(`${dir} holds a different sweep (${specFile}); give another --out, or --force to continue it with this file`);
  }
  try {
    mkdirSync(join(dir, "runs"), { recursive: true });
    mkdirSync(join(dir, "plan"), { recursive: true });
  } catch (e) {
    throw new AbruptError(`cannot create ${dir}: ${(e as Error).message}`);
  }
  writeJsonAtomic(specFile, { id: plan.id, spec: plan.spec, axes: plan.axes, cells: plan.cells.map((c) => ({ key: c.key, overrides: c.overrides, runs: c.runs.map((r) => r.name) })) });
  for (const r of plan.runs) {
    const f = join(dir, "plan", `${r.name}.json`);
    const text = canonical(r.config);
    if (!existsSync(f) || canonical(JSON.parse(readFileSync(f, "utf8"))) !== text) writeJsonAtomic(f, r.config);
  }
}

export type RunState = "finished" | "running" | "resumable" | "fresh";

interface Status { status?: string; step?: number; reason?: string }

export function readStatus(runDir: string): Status | null {
  try {
    return JSON.parse(readFileSync(join(runDir, "status.json"), "utf8")) as Status;
  } catch {
    return null;
  }
}

/**
 * The state of a run folder. With its planned config, a run that stopped at
 * its max_steps is resumable again when the plan now allows more steps (a
 * sweep continued with a larger stop.max_steps).
 */
export function runState(runDir: string, planned?: PlannedRun["config"]): RunState {
  if (lockOwner(runDir)) return "running";
  const st = readStatus(runDir);
  if (st?.status === "finished" && existsSync(join(runDir, "summary.json"))) {
    const more = planned && st.reason === "max_steps" && typeof st.step === "number" && lastStepOf(planned.train) > st.step;
    if (!more) return "finished";
  }
  const ck = checkpointDir(runDir);
  if (existsSync(ck) && readdirSync(ck).some((f) => f.endsWith(".adam.safetensors"))) return "resumable";
  return "fresh";
}

export interface Execution {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Starts (or resumes) one run as a child `abrupt train`; `fresh` runs start from a clean folder. */
export function executeRun(dir: string, run: PlannedRun, opts: { stopWithParent?: boolean } = {}): Execution {
  const runDir = runDirOf(dir, run.name);
  const state = runState(runDir, run.config);
  if (state === "running") throw new AbruptError(`run ${run.name} is already running (${runDir})`);
  const args = [BIN, "train", "--quiet", "--out", runDir];
  if (state === "resumable" || state === "finished") {
    // the plan's stop rules (a continued sweep may have raised max_steps)
    const t = run.config.train;
    args.push("--resume", "--steps", String(t.steps));
    if (t.max_steps !== null) args.push("--max-steps", String(t.max_steps));
    if (t.stop_after_drop !== null) args.push("--stop-after-drop", String(t.stop_after_drop));
  } else {
    // killed before its first checkpoint: start again from step 0
    for (const f of ["metrics.jsonl", "status.json", "summary.json", "config.json"]) rmSync(join(runDir, f), { force: true });
    args.push("--config", join(dir, "plan", `${run.name}.json`));
  }
  const child = spawn(process.execPath, args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...(opts.stopWithParent !== false ? { ABRUPT_STOP_WITH_PARENT: "1" } : {}) },
  });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((ok) => {
    child.on("exit", (code, signal) => ok({ code, signal, stderr }));
    child.on("error", (e) => ok({ code: -1, signal: null, stderr: e.message }));
  });
  return { child, done };
}

/** The last step written to a run's metrics.jsonl (reads only the file's tail). */
export function currentStep(runDir: string): number {
  const f = join(runDir, "metrics.jsonl");
  let fd: number;
  try {
    fd = openSync(f, "r");
  } catch {
    return 0;
  }
  try {
    const size = fstatSync(fd).size;
    const n = Math.min(size, 4096);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, size - n);
    const lines = buf.toString("utf8").split("\n").reverse();
    for (const l of lines) {
      const m = /"step":(\d+)/.exec(l);
      if (m) return Number(m[1]);
    }
    return 0;
  } finally {
    closeSync(fd);
  }
}
