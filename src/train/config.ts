// The run configuration: one zod schema validated at the boundary (config
// files in JSON or YAML, presets, CLI flags), plain objects inside. The
// schemas have no defaults: every default is in BASE, so that a partial
// config (a file, a sweep cell) never resets what a preset set.

import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import type { DataConfig } from "../data/matrix.js";
import { AbruptError } from "../errors.js";
import { type ModelConfig, ModelConfigSchema } from "../model/params.js";
import { DEFAULT_FAMILY, FAMILIES, familyNamed, familyOf } from "../family/index.js";

const posInt = z.number().int().positive();

export const DataSchema = z.object({
  m: posInt,
  n: posInt,
  rank: posInt,
  p_mask: z.number(),
  prec: z.number().int(),
  factor: z.enum(["uniform", "gaussian", "laplace"]),
  clamp: z.boolean(),
}).strict();

/**
 * The attention intervention of SPEC §5 (src/model/attn-bias.ts): from step
 * `from` on (steps count from 1; 0 = from the start), each query's attention
 * on its target keys is multiplied by c in `layers` (null = all). `until`
 * switches it off again: from that step on, or ("drop") from the step after
 * the run's drop (src/train/events.ts); absent or null = on to the end.
 */
export const AttnBiasSchema = z.object({
  c: z.number().positive(),
  from: z.number().int().min(0),
  until: z.union([z.number().int().positive(), z.literal("drop")]).nullable().optional(),
  layers: z.array(z.number().int().min(0)).nullable(),
}).strict();
export type AttnBiasConfig = z.infer<typeof AttnBiasSchema>;

/** Whether the intervention is on at `step`, given the run's drop step so far (null = none yet). */
export function attnBiasOn(ab: AttnBiasConfig, step: number, drop: number | null): boolean {
  if (step < ab.from) return false;
  const until = ab.until ?? null;
  if (until === null) return true;
  if (until === "drop") return drop === null || step <= drop;
  return step < until;
}

export const TrainSchema = z.object({
  steps: posInt,
  batch: posInt,
  lr: z.number().positive(),
  beta1: z.number().min(0).lt(1),
  beta2: z.number().min(0).lt(1),
  eps: z.number().positive(),
  /** linear warm-up steps (0 = none, the paper) */
  warmup: z.number().int().min(0),
  /** after warm-up: constant learning rate (the paper) or cosine decay to lr·lr_final at the last step */
  lr_decay: z.enum(["none", "cosine"]),
  /** with lr_decay cosine: the final learning rate as a fraction of lr */
  lr_final: z.number().min(0).max(1),
  /** with lr_decay cosine: the step where the decay starts (constant lr before it; never before the warm-up ends) */
  decay_start: z.number().int().min(0),
  /** stop at this step even if `steps` (which sets the lr schedule) is larger; null = at `steps` */
  max_steps: posInt.nullable(),
  /** stop this many steps after the drop (src/train/events.ts); null = never */
  stop_after_drop: z.number().int().min(0).nullable(),
  /** also checkpoint where L_mask leaves the plateau and at the drop */
  ckpt_events: z.boolean(),
  /** read-out init: "normal" as the body (N(0, 0.02), zero bias) or "torch" (the reference code: U(±1/√d) weight and bias) */
  readout_init: z.enum(["normal", "torch"]),
  seed: z.number().int().min(0),
  /** evaluate on the fixed eval set every k steps (0 = never) */
  eval_every: z.number().int().min(0),
  eval_batch: posInt,
  /** checkpoint every N steps (0 = never) */
  ckpt_every: z.number().int().min(0),
  /** number of log-spaced checkpoint steps between 1 and steps (0 = none) */
  ckpt_log: z.number().int().min(0),
  /** explicit checkpoint steps */
  ckpt_steps: z.array(posInt),
  /** keep the Adam state of every checkpoint ("all") or only the newest ("last") */
  keep_optimizer: z.enum(["all", "last"]),
  /** parameter groups not trained (see src/model/params.ts) */
  freeze: z.array(z.string()),
  /**
   * Component dynamics (SPEC §4): "RUN_DIR@STEP" sets every parameter from
   * that checkpoint before training; with train_only, only those groups are
   * re-initialised from scratch and trained, all others stay frozen.
   */
  init_from: z.string().nullable(),
  /** parameter groups to re-initialise and train (needs init_from); [] = all */
  train_only: z.array(z.string()),
  /** "cpu" (native), "ref" (plain TypeScript, slow) or "webgpu" (WGSL through Dawn) */
  backend: z.enum(["cpu", "ref", "webgpu"]),
  /** threads for the cpu backend (0 = all cores) */
  threads: z.number().int().min(0),
  /** the attention intervention; null = none */
  attn_bias: AttnBiasSchema.nullable(),
  /** log the progress measures (src/analysis/measures.ts) every k steps (0 = never) */
  progress_every: z.number().int().min(0),
  /** "adam" (torch.optim.Adam / AdamW) or "sgd" (torch.optim.SGD, no momentum; beta1, beta2, eps unused) */
  optimizer: z.enum(["adam", "sgd"]),
  /** weight decay of the linear weights (Q/K/V, output, MLP, read-out; not biases, LayerNorm or embeddings): AdamW's decoupled decay with adam, torch SGD's with sgd */
  weight_decay: z.number().min(0),
  /** std of the N(0, std) init of the body's weights and embeddings (HF: 0.02); also the read-out's with readout_init normal */
  init_std: z.number().positive(),
}).strict();

