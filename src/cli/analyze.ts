// `abrupt analyze <experiment|all|sweep> …`: the flags. The experiments are
// src/analysis (index.ts lists them, runner.ts runs them); `analyze sweep`
// is src/sweep/results.ts.

import { resolve } from "node:path";
import type { Command } from "commander";
import { AbruptError } from "../errors.js";
import { EXPERIMENTS } from "../analysis/index.js";
import { type AnalyzeOptions, analyze } from "../analysis/runner.js";
import type { BackendName } from "../kernels/types.js";
import { analyzeSweep, sweepFindings } from "../sweep/results.js";
import { BACKEND_WORDS, backendOpt, collect, int, num, seedOpt } from "./flags.js";

export function analyzeCommand(program: Command): void {
  program
    .command("analyze")
    .description(`run an experiment of the paper on a run's checkpoints: ${EXPERIMENTS.map((e) => e.name).join(", ")}, or all (on GPT runs: ${EXPERIMENTS.filter((e) => e.families?.includes("gpt")).map((e) => e.name).join(", ")})`)
    .argument("<experiment>", "experiment name, or all")
    .argument("[run]", "run directory (omit with --checkpoint)")
    .option("--step <which>", "checkpoint: pre, post, final, all, or a step number (default depends on the experiment)")
    .option("--checkpoint <file>", "analyse one safetensors file instead of a run (e.g. a converted PyTorch checkpoint)")
    .option("--heads <n>", "heads, for a checkpoint without config (default 8)", int("--heads"))
    .option("--m <n>", "matrix rows (default: the run's, or 7)", int("--m"))
    .option("--n <n>", "matrix columns", int("--n"))
    .option("--rank <r>", "rank", int("--rank"))
    .option("--p-mask <p>", "probability that a cell is hidden", num("--p-mask"))
    .option("--factor <dist>", "uniform, gaussian or laplace")
    .option("--seed <n>", "seed of the analysis data", seedOpt("--seed"), 0)
    .option("--clamp", "clamp values outside [-10, 10] instead of failing")
    .option("--backend <name>", BACKEND_WORDS, backendOpt, "cpu" as BackendName)
    .option("--device <name>", "same as --backend", backendOpt)
    .option("--out <dir>", "output folder (default RUN/analysis)")
    .option("--opt <key=value>", "experiment option (repeatable), e.g. --opt values=0.44,-0.24", collect, [] as string[])
    .option("--attn-bias <C[@STEP[-UNTIL]][:LAYERS]>", "run the models with the attention intervention (as train --attn-bias; at the checkpoints where training had it on)")
    .option("--x <key>", "sweep: the phase diagram's x axis (a grid key)")
    .option("--y <key>", "sweep: the phase diagram's y axis (a grid key)")
    .option("--metric <m>", "sweep: the phase diagram's colour, p_drop or median_plateau_end (default both)")
    .option("--with <dir[:cells]>", "sweep: add another sweep's cells (all, or the comma-separated CELLS) to the figures, e.g. a baseline; DIR may be a saved sweep.json or a folder holding one (repeatable)", collect, [] as string[])
    .option("--aligned <field>", "sweep: draw a metrics field (e.g. attn_progress) against steps since each run's drop, per cell (repeatable)", collect, [] as string[])
    .action(async (experiment: string, runDir: string | undefined, f: AnalyzeOptions & { device?: BackendName; x?: string; y?: string; metric?: string; with: string[]; aligned: string[] }) => {
      if (experiment === "sweep") {
        if (!runDir) throw new AbruptError("analyze sweep needs the sweep folder: abrupt analyze sweep DIR");
        if (f.metric !== undefined && f.metric !== "p_drop" && f.metric !== "median_plateau_end") throw new AbruptError(`--metric must be p_drop or median_plateau_end (got "${f.metric}")`);
        const { results, files, compared } = await analyzeSweep(resolve(runDir), { out: f.out, x: f.x, y: f.y, metric: f.metric as "p_drop" | undefined, with: f.with, aligned: f.aligned });
        for (const l of sweepFindings(compared ?? results)) console.error(`  - ${l}`);
        console.error(`  → ${files.join(", ")}`);
        return;
      }
      const t0 = performance.now();
      const clock = (s: number) => `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, "0")}`;
      await analyze(experiment, runDir, {
        ...f, backend: f.device ?? f.backend,
        // results as they come, with the job count, elapsed time and an ETA
        onProgress: (ev) => {
          const at = (step: number) => (step >= 0 ? ` @ step ${step}` : "");
          if (ev.kind === "start") {
            if (ev.total > 1) console.error(`[${ev.done + 1}/${ev.total}] ${ev.experiment}${at(ev.step)} …`);
            return;
          }
          const r = ev.result;
          const el = (performance.now() - t0) / 1000;
          const eta = ev.done > 0 && ev.done < ev.total ? `, ETA ${clock((el / ev.done) * (ev.total - ev.done))}` : "";
          const time = ev.seconds !== null ? ` (${ev.seconds.toFixed(1)} s; elapsed ${clock(el)}${eta})` : "";
          console.error(`${r.experiment}${at(r.step)}:${time}`);
          for (const x of r.findings) console.error(`  - ${x}`);
          if (r.files.length) console.error(`  → ${r.files.join(", ")}`);
        },
      });
    });
}
