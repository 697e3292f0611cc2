// The local pool: N child trainers at a time over a sweep's runs, one
// progress display for the whole sweep, Ctrl-C stops every run cleanly at a
// checkpoint. Running the same sweep again continues it.

import type { RunConfig } from "../train/config.js";
import { join } from "node:path";
import { SingleBar } from "cli-progress";
import { readMetrics } from "../train/metrics.js";
import { detectEvents } from "../train/events.js";
import { familyOf } from "../family/index.js";
import { lastStepOf } from "../train/config.js";
import { type Execution, currentStep, executeRun, runDirOf, runState } from "./runs.js";
import type { PlannedRun, SweepPlan } from "./spec.js";

export interface SweepProgress {
  done: number;
  running: number;
  queued: number;
  failed: number;
  drops: number;
  /** seconds, or null before anything can be estimated */
  eta: number | null;
}

export interface LocalResult {
  interrupted: boolean;
  failed: Array<{ run: string; message: string }>;
  ran: number;
  skipped: number;
}

const clock = (s: number) => {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.round(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(sec).padStart(2, "0")}s`;
};

export function formatProgress(p: SweepProgress): string {
  return `${p.done} done · ${p.running} running · ${p.queued} queued${p.failed ? ` · ${p.failed} failed` : ""} · ${p.drops} dropped · ETA ${p.eta === null ? "-" : clock(p.eta)}`;
}

/** One display for the whole sweep: a bar on a terminal, a line every 10 s otherwise. */
export class SweepDisplay {
  private bar: SingleBar | null = null;
  private last = 0;
  constructor(private total: number, private quiet = false) {
    if (!quiet && process.stderr.isTTY) {
      this.bar = new SingleBar({ stream: process.stderr, format: "sweep {bar} {value}/{total} runs | {text}", barsize: 24, hideCursor: true });
      this.bar.start(total, 0, { text: "" });
    }
  }
  update(p: SweepProgress, force = false): void {
    if (this.quiet) return;
    if (this.bar) { this.bar.update(p.done, { text: formatProgress(p) }); return; }
    const now = Date.now();
    if (!force && now - this.last < 10_000) return;
    this.last = now;
    process.stderr.write(`sweep: ${p.done}/${this.total} · ${formatProgress(p)}\n`);
  }
  stop(): void {
    this.bar?.stop();
  }
}

/** Whether a finished run dropped (its log, by the one definition of the events). */
export function runDropped(runDir: string, cfg: RunConfig): boolean {
  return detectEvents(readMetrics(join(runDir, "metrics.jsonl")).lines, cfg.data.rank, familyOf(cfg).events).drop !== null;
}

/**
 * Estimates the time left from the steps done since the start of this
 * command: a queued run is expected to take as many steps as the finished
 * runs of its cell took on average (its max steps while none has finished).
 */
class Eta {
  private t0 = Date.now();
  private startSteps = new Map<string, number>();
  private doneSteps = 0;
  private cellSteps = new Map<string, number[]>();
  start(run: string, step: number) { this.startSteps.set(run, step); }
  finish(run: PlannedRun, step: number) {
    this.doneSteps += step - (this.startSteps.get(run.name) ?? 0);
    this.startSteps.delete(run.name);
    const a = this.cellSteps.get(run.cell) ?? [];
    a.push(step);
    this.cellSteps.set(run.cell, a);
  }
  expected(run: PlannedRun): number {
    const a = this.cellSteps.get(run.cell);
    return a && a.length ? a.reduce((x, y) => x + y, 0) / a.length : lastStepOf(run.config.train);
  }
  eta(running: Array<{ run: PlannedRun; step: number }>, queued: PlannedRun[]): number | null {
    let steps = this.doneSteps;
    for (const r of running) steps += r.step - (this.startSteps.get(r.run.name) ?? 0);
    const el = (Date.now() - this.t0) / 1000;
    if (steps <= 0 || el < 5) return null;
    let left = 0;
    for (const r of running) left += Math.max(0, this.expected(r.run) - r.step);
    for (const q of queued) left += this.expected(q);
    return (left * el) / steps;
  }
}

export async function runLocal(plan: SweepPlan, dir: string, opts: { workers: number; quiet?: boolean }): Promise<LocalResult> {
  const todo: PlannedRun[] = [];
  let done = 0, drops = 0, skipped = 0;
  for (const r of plan.runs) {
    const rd = runDirOf(dir, r.name);
    if (runState(rd, r.config) === "finished") {
      done++;
      skipped++;
      if (runDropped(rd, r.config)) drops++;
    } else todo.push(r);
  }
  const display = new SweepDisplay(plan.runs.length, opts.quiet);
  const running = new Map<string, { run: PlannedRun; exec: Execution }>();
  const failed: LocalResult["failed"] = [];
  const eta = new Eta();
  let interrupted = false;
  let ran = 0;
  const progress = (force = false) => {
    const r = [...running.values()].map((x) => ({ run: x.run, step: currentStep(runDirOf(dir, x.run.name)) }));
    display.update({ done, running: running.size, queued: todo.length, failed: failed.length, drops, eta: eta.eta(r, todo) }, force);
  };
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    // stop launching; every running trainer checkpoints and exits
    for (const x of running.values()) x.exec.child.kill("SIGINT");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const timer = setInterval(() => progress(), 1000);
  try {
    await new Promise<void>((finish) => {
      const launch = () => {
        while (!interrupted && running.size < opts.workers && todo.length > 0) {
          const run = todo.shift()!;
          const rd = runDirOf(dir, run.name);
          let exec: Execution;
          try {
            exec = executeRun(dir, run);
          } catch (e) {
            failed.push({ run: run.name, message: (e as Error).message });
            continue;
          }
          ran++;
          eta.start(run.name, currentStep(rd));
          running.set(run.name, { run, exec });
          void exec.done.then(({ code, signal, stderr }) => {
            running.delete(run.name);
            const step = currentStep(rd);
            eta.finish(run, step);
            if (code === 0 && runState(rd, run.config) === "finished") {
              done++;
              if (runDropped(rd, run.config)) drops++;
            } else if (!interrupted) {
              const line = stderr.trim().split("\n").filter((l) => l.startsWith("abrupt:")).pop() ?? `exit ${code ?? signal}`;
              failed.push({ run: run.name, message: line });
            }
            progress(true);
            launch();
          });
        }
        if (running.size === 0) finish();
      };
      launch();
    });
  } finally {
    clearInterval(timer);
    progress(true);
    display.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return { interrupted, failed, ran, skipped };
}