export const RunConfigSchema = z.object({
  preset: z.string(),
  /** the model family (src/family/index.ts); absent = "bert" */
  family: z.string().optional(),
  model: ModelConfigSchema,
  data: DataSchema,
  train: TrainSchema,
}).strict();

export type RunConfig = z.infer<typeof RunConfigSchema>;

/** Partial config as found in files and presets. */
export const PartialRunConfigSchema = z.object({
  preset: z.string().optional(),
  family: z.string().optional(),
  model: ModelConfigSchema.partial().strict().optional(),
  data: DataSchema.partial().strict().optional(),
  train: TrainSchema.partial().strict().optional(),
}).strict();
export type PartialRunConfig = z.infer<typeof PartialRunConfigSchema>;

const BASE: RunConfig = {
  preset: "paper",
  model: { L: 4, H: 8, d: 768, ff: 3072, positions: 512, vocab: 2002, lnEps: 1e-12 },
  data: { m: 7, n: 7, rank: 2, p_mask: 0.3, prec: 2, factor: "uniform", clamp: false },
  train: {
    steps: 50000, batch: 256, lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, warmup: 0,
    lr_decay: "none", lr_final: 0, decay_start: 0, max_steps: null, stop_after_drop: null, ckpt_events: true, readout_init: "normal", seed: 0, eval_every: 100, eval_batch: 256,
    ckpt_every: 1000, ckpt_log: 12, ckpt_steps: [], keep_optimizer: "last",
    freeze: [], init_from: null, train_only: [], backend: "cpu", threads: 0,
    attn_bias: null, progress_every: 100, optimizer: "adam", weight_decay: 0, init_std: 0.02,
  },
};

/**
 * Presets. `paper` is the paper's run; `S` and `M` are the benchmark sizes;
 * `cpu` (the default) is the setting chosen from sweeps to show the plateau
 * and the drop within minutes on 2 cores for most seeds (docs/plateau.md);
 * `cpu4x4` is the earlier default on 4×4 matrices (docs/drop-search.md),
 * whose run the README's analysis figures come from.
 */
const BERT_PRESETS: Record<string, PartialRunConfig> = {
  paper: {},
  S: {
    model: { L: 2, H: 4, d: 128, ff: 512 },
    train: { batch: 128 },
  },
  M: {
    model: { L: 4, H: 8, d: 256, ff: 1024 },
    train: { batch: 256 },
  },
  cpu: {
    model: { L: 4, H: 4, d: 64, ff: 256, positions: 64 },
    data: { m: 3, n: 3, rank: 1, p_mask: 0.2 },
    train: {
      steps: 16000, batch: 128, lr: 1e-3, warmup: 200, lr_decay: "cosine", decay_start: 8000, lr_final: 0,
      eval_every: 100, eval_batch: 256, ckpt_every: 1000, ckpt_log: 10,
    },
  },
  cpu4x4: {
    model: { L: 4, H: 4, d: 64, ff: 256, positions: 64 },
    data: { m: 4, n: 4, rank: 1, p_mask: 0.2 },
    train: {
      steps: 50000, batch: 64, lr: 1e-3, warmup: 200, lr_decay: "cosine", decay_start: 30000, lr_final: 0,
      eval_every: 100, eval_batch: 256, ckpt_every: 1000, ckpt_log: 10,
    },
  },
};

export const DEFAULT_PRESET = "cpu";

/** Every preset: the BERT's above and each family's own (src/family/). */
export function presets(): Record<string, PartialRunConfig> {
  const all: Record<string, PartialRunConfig> = { ...BERT_PRESETS };
  for (const f of Object.values(FAMILIES)) Object.assign(all, f.presets);
  return all;
}

/** The family a preset trains. */
function presetFamily(p: PartialRunConfig): string {
  return p.family ?? DEFAULT_FAMILY;
}

function merge(base: RunConfig, over: PartialRunConfig): RunConfig {
  const family = over.family ?? base.family;
  return {
    preset: over.preset ?? base.preset,
    ...(family !== undefined ? { family } : {}),
    model: { ...base.model, ...(over.model ?? {}) },
    data: { ...base.data, ...(over.data ?? {}) },
    train: { ...base.train, ...(over.train ?? {}) },
  };
}

