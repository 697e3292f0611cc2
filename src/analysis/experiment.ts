// What an experiment is. Each experiment of SPEC §4 is one file in this folder
// that exports `experiment`: its name, a one-line summary, its options (a zod
// object, every field with its default), the checkpoints it runs on when
// --step is not given, and `run`. The registry (index.ts) lists them; the
// runner (runner.ts), the CLI and the dashboard (src/server/compute.ts, which
// serves each as its `dashboard` field says) know nothing else about them.
//
// Options arrive as strings (`--opt key=value`, the dashboard's `opt=`): each
// is typed by the kind of its schema (a number, true/false, a comma list of
// numbers or of strings, a string, or JSON: any value starting with [ or {),
// and the counts (`count`: matrices, iterations) are checked against their
// range; what a value means (a mode's names, a hook's existence) is checked by
// the experiment itself, which tests call directly as well.
//
// `families` lists the model families an experiment runs on (default: the
// BERT only); `whyNot` says in one line why it does not run on another, which
// `abrupt analyze` prints (and `analyze all` lists as skipped).

import { z } from "zod";
import type { DataConfig } from "../data/matrix.js";
import { AbruptError } from "../errors.js";
import type { BackendName } from "../kernels/types.js";
import type { GptConfig } from "../model/gpt.js";
import { checkMemory, gptTrainingBytes, inferenceBytes } from "../model/memory.js";
import type { ModelConfig } from "../model/params.js";
import type { RunHandle } from "../store/run.js";
import type { AnalysisContext, AnalysisOutput, FamilyName } from "./context.js";
import { CHUNK } from "./forward.js";

/**
 * The checkpoints an experiment runs on when --step is not given: the last
 * on the plateau ("pre"), the last after the drop ("post"), the last one
 * ("final"), every one ("all"), or the run as a whole, once ("none").
 */
export type StepChoice = "pre" | "post" | "final" | "all" | "none";

/** The options of an experiment: a zod object whose every field has a default. */
export type Options = z.ZodObject;

export interface Experiment<O extends Options = Options> {
  name: string;
  /** one line, for `abrupt analyze --help`-like lists and the README */
  summary: string;
  options: O;
  steps: StepChoice;
  /** the model families it runs on (default ["bert"]); `run` sees ctx.family */
  families?: readonly FamilyName[];
  /** for each family it does not run on: why, in one line */
  whyNot?: Partial<Record<FamilyName, string>>;
  /**
   * How the dashboard (src/server/compute.ts) serves it: per checkpoint
   * ("step"), once over the run ("run"), or not at all (false: too slow for a
   * page request, or it needs more than one run). Default: "run" for steps
   * "none", else "step".
   */
  dashboard?: "step" | "run" | false;
  /** its `batch` option is the number of matrices per forward pass (for the memory check; the others run CHUNK at a time) */
  batchPerPass?: boolean;
  /** runs on the checkpoint ctx.step (for steps "none": the run's last); `run` is the run folder, null for a lone checkpoint file */
  run(ctx: AnalysisContext, opts: z.output<O>, run: RunHandle | null): AnalysisOutput | Promise<AnalysisOutput>;
  /**
   * With `--step all`: one result over training from the per-checkpoint
   * JSONs, written as <experiment>-over-training.json and figures.
   */
  summarize?(per: Array<{ step: number; json: Record<string, unknown> }>, run: RunHandle | null): AnalysisOutput;
}

/** null if the experiment runs on the family, else the one-line refusal: "nnm does not apply to GPT runs: …". */
export function refusal(e: Experiment, family: FamilyName): string | null {
  if ((e.families ?? ["bert"]).includes(family)) return null;
  return `${e.name} does not apply to ${family.toUpperCase()} runs: ${e.whyNot?.[family] ?? "it is written for the other model family"}`;
}

const counts = new WeakSet<z.ZodType>();

/** An option that counts matrices or iterations: an integer in [min, max] (the memory check comes on top). */
export function count(dflt: number, max = 2 ** 24, min = 1) {
  const s = z.number().int().min(min).max(max);
  counts.add(s);
  return s.default(dflt);
}

type Kind = "number" | "boolean" | "numbers" | "strings" | "string" | "json";

/** The schema under its default, nullable and optional wrappers. */
function inner(s: z.ZodType): z.ZodType {
  let t = s;
  while (t instanceof z.ZodDefault || t instanceof z.ZodNullable || t instanceof z.ZodOptional) t = t.unwrap() as z.ZodType;
  return t;
}

