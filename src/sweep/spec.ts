// A sweep file (YAML or JSON) and its plan: one run per (cell, seed).
//
//   base: { preset: cpu }        # any train config, sections as in config.json
//   grid:                        # dotted config keys -> values; cells = their product
//     train.lr: [0.001, 0.002]
//     model.d: [64, 96]
//   seeds: 8                     # a count (0..N-1) or a list
//   stop: { max_steps: 30000, after_drop: 3000 }
//   threads: 1                   # per run
//
// Without `grid` the sweep has one cell ("base"). A run's config is, in
// order: its preset, the sweep defaults (1 thread, few checkpoints:
// log-spaced plus those at the plateau's end and the drop), `base`, the
// cell's values, `stop`, the seed. Every config is resolved and validated
// here, before any run starts.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { AbruptError } from "../errors.js";
import {
  type AttnBiasConfig, DataSchema, type PartialRunConfig, PartialRunConfigSchema, type RunConfig, TrainSchema, parseAttnBias, resolveConfig,
} from "../train/config.js";
import { ModelConfigSchema } from "../model/params.js";

const scalar = z.union([z.number(), z.string(), z.boolean(), z.null(), z.array(z.union([z.number(), z.string()]))]);

export const SweepFileSchema = z.object({
  base: z.record(z.string(), z.unknown()).optional(),
  grid: z.record(z.string(), z.array(scalar)).optional(),
  seeds: z.union([z.number().int().positive(), z.array(z.number().int().min(0)).nonempty()]),
  stop: z.object({
    max_steps: z.number().int().positive().optional(),
    after_drop: z.number().int().min(0).optional(),
  }).strict().optional(),
  threads: z.number().int().min(0).optional(),
}).strict();
export type SweepFile = z.infer<typeof SweepFileSchema>;

/** What a sweep's runs keep unless the sweep file says otherwise. */
const SWEEP_DEFAULTS: PartialRunConfig = {
  train: { threads: 1, ckpt_every: 0, ckpt_log: 8, ckpt_events: true, keep_optimizer: "last" },
};

export interface PlannedRun {
  /** folder name under DIR/runs/ */
  name: string;
  cell: string;
  seed: number;
  config: RunConfig;
}

export interface PlannedCell {
  key: string;
  overrides: Record<string, unknown>;
  runs: PlannedRun[];
}

export interface SweepPlan {
  spec: SweepFile;
  /** hash of the canonical spec: an output folder holds one sweep */
  id: string;
  cells: PlannedCell[];
  runs: PlannedRun[];
  /** the grid's keys, in file order */
  axes: string[];
}

const SECTIONS = { model: ModelConfigSchema, data: DataSchema, train: TrainSchema } as const;

function fail(file: string, msg: string): never {
  throw new AbruptError(`sweep file ${file}: ${msg}`);
}

/** train.attn_bias written as the --attn-bias flag ("5", "2@1000:0", "5@0-drop") → its config. */
function attnBiasValue(file: string, where: string, v: string): AttnBiasConfig {
  try {
    return parseAttnBias(v, where);
  } catch (e) {
    fail(file, (e as Error).message);
  }
}

/** "train.lr" → ["train", "lr"], checked against the config schema. */
function splitKey(file: string, key: string): ["model" | "data" | "train", string] {
  const [sec, k, ...rest] = key.split(".");
  if (!sec || !k || rest.length > 0 || !(sec in SECTIONS)) {
    fail(file, `grid key "${key}" is not SECTION.KEY with SECTION one of model, data, train`);
  }
  const shape = SECTIONS[sec as keyof typeof SECTIONS].shape as Record<string, unknown>;
  if (!(k in shape)) fail(file, `unknown config key "${key}" (${sec} has: ${Object.keys(shape).join(", ")})`);
  if (sec === "train" && k === "seed") fail(file, `"train.seed" is set by "seeds", not by the grid`);
  return [sec as "model" | "data" | "train", k];
}

function mergePartial(...parts: PartialRunConfig[]): PartialRunConfig {
  const out: PartialRunConfig = {};
  for (const p of parts) {
    if (p.preset !== undefined) out.preset = p.preset;
    for (const s of ["model", "data", "train"] as const) {
      if (p[s]) (out as Record<string, object>)[s] = { ...((out[s] as object | undefined) ?? {}), ...p[s] };
    }
  }
  return out;
}

// ":" (the layers of an --attn-bias value) reads "-l" in a folder name, as in analyze's file tags
const fmtValue = (v: unknown): string => (Array.isArray(v) ? v.join("+") : String(v).replace(/:/g, "-l"));

/** A short, filesystem-safe cell key: "lr=0.001_d=64" (the full key where the short one is ambiguous). */
function cellKey(entries: Array<[string, unknown]>): string {
  if (entries.length === 0) return "base";
  const short = entries.map(([k]) => k.split(".")[1]!);
  return entries
    .map(([k, v], i) => `${short.indexOf(short[i]!) === short.lastIndexOf(short[i]!) ? short[i] : k}=${fmtValue(v)}`)
    .join("_")
    .replace(/[^A-Za-z0-9.=_+,@-]/g, "-");
}