function zodMessage(e: z.ZodError, where: string): string {
  const i = e.issues[0]!;
  const path = i.path.join(".");
  return `${where}: ${path ? path + ": " : ""}${i.message}`;
}

export function readConfigFile(file: string): PartialRunConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new AbruptError(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new AbruptError(`config file ${file} is not valid ${/\.ya?ml$/i.test(file) ? "YAML" : "JSON"}: ${(e as Error).message.split("\n")[0]}`);
  }
  const r = PartialRunConfigSchema.safeParse(raw ?? {});
  if (!r.success) throw new AbruptError(zodMessage(r.error, `config file ${file}`));
  return r.data;
}

/**
 * preset → config file → overrides (flags), then validated as a whole. The
 * family (overrides.family is --model) picks the default preset and must be
 * the preset's: the family's base fills the model section first.
 */
export function resolveConfig(presetName: string | undefined, fileCfg: PartialRunConfig | undefined, overrides: PartialRunConfig): RunConfig {
  const all = presets();
  const named = presetName ?? fileCfg?.preset;
  const wanted = overrides.family ?? fileCfg?.family;
  if (wanted !== undefined) familyNamed(wanted, overrides.family !== undefined ? "--model" : "config: family");
  const name = named ?? (wanted !== undefined ? FAMILIES[wanted]!.defaultPreset : DEFAULT_PRESET);
  const preset = all[name];
  if (!preset) throw new AbruptError(`unknown preset "${name}" (presets: ${Object.keys(all).join(", ")})`);
  const family = presetFamily(preset);
  if (wanted !== undefined && wanted !== family) {
    const own = Object.keys(all).filter((p) => presetFamily(all[p]!) === wanted);
    throw new AbruptError(`preset "${name}" trains the ${FAMILIES[family]!.title}, not the ${FAMILIES[wanted]!.title} (${wanted} presets: ${own.join(", ")})`);
  }
  let cfg = merge(merge(BASE, FAMILIES[family]!.base), preset);
  cfg.preset = name;
  if (fileCfg) cfg = merge(cfg, { ...fileCfg, preset: name });
  cfg = merge(cfg, { ...overrides, preset: name });
  return validateRunConfig(cfg);
}

export function validateRunConfig(raw: unknown): RunConfig {
  const r = RunConfigSchema.safeParse(raw);
  if (!r.success) throw new AbruptError(zodMessage(r.error, "config"));
  const c = r.data;
  const { m, n, rank, p_mask, prec } = c.data;
  if (rank > Math.min(m, n)) throw new AbruptError(`config: data.rank (${rank}) must be at most min(m, n) = ${Math.min(m, n)}`);
  if (!(p_mask >= 0 && p_mask < 1)) throw new AbruptError(`config: data.p_mask must be in [0, 1) (got ${p_mask})`);
  if (prec < 0 || prec > 2) throw new AbruptError(`config: data.prec must be 0, 1 or 2 (the vocabulary has step 0.01; got ${prec})`);
  if (c.model.d % c.model.H !== 0) throw new AbruptError(`config: model.H (${c.model.H}) must divide model.d (${c.model.d})`);
  const family = familyOf(c);
  if (c.train.train_only.length > 0 && !c.train.init_from) throw new AbruptError("config: train.train_only needs train.init_from (RUN_DIR@STEP)");
  if (c.train.init_from && !/^.+@\d+$/.test(c.train.init_from)) throw new AbruptError(`config: train.init_from must be RUN_DIR@STEP (got "${c.train.init_from}")`);
  const ab = c.train.attn_bias;
  if (ab) {
    if (ab.from > lastStepOf(c.train)) throw new AbruptError(`config: train.attn_bias: step ${ab.from} is past the run's last step ${lastStepOf(c.train)}`);
    if (typeof ab.until === "number" && ab.until <= ab.from) throw new AbruptError(`config: train.attn_bias: the end step ${ab.until} must come after the start step ${ab.from}`);
  }
  family.validate(c);
  return c;
}

/**
 * Parses the --attn-bias flag, C[@STEP[-UNTIL]][:LAYERS]: e.g. "2" (c = 2
 * from the start, every layer), "0.5@3000" (from step 3000), "10@0:0,2"
 * (layers 0 and 2), "5@0-drop" (off again after the run's drop), "5@0-8000"
 * (off from step 8000). Layers are checked against the model by
 * validateRunConfig and Bert.setAttnBias.
 */
