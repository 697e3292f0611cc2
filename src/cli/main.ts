#!/usr/bin/env node
// The `abrupt` command line: train, sweep, worker, predict, analyze, bench,
// serve, report. It only reads flags and prints; the work is done in
// src/train, src/sweep, src/analysis, src/server and the files beside this one.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join, resolve } from "node:path";
import { Command } from "commander";
import { AbruptError } from "../errors.js";
import { BACKENDS, loadKernels } from "../kernels/index.js";
import type { AttentionKind, BackendName } from "../kernels/types.js";
import { type PartialRunConfig, type RunConfig, decayStartOf, presets, parseAttnBias, readConfigFile, resolveConfig } from "../train/config.js";
import { finishRun } from "../train/summary.js";
import { checkTrainMemory, train } from "../train/train.js";
import { resumeConfig } from "../train/resume.js";
import { checkWritableFile, ensureDir, writeJsonAtomic } from "../store/files.js";
import { analyzeCommand } from "./analyze.js";
import { benchInProcess, checkBenchOptions, checkTorchOptions, measureMatmul, runBench } from "../train/bench.js";
import { BACKEND_WORDS, attnOpt, backendOpt, collect, int, intList, isBackend, list, num, seedOpt } from "./flags.js";
import { loadPredictor, predict, readPredictInput, sizeWarning } from "../predict/predict.js";
import { loadGptPredictor, predictGpt } from "../predict/predict-gpt.js";
import { Gpt } from "../model/gpt.js";
import { FAMILIES, familyOf } from "../family/index.js";
import { checkpointFamily } from "../store/gpt-checkpoint.js";
import { writeReport } from "../server/report.js";
import { isLoopback, startServer } from "../server/server.js";
import { runLocal } from "../sweep/local.js";
import { prepareSweepDir } from "../sweep/runs.js";
import { analyzeSweep, sweepFindings } from "../sweep/results.js";
import { planSweep, readSweepFile } from "../sweep/spec.js";
import { checkQueue, enqueueSweep, followSweep, runWorker } from "../sweep/queue.js";
import { cpus } from "node:os";

interface TrainFlags {
  model?: string; preset?: string; config?: string; out?: string; resume?: boolean; quiet?: boolean;
  steps?: number; seed?: number; batch?: number; lr?: number; warmup?: number; lrDecay?: string; lrFinal?: number; decayStart?: number;
  m?: number; n?: number; rank?: number; pMask?: number; prec?: number; factor?: string; clamp?: boolean;
  layers?: number; heads?: number; width?: number; ff?: number; positions?: number;
  backend?: BackendName; device?: BackendName; threads?: number; evalEvery?: number; evalBatch?: number;
  ckptEvery?: number; ckptLog?: number; ckptSteps?: number[]; freeze?: string[]; keepOptimizer?: string;
  initFrom?: string; trainOnly?: string[];
  maxSteps?: number; stopAfterDrop?: number; readoutInit?: string; beta1?: number; beta2?: number;
  attnBias?: string; progressEvery?: number; optimizer?: string; weightDecay?: number; initStd?: number;
}

function overridesOf(f: TrainFlags): PartialRunConfig {
  const pick = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  return {
    ...(f.model !== undefined ? { family: f.model } : {}),
    model: pick({ L: f.layers, H: f.heads, d: f.width, ff: f.ff, positions: f.positions }),
    data: pick({ m: f.m, n: f.n, rank: f.rank, p_mask: f.pMask, prec: f.prec, factor: f.factor as RunConfig["data"]["factor"] | undefined, clamp: f.clamp }),
    train: pick({
      steps: f.steps, seed: f.seed, batch: f.batch, lr: f.lr, warmup: f.warmup,
      lr_decay: f.lrDecay as RunConfig["train"]["lr_decay"] | undefined, lr_final: f.lrFinal, decay_start: f.decayStart, backend: f.backend, threads: f.threads,
      eval_every: f.evalEvery, eval_batch: f.evalBatch, ckpt_every: f.ckptEvery, ckpt_log: f.ckptLog, ckpt_steps: f.ckptSteps,
      max_steps: f.maxSteps, stop_after_drop: f.stopAfterDrop, readout_init: f.readoutInit as RunConfig["train"]["readout_init"] | undefined,
      beta1: f.beta1, beta2: f.beta2,
      attn_bias: f.attnBias !== undefined ? parseAttnBias(f.attnBias) : undefined, progress_every: f.progressEvery,
      optimizer: f.optimizer as RunConfig["train"]["optimizer"] | undefined, weight_decay: f.weightDecay, init_std: f.initStd,
      freeze: f.freeze, init_from: f.initFrom, train_only: f.trainOnly, keep_optimizer: f.keepOptimizer as RunConfig["train"]["keep_optimizer"] | undefined,
    }),
  };
}