/** How a string value of an option is read. */
function kindOf(s: z.ZodType): Kind {
  const t = inner(s);
  const stringy = (x: z.ZodType) => x instanceof z.ZodString || x instanceof z.ZodEnum || (x instanceof z.ZodLiteral && typeof x.value === "string");
  if (t instanceof z.ZodNumber) return "number";
  if (t instanceof z.ZodBoolean) return "boolean";
  if (stringy(t)) return "string";
  if (t instanceof z.ZodArray) {
    const e = inner(t.element as z.ZodType);
    return e instanceof z.ZodNumber ? "numbers" : stringy(e) ? "strings" : "json";
  }
  if (t instanceof z.ZodTuple) return (t.def.items as z.ZodType[]).every((x) => inner(x) instanceof z.ZodNumber) ? "numbers" : "json";
  if (t instanceof z.ZodUnion && (t.options as z.ZodType[]).some((x) => stringy(inner(x)))) return "string";
  return "json";
}

/** The value of a string option; `list`: its default is a list (which names what a bad number should have been). */
function coerce(experiment: string, key: string, kind: Kind, list: boolean, raw: string): unknown {
  const bad = (what: string) => new AbruptError(`${experiment}: option ${key} must be ${what} (got "${raw}")`);
  if (/^\s*[[{]/.test(raw)) {
    try { return JSON.parse(raw); } catch { throw bad("valid JSON"); }
  }
  const num = (x: string) => {
    const v = Number(x);
    if (x.trim() === "" || !Number.isFinite(v)) throw bad(list ? "a comma list of numbers" : "a number");
    return v;
  };
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

/** The options' names. */
export function optionNames(e: Experiment): string[] {
  return Object.keys(e.options.shape);
}

/** The default options of an experiment. */
export function defaultOptions<O extends Options>(e: Experiment<O>): z.output<O> {
  return e.options.parse({});
}

/**
 * Experiment options: the defaults, overridden by key=value strings. A key
 * the experiment does not know is an error, unless `all` (`analyze all`, where
 * each experiment takes its own keys).
 */
export function withDefaults<O extends Options>(e: Experiment<O>, given: Record<string, string>, all: boolean): z.output<O> {
  const shape = e.options.shape as Record<string, z.ZodType>;
  const known = Object.keys(shape);
  const out: Record<string, unknown> = { ...defaultOptions(e) };
  for (const [k, v] of Object.entries(given)) {
    const s = shape[k];
    if (!s) {
      if (!all) throw new AbruptError(`${e.name}: unknown option "${k}" (options: ${known.join(", ") || "none"})`);
      continue;
    }
    const x = coerce(e.name, k, kindOf(s), Array.isArray(out[k]), v);
    const c = inner(s);
    if (counts.has(c)) {
      const { minValue: lo, maxValue: hi } = c as z.ZodNumber;
      if (!(typeof x === "number" && Number.isInteger(x) && x >= lo! && x <= hi!)) {
        throw new AbruptError(`${e.name}: option ${k} must be an integer in ${lo}..${hi} (got ${v})`);
      }
    }
    out[k] = x;
  }
  // typed by the schema's kinds and ranges above; the experiment checks what the values mean
  return out as z.output<O>;
}

/** Parses key=value pairs into raw strings (typed later against an experiment's options). */
export function parseOpts(pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf("=");
    if (i <= 0) throw new AbruptError(`--opt must be key=value (got "${p}")`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

/**
 * Fails with one line when an experiment's options need more memory than is
 * free: the two models a context holds, their activations per forward pass,
 * and what it keeps per matrix. Experiments without options load no model.
 */
export function checkAnalysisMemory(e: Experiment, opts: Record<string, unknown>, cfg: ModelConfig | GptConfig, data: DataConfig, backend: BackendName): void {
  if (optionNames(e).length === 0) return;
  const num = (k: string) => (typeof opts[k] === "number" ? (opts[k] as number) : 0);
  const samples = Math.max(1, num("batch"), num("matrices"), num("train") + num("test"));
  const chunk = e.batchPerPass ? Math.max(1, num("batch")) : CHUNK;
  const T = data.m * data.n;
  if ("block" in cfg) {
    // a GPT: two models with their activations for one chunk (the training
    // estimate, which has room for gradients too) and the samples' sequences
    const one = gptTrainingBytes(cfg, Math.min(chunk, samples), 2 * T, backend === "webgpu");
    const host = samples * 2 * T * (64 + 4 * cfg.d * (cfg.L + 2));
    checkMemory({ host: 2 * one.host + host, device: 2 * one.device, largest: one.largest },
      `${e.name} on ${samples} ${data.m}×${data.n} matrices with GPT L${cfg.L} d${cfg.d} ff${cfg.ff}`);
    return;
  }
  checkMemory(inferenceBytes(cfg, T, { samples, chunk, models: 2 }, backend === "webgpu"),
    `${e.name} on ${samples} ${data.m}×${data.n} matrices with BERT L${cfg.L} d${cfg.d} ff${cfg.ff}`);
}