export function parseAttnBias(spec: string, flag = "--attn-bias"): AttnBiasConfig {
  const m = /^([^@:]*)(?:@([^:]*))?(?::(.*))?$/.exec(spec.trim());
  const form = `(the form is C[@STEP[-UNTIL]][:LAYERS], e.g. 2@1000:0,1 or 5@0-drop)`;
  if (!m) throw new AbruptError(`${flag}: cannot read "${spec}" ${form}`);
  const c = Number(m[1]);
  if (m[1]!.trim() === "" || !Number.isFinite(c) || c <= 0) throw new AbruptError(`${flag}: C must be a positive number (got "${m[1]}") ${form}`);
  let from = 0;
  let until: number | "drop" | null = null;
  if (m[2] !== undefined) {
    const [a, b, ...more] = m[2].split("-");
    from = Number(a);
    if (a!.trim() === "" || !Number.isInteger(from) || from < 0) throw new AbruptError(`${flag}: STEP must be a step number ≥ 0 (got "${a}") ${form}`);
    if (b !== undefined) {
      const u = b.trim();
      if (u === "drop") until = "drop";
      else {
        until = Number(u);
        if (u === "" || more.length > 0 || !Number.isInteger(until) || until <= from) throw new AbruptError(`${flag}: UNTIL must be "drop" or a step number after STEP (got "${m[2].slice(a!.length + 1)}") ${form}`);
      }
    }
  }
  let layers: number[] | null = null;
  if (m[3] !== undefined) {
    const parts = m[3].split(",").map((x) => x.trim());
    layers = parts.map((x) => Number(x));
    if (parts.some((x) => x === "") || layers.some((l) => !Number.isInteger(l) || l < 0)) throw new AbruptError(`${flag}: LAYERS must be layer numbers ≥ 0, comma-separated (got "${m[3]}") ${form}`);
    layers = [...new Set(layers)].sort((a, b) => a - b);
  }
  return { c, from, ...(until !== null ? { until } : {}), layers };
}

/** The BERT's model config of a run (src/family/bert.ts; a GPT run's is gptConfigOf in src/family/gpt.ts). */
export function modelConfigOf(c: RunConfig): ModelConfig {
  const { attn: _attn, ...m } = c.model;
  return m;
}

/** The data config of a run in the sampler's terms (src/data/matrix.ts). */
export function dataConfigOf(c: RunConfig): DataConfig {
  const d = c.data;
  return { m: d.m, n: d.n, rank: d.rank, pMask: d.p_mask, prec: d.prec, factor: d.factor, clamp: d.clamp };
}

/** Checkpoint steps: every N, log-spaced, explicit ones, and always the last. */
export function checkpointSteps(t: RunConfig["train"]): Set<number> {
  const s = new Set<number>();
  if (t.ckpt_every > 0) for (let k = t.ckpt_every; k <= t.steps; k += t.ckpt_every) s.add(k);
  if (t.ckpt_log > 0) {
    for (let i = 0; i < t.ckpt_log; i++) {
      const v = Math.round(Math.exp((Math.log(t.steps) * i) / Math.max(1, t.ckpt_log - 1)));
      s.add(Math.min(t.steps, Math.max(1, v)));
    }
  }
  const end = lastStepOf(t);
  for (const k of t.ckpt_steps) if (k <= t.steps) s.add(k);
  s.add(end);
  for (const k of s) if (k > end) s.delete(k);
  return s;
}

/** The step where the run ends unless the drop stops it earlier. */
export function lastStepOf(t: RunConfig["train"]): number {
  return t.max_steps !== null ? Math.min(t.steps, t.max_steps) : t.steps;
}

/** A run's figure title: its data, the model (as the family writes it), batch and schedule. */
export function runTitle(c: RunConfig, model: string): string {
  const d = c.data, t = c.train;
  return `${d.m}×${d.n} rank ${d.rank}, p_mask ${d.p_mask} · ${model} · batch ${t.batch}, lr ${t.lr}` +
    (t.lr_decay === "cosine" ? `, cosine to ${t.lr * t.lr_final} from step ${decayStartOf(t)}` : "");
}

/** The last step at the full lr: the cosine decay (if any) starts after it, never before the warm-up ends. */
export function decayStartOf(t: RunConfig["train"]): number {
  return Math.max(t.warmup, t.decay_start);
}

/** The learning rate of a step (1-based): linear warm-up, then constant or cosine decay. */
export function lrAt(t: RunConfig["train"], step: number): number {
  if (t.warmup > 0 && step < t.warmup) return t.lr * (step / t.warmup);
  const start = decayStartOf(t);
  if (t.lr_decay === "none" || step <= start) return t.lr;
  const span = Math.max(1, t.steps - start);
  const frac = Math.min(1, (step - start) / span);
  return t.lr * (t.lr_final + (1 - t.lr_final) * 0.5 * (1 + Math.cos(Math.PI * frac)));
}