function packageVersion(): string {
  const file = fileURLToPath(new URL("../../../package.json", import.meta.url));
  return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
}

function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
}

export function buildProgram(): Command {
  const program = new Command();
  program.name("abrupt").description("Abrupt learning in transformers: BERT on low-rank matrix completion").showHelpAfterError(false);
  program.version(packageVersion(), "--version", "print the version");
  program.configureOutput({ outputError: (str, write) => write(`abrupt: ${str.split("\n")[0]!.replace(/^error: /, "")}\n`) });
  program.exitOverride();

  program
    .command("train")
    .description("train a BERT (or, with --model gpt, a GPT) on matrix completion (default preset: cpu; gpt-cpu for the GPT)")
    .option("--model <name>", `model family: ${Object.keys(FAMILIES).join(", ")} (default bert)`)
    .option("--preset <name>", `preset: ${Object.keys(presets()).join(", ")}`)
    .option("--config <file>", "config file (JSON or YAML); flags override it")
    .option("--out <dir>", "run directory (default runs/<preset>-<time>)")
    .option("--resume", "continue the run in --out from its newest checkpoint")
    .option("--quiet", "no progress output")
    .option("--steps <n>", "training steps", int("--steps"))
    .option("--seed <n>", "seed (init, data, eval set)", int("--seed"))
    .option("--batch <n>", "batch size", int("--batch"))
    .option("--lr <x>", "Adam learning rate", num("--lr"))
    .option("--warmup <n>", "linear warm-up steps", int("--warmup"))
    .option("--lr-decay <kind>", "after warm-up: none (constant, the paper) or cosine")
    .option("--lr-final <x>", "with cosine: final lr as a fraction of --lr", num("--lr-final"))
    .option("--decay-start <n>", "with cosine: step where the decay starts (constant before)", int("--decay-start"))
    .option("--max-steps <n>", "stop at this step even if --steps (which sets the lr schedule) is larger; the run is then censored", int("--max-steps"))
    .option("--stop-after-drop <k>", "stop k steps after the drop (L_mask average below 0.2·r/9)", int("--stop-after-drop"))
    .option("--readout-init <kind>", "read-out init: normal (as the body) or torch (the reference code's U(±1/√d))")
    .option("--beta1 <x>", "Adam β1", num("--beta1"))
    .option("--beta2 <x>", "Adam β2", num("--beta2"))
    .option("--m <n>", "matrix rows", int("--m"))
    .option("--n <n>", "matrix columns", int("--n"))
    .option("--rank <r>", "rank", int("--rank"))
    .option("--p-mask <p>", "probability that a cell is hidden", num("--p-mask"))
    .option("--prec <k>", "decimals of the targets", int("--prec"))
    .option("--factor <dist>", "factor distribution: uniform, gaussian, laplace")
    .option("--clamp", "clamp values outside [-10, 10] instead of failing")
    .option("--layers <n>", "layers L", int("--layers"))
    .option("--heads <n>", "heads H", int("--heads"))
    .option("--width <n>", "width d", int("--width"))
    .option("--ff <n>", "feed-forward width", int("--ff"))
    .option("--positions <n>", "rows of the position table", int("--positions"))
    .option("--backend <name>", BACKEND_WORDS, backendOpt)
    .option("--device <name>", "same as --backend (webgpu: the GPU through Dawn)", backendOpt)
    .option("--threads <n>", "threads (0 = all cores)", int("--threads"))
    .option("--eval-every <n>", "eval every n steps (0 = never)", int("--eval-every"))
    .option("--eval-batch <n>", "eval set size", int("--eval-batch"))
    .option("--ckpt-every <n>", "checkpoint every n steps (0 = never)", int("--ckpt-every"))
    .option("--ckpt-log <n>", "number of log-spaced checkpoints", int("--ckpt-log"))
    .option("--ckpt-steps <list>", "extra checkpoint steps, comma-separated", intList("--ckpt-steps"))
    .option("--freeze <groups>", "parameter groups to freeze, comma-separated", list)
    .option("--keep-optimizer <which>", "Adam state of every checkpoint (all) or the newest (last)")
    .option("--init-from <run@step>", "start from a checkpoint of another run (component dynamics)")
    .option("--train-only <groups>", "with --init-from: re-initialise and train only these groups, freeze the rest", list)
    .option("--attn-bias <C[@STEP[-UNTIL]][:LAYERS]>", "attention intervention: from STEP on (until step UNTIL, or until the drop with -drop), multiply each query's attention on the observed cells of its row and column by C (in LAYERS, comma-separated; default all)")
    .option("--progress-every <k>", "log attention progress, collapse and repetition every k steps (default 100, 0 = never)", int("--progress-every"))
    .option("--optimizer <name>", "adam (default; AdamW with --weight-decay) or sgd (plain, no momentum)")
    .option("--weight-decay <x>", "weight decay of the linear weights (default 0)", num("--weight-decay"))
    .option("--init-std <x>", "std of the N(0, std) init of the body (default 0.02)", num("--init-std"))
    .action(async (f: TrainFlags) => {
      if (f.device !== undefined) {
        if (f.backend !== undefined && f.backend !== f.device) throw new AbruptError(`--device ${f.device} and --backend ${f.backend} disagree`);
        f.backend = f.device;
      }
      const fileCfg = f.config ? readConfigFile(f.config) : undefined;
      let cfg: RunConfig;
      let outDir: string;
      if (f.resume) {
        if (!f.out) throw new AbruptError("--resume needs --out <run directory>");
        outDir = resolve(f.out);
        cfg = resumeConfig(outDir, { preset: f.preset, file: fileCfg, fileName: f.config, flags: overridesOf(f) });
      } else {
        cfg = resolveConfig(f.preset, fileCfg, overridesOf(f));
        outDir = resolve(f.out ?? join("runs", `${cfg.preset}-${stamp()}`));
      }
      checkTrainMemory(cfg);
      ensureDir(outDir, "run folder");
      const d = cfg.data, t = cfg.train;
      const res = await train(cfg, {
        outDir, resume: !!f.resume, quiet: !!f.quiet,
        onStart: () => console.error(`abrupt train: preset ${cfg.preset} · ${d.m}×${d.n} rank ${d.rank} p_mask ${d.p_mask} · ${familyOf(cfg).describe(cfg)} · batch ${t.batch} lr ${t.lr} warmup ${t.warmup}${t.lr_decay === "cosine" ? ` · cosine from step ${decayStartOf(t)} to ${t.lr * t.lr_final}` : ""} · ${t.steps} steps${t.max_steps !== null && t.max_steps < t.steps ? ` (stop at ${t.max_steps})` : ""}${t.stop_after_drop !== null ? ` · stop ${t.stop_after_drop} steps after the drop` : ""}${attnBiasText(t.attn_bias)} · backend ${t.backend} → ${outDir}`),
      });
      const s = await finishRun(outDir, cfg);
      const fmt = (x: number | null) => (typeof x === "number" && Number.isFinite(x) ? x.toPrecision(3) : "n/a");
      const sig = familyOf(cfg).events.label;
      console.error(
        `${res.status}${res.reason === "after_drop" ? " (stopped after the drop)" : res.reason === "max_steps" ? " (max steps)" : ""} at step ${res.step} (${s.seconds} s).` +
          (s.plateau ? ` Plateau: steps ${s.plateau.start}–${s.plateau.end}, ${sig} ≈ ${fmt(s.plateau.meanLossMask)} (copy level r/9 = ${fmt(s.copyLevel)}).` : " No plateau at the copy level.") +
          (s.drop ? ` Drop: ${sig} < 0.2·r/9 at step ${s.drop.step} (${s.drop.seconds} s).` : " No drop yet.") +
          (s.final ? ` Final L ${fmt(s.final.loss)}, L_mask ${fmt(s.final.loss_mask)}, L_obs ${fmt(s.final.loss_obs)}.` : ""),
      );
      console.error(`run: ${outDir} (metrics.jsonl, checkpoints/, loss.svg, loss.png, summary.json)`);
      if (res.status === "interrupted") process.exitCode = 130;
    });

  program
    .command("sweep")
    .description("train every (cell, seed) of a sweep file into DIR/runs/, N at a time; run again to continue")
    .argument("<file>", "sweep file (YAML or JSON): base, grid, seeds, stop, threads")
    .requiredOption("--out <dir>", "sweep folder")
    .option("--workers <n>", "runs at a time (default: the number of cores)", int("--workers"))
    .option("--force", "continue in a folder that holds a different sweep file")
    .option("--queue <url>", "enqueue the runs on a Redis queue (redis://HOST:PORT) for `abrupt worker`s, and follow them")
    .option("--quiet", "no progress output")
    .action(async (file: string, f: { out: string; workers?: number; force?: boolean; quiet?: boolean; queue?: string }) => {
      const plan = planSweep(readSweepFile(file), file);
      const workers = f.workers ?? cpus().length;
      if (workers < 1) throw new AbruptError(`--workers must be at least 1 (got ${workers})`);
      if (f.queue && f.workers !== undefined) throw new AbruptError("--workers is for the local pool; with --queue, start `abrupt worker --concurrency N` on each machine");
      const dir = resolve(f.out);
      if (f.queue) await checkQueue(f.queue); // before anything is written
      prepareSweepDir(dir, plan, !!f.force);
      const say = (l: string) => { if (!f.quiet) console.error(l); };
      if (f.queue) {
        const added = await enqueueSweep(f.queue, plan, dir);
        say(`abrupt sweep: ${plan.runs.length} runs (${added} enqueued on ${f.queue}) → ${dir}; start workers with: abrupt worker --queue ${f.queue}`);
        const r = await followSweep(f.queue, plan, dir, f.quiet);
        const { results, files } = await analyzeSweep(dir);
        for (const l of sweepFindings(results)) say(`  ${l}`);
        say(`sweep: ${files[0]}`);
        if (r.interrupted) {
          say("stopped following; the workers go on, and the same command follows again");
          process.exitCode = 130;
        } else if (r.missing.length) {
          console.error(`abrupt: ${r.missing.length} runs did not finish and no job is left for them (${r.missing.slice(0, 3).join(", ")}${r.missing.length > 3 ? ", …" : ""}); see the workers' output, then run the same command again`);
          process.exitCode = 1;
        }
        return;
      }
      say(`abrupt sweep: ${plan.cells.length} cells × ${plan.runs.length / plan.cells.length} seeds = ${plan.runs.length} runs, ${workers} at a time → ${dir}`);
      const res = await runLocal(plan, dir, { workers, quiet: f.quiet });
      const { results, files } = await analyzeSweep(dir);
      if (!f.quiet) {
        for (const l of sweepFindings(results)) console.error(`  ${l}`);
        console.error(`sweep: ${files[0]} (figures in ${join(dir, "analysis")})`);
      }
      for (const x of res.failed) console.error(`abrupt: run ${x.run} failed: ${x.message}`);
      if (res.interrupted) {
        console.error("sweep interrupted: the runs keep their checkpoints; the same command continues it");
        process.exitCode = 130;
      } else if (res.failed.length) process.exitCode = 1;
    });

  program
    .command("worker")
    .description("run queued sweep runs (from `abrupt sweep --queue`) until Ctrl-C; the sweep folder must be at the same path here")
    .requiredOption("--queue <url>", "Redis queue, redis://HOST:PORT")
    .option("--concurrency <n>", "runs at a time (default: the number of cores)", int("--concurrency"))
    .action(async (f: { queue: string; concurrency?: number }) => {
      const n = f.concurrency ?? cpus().length;
      if (n < 1) throw new AbruptError(`--concurrency must be at least 1 (got ${n})`);
      await runWorker(f.queue, n);
    });

  program
    .command("predict")
    .description("complete masked matrices with a checkpoint; prints {\"predictions\": ...}")
    .requiredOption("--checkpoint <file>", "safetensors checkpoint")
    .requiredOption("--input <file>", "JSON {\"matrices\": [[[v or null, ...], ...], ...]} (null = hidden)")
    .option("--heads <n>", "heads, when the checkpoint has no config (default 8; a GPT's 2)", int("--heads"))
    .option("--attn <kind>", "a GPT's attention, when the checkpoint has no config: softmax or linear (default softmax)", attnOpt)
    .option("--backend <name>", BACKEND_WORDS, backendOpt, "cpu" as BackendName)
    .option("--device <name>", "same as --backend", backendOpt)
    .option("--clamp", "clamp values outside the vocabulary's range ([-10, 10]; a GPT's [-2, 2]) instead of failing")
    .action(async (f: { checkpoint: string; input: string; heads?: number; attn?: AttentionKind; backend: BackendName; device?: BackendName; clamp?: boolean }) => {
      const matrices = readPredictInput(f.input);
      const kernels = await loadKernels(f.device ?? f.backend);
      // a GPT checkpoint (minGPT names) generates the cells; a BERT one regresses them
      const gpt = checkpointFamily(f.checkpoint) === "gpt";
      if (!gpt && f.attn !== undefined) throw new AbruptError("--attn is for GPT checkpoints");
      const { model, trainedOn } = gpt
        ? loadGptPredictor(f.checkpoint, kernels, { ...(f.heads !== undefined ? { heads: f.heads } : {}), ...(f.attn ? { attn: f.attn } : {}) })
        : loadPredictor(f.checkpoint, kernels, f.heads);
      const predictions = model instanceof Gpt ? await predictGpt(model, matrices, !!f.clamp) : await predict(model, matrices, !!f.clamp);
      const warning = sizeWarning(trainedOn, matrices);
      if (warning) console.error(`abrupt: ${warning}`);
      process.stdout.write(JSON.stringify({ predictions }) + "\n");
    });

  analyzeCommand(program);

  program
    .command("bench")
    .description("ms/step of the S, M (and P) sizes per backend, sgemm GFLOP/s, peak RSS; with --torch, PyTorch's ms/step in the same run and the ratio")
    .option("--backends <list>", "backends", list, ["cpu", "ref"])
    .option("--device <name>", "one backend (e.g. webgpu), instead of --backends", backendOpt)
    .option("--sizes <list>", "sizes among S, M, P and G (the GPT: L2 H2 d256, batch 256 of 7×7)", list, ["S", "M", "P"])
    .option("--steps <n>", "timed steps per size (median reported)", int("--steps"), 5)
    .option("--threads <n>", "threads (0 = all cores)", int("--threads"), 0)
    .option("--matmul <n>", "webgpu: also time an n×n×n matmul (0 = skip)", int("--matmul"), 4096)
    .option("--json <file>", "also write the results as JSON")
    .option("--torch <python>", "also time each cpu size in PyTorch with this python (tools/bench_torch.py), alternating with ours; prints ours/torch")
    .option("--repeat <k>", "with --torch: pairs (ours, torch) per size", int("--repeat"), 1)
    .option("--child <size>", "(internal) run one size (or matmul:n) in this process")
    .option("--backend <name>", "(internal) backend of --child", backendOpt, "cpu" as BackendName)
    .action(async (f: { backends: string[]; device?: BackendName; sizes: string[]; steps: number; threads: number; matmul: number; json?: string; torch?: string; repeat: number; child?: string; backend: BackendName }) => {
      if (f.child) {
        if (!f.child.startsWith("matmul:")) checkBenchOptions([f.child], f.steps);
        const mm = /^matmul:(\d+)$/.exec(f.child);
        const res = mm ? await measureMatmul(f.backend, Number(mm[1])) : await benchInProcess(f.child, f.backend, f.steps, f.threads);
        console.log(JSON.stringify(res));
        return;
      }
      const backends = f.device ? [f.device] : f.backends.map((b) => {
        if (!isBackend(b)) throw new AbruptError(`--backends: unknown backend "${b}" (backends: ${BACKENDS.join(", ")})`);
        return b;
      });
      checkBenchOptions(f.sizes, f.steps);
      checkTorchOptions(backends, f.torch, f.repeat);
      if (f.json) checkWritableFile(f.json, "--json file");
      const res = runBench({ backends, sizes: f.sizes, steps: f.steps, threads: f.threads, matmul: f.matmul, torch: f.torch, repeat: f.repeat });
      if (f.json) writeJsonAtomic(f.json, res);
    });

  program
    .command("serve")
    .description("the dashboard: a local web server over the runs in RUNS_DIR (default runs)")
    .argument("[runs_dir]", "folder holding run folders", "runs")
    .option("--port <n>", "port (0 = any free port)", int("--port"), 8080)
    .option("--host <addr>", "address to listen on", "127.0.0.1")
    .option("--job-timeout <s>", "the longest one analysis may run, in seconds", num("--job-timeout"), 300)
    .action(async (runsDir: string, f: { port: number; host: string; jobTimeout: number }) => {
      if (f.port < 0 || f.port > 65535) throw new AbruptError(`--port must be in 0..65535 (got ${f.port})`);
      if (!(f.jobTimeout > 0)) throw new AbruptError(`--job-timeout must be positive (got ${f.jobTimeout})`);
      if (!isLoopback(f.host)) console.error(`abrupt serve: warning: listening on ${f.host} with no authentication: anyone who can reach this port can read the runs and start analyses`);
      const srv = await startServer({ runsDir, port: f.port, host: f.host, jobTimeoutMs: f.jobTimeout * 1000 });
      process.stdout.write(`abrupt serve: ${srv.url} (runs: ${resolve(runsDir)}; Ctrl-C stops)\n`);
      await new Promise<void>((done) => {
        const stop = () => { void srv.close().then(done); };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
    });

  program
    .command("report")
    .description("one self-contained HTML file (no scripts, no network) with the dashboard's figures at the pre and post checkpoints")
    .argument("<run>", "run directory")
    .option("--out <file>", "output file (default RUN/report.html)")
    .option("--pre <step>", "checkpoint for 'before' (default: the last on the plateau)", int("--pre"))
    .option("--post <step>", "checkpoint for 'after' (default: the last, if after the drop)", int("--post"))
    .option("--seed <n>", "seed of the analysis data", seedOpt("--seed"), 0)
    .option("--opt <key=value>", "experiment option (repeatable), as for analyze", collect, [] as string[])
    .action(async (runDir: string, f: { out?: string; pre?: number; post?: number; seed: number; opt: string[] }) => {
      const file = await writeReport(runDir, f);
      console.error(`report: ${file}`);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    const err = e as Error & { code?: string; exitCode?: number };
    if (err.code && err.code.startsWith("commander.")) {
      // help and version are not errors; commander already printed the message
      return ["commander.helpDisplayed", "commander.help", "commander.version"].includes(err.code) ? (err.exitCode ?? 0) : 2;
    }
    if (e instanceof AbruptError) {
      process.stderr.write(`abrupt: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`abrupt: internal error: ${err.stack ?? err.message}\n`);
    return 70;
  }
}

const isMain = process.argv[1] && import.meta.url === new URL(`file://${resolve(process.argv[1])}`).href;
if (isMain) {
  process.exitCode = await main(process.argv);
}

/** The intervention in the train banner: " · attention ×5 on the targets, layers 0, from step 100 to the drop". */
function attnBiasText(ab: RunConfig["train"]["attn_bias"]): string {
  if (!ab) return "";
  const until = ab.until === "drop" ? " to the drop" : typeof ab.until === "number" ? ` to step ${ab.until}` : "";
  return ` · attention ×${ab.c} on the targets, ${ab.layers ? `layers ${ab.layers.join(",")}` : "all layers"}${ab.from > 0 || until ? `, from step ${ab.from}${until}` : ""}`;
}