/** Canonical JSON (sorted keys) of a value. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

export function readSweepFile(file: string): SweepFile {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new AbruptError(`cannot read sweep file ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    fail(file, `not valid ${/\.ya?ml$/i.test(file) ? "YAML" : "JSON"}: ${(e as Error).message.split("\n")[0]}`);
  }
  const r = SweepFileSchema.safeParse(raw ?? {});
  if (!r.success) {
    const i = r.error.issues[0]!;
    fail(file, `${i.path.join(".") || "(top level)"}: ${i.message}`);
  }
  return r.data;
}

/** Expands and validates every (cell, seed) of a sweep file. */
export function planSweep(spec: SweepFile, file = "(sweep)"): SweepPlan {
  const rawBase = (spec.base ?? {}) as { train?: { attn_bias?: unknown } };
  if (typeof rawBase.train?.attn_bias === "string") {
    rawBase.train = { ...rawBase.train, attn_bias: attnBiasValue(file, "base.train.attn_bias", rawBase.train.attn_bias) };
  }
  const baseParsed = PartialRunConfigSchema.safeParse(rawBase);
  if (!baseParsed.success) {
    const i = baseParsed.error.issues[0]!;
    fail(file, `base.${i.path.join(".")}: ${i.message}`);
  }
  const base = baseParsed.data;
  const grid = spec.grid;
  if (grid !== undefined && Object.keys(grid).length === 0) fail(file, "the grid is empty (give at least one key, or leave out `grid` for one cell)");
  const axes = Object.keys(grid ?? {});
  for (const k of axes) {
    splitKey(file, k);
    if (grid![k]!.length === 0) fail(file, `grid key "${k}" has no values`);
  }
  const seeds = typeof spec.seeds === "number" ? Array.from({ length: spec.seeds }, (_, i) => i) : [...new Set(spec.seeds)];
  const stop: PartialRunConfig = {
    train: {
      ...(spec.stop?.max_steps !== undefined ? { max_steps: spec.stop.max_steps } : {}),
      ...(spec.stop?.after_drop !== undefined ? { stop_after_drop: spec.stop.after_drop } : {}),
      ...(spec.threads !== undefined ? { threads: spec.threads } : {}),
    },
  };
  // the grid's product, in file order (last key fastest)
  let combos: Array<Array<[string, unknown]>> = [[]];
  for (const k of axes) combos = combos.flatMap((c) => grid![k]!.map((v) => [...c, [k, v] as [string, unknown]]));

  const cells: PlannedCell[] = [];
  const seen = new Map<string, string>();
  for (const combo of combos) {
    const key = cellKey(combo);
    const over: PartialRunConfig = {};
    for (let [k, v] of combo) {
      const [sec, name] = splitKey(file, k);
      // the intervention may be given as on the command line: "5@0-drop:0"
      if (sec === "train" && name === "attn_bias" && typeof v === "string") v = attnBiasValue(file, `cell ${key}: train.attn_bias`, v);
      (over as Record<string, Record<string, unknown>>)[sec] = { ...((over as Record<string, Record<string, unknown>>)[sec] ?? {}), [name]: v };
    }
    const parsedOver = PartialRunConfigSchema.safeParse(over);
    if (!parsedOver.success) {
      const i = parsedOver.error.issues[0]!;
      fail(file, `cell ${key}: ${i.path.join(".")}: ${i.message}`);
    }
    let cfg0: RunConfig;
    try {
      const preset = base.preset;
      cfg0 = resolveConfig(preset, mergePartial(SWEEP_DEFAULTS, base), mergePartial(parsedOver.data, stop));
    } catch (e) {
      fail(file, `cell ${key}: ${(e as Error).message}`);
    }
    const canon = canonical(cfg0);
    const dup = seen.get(canon);
    if (dup !== undefined) fail(file, `cell ${key} is the same configuration as cell ${dup} (duplicate cell)`);
    seen.set(canon, key);
    const overrides = Object.fromEntries(combo);
    const runs = seeds.map((seed) => ({
      name: `${key}_seed=${seed}`, cell: key, seed,
      config: { ...cfg0, train: { ...cfg0.train, seed } },
    }));
    cells.push({ key, overrides, runs });
  }
  const keys = cells.map((c) => c.key);
  const clash = keys.find((k, i) => keys.indexOf(k) !== i);
  if (clash) fail(file, `two cells are both named "${clash}"; give distinct values`);
  const id = createHash("sha256").update(canonical(spec)).digest("hex").slice(0, 16);
  // seed-major: every cell gets its first seeds before any cell its last, so
  // a sweep stopped early has comparable cells
  const runs = seeds.flatMap((_, i) => cells.map((c) => c.runs[i]!));
  return { spec, id, cells, runs, axes };
}
