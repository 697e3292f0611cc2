// What `train --resume` may change. A resumed run continues bit-identically,
// so it keeps every setting of its config.json; only its length may change:
// `steps` (and `max_steps`), never below the step it resumes from. Any other
// setting given again (a flag, a --config file, --preset) must equal the
// run's, or the resume is refused with one line naming it. The stop rule
// `stop_after_drop` may change too (it decides when to stop, not how to train).

import { existsSync } from "node:fs";
import { join } from "node:path";
import { AbruptError } from "../errors.js";
import { type PartialRunConfig, type RunConfig, readConfigFile, resolveConfig, validateRunConfig } from "./config.js";
import { resumeStep } from "../store/run.js";

/** The flag of each setting that has one (others are named by their config key). */
const FLAGS: Record<string, string> = {
  "model.L": "--layers", "model.H": "--heads", "model.d": "--width", "model.ff": "--ff", "model.positions": "--positions",
  "data.m": "--m", "data.n": "--n", "data.rank": "--rank", "data.p_mask": "--p-mask", "data.prec": "--prec", "data.factor": "--factor", "data.clamp": "--clamp",
};
const flagOf = (key: string) => FLAGS[key] ?? (key.startsWith("train.") ? `--${key.slice(6).replace(/_/g, "-")}` : key);

/** Settings that set the run's length or when it stops: these may change on resume. */
const LENGTH = new Set(["train.steps", "train.max_steps", "train.stop_after_drop"]);
/** Of those, the ones that may not fall below the step the run resumes from. */
const AT_LEAST_NOW = new Set(["train.steps", "train.max_steps"]);

function entries(c: PartialRunConfig): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = [];
  for (const section of ["model", "data", "train"] as const) {
    for (const [k, v] of Object.entries(c[section] ?? {})) if (v !== undefined) out.push([`${section}.${k}`, v]);
  }
  return out;
}

const show = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));

/**
 * The config of a resumed run: the run's own, with its length changed if
 * `steps` / `max_steps` are given. `file` is a --config file's settings
 * (named `fileName`), `flags` the command line's.
 */
export function resumeConfig(outDir: string, given: { preset?: string; file?: PartialRunConfig; fileName?: string; flags: PartialRunConfig }): RunConfig {
  const saved = join(outDir, "config.json");
  if (!existsSync(saved)) throw new AbruptError(`cannot resume: ${saved} does not exist`);
  const stored = readConfigFile(saved);
  const run = resolveConfig(stored.preset, stored, {});
  const preset = given.preset ?? given.file?.preset;
  if (preset !== undefined && preset !== run.preset) {
    throw new AbruptError(`cannot resume with ${given.preset !== undefined ? "--preset" : `preset in ${given.fileName}`} ${preset}: the run was made with preset ${run.preset} (a resumed run keeps its settings; only --steps, --max-steps and --stop-after-drop may change)`);
  }
  const family = given.flags.family ?? given.file?.family;
  if (family !== undefined && family !== (run.family ?? "bert")) {
    throw new AbruptError(`cannot resume with ${given.flags.family !== undefined ? "--model" : `family in ${given.fileName}`} ${family}: the run trains the ${run.family ?? "bert"} model`);
  }
  const fromFlags = new Map(entries(given.flags));
  const wanted = new Map([...entries(given.file ?? {}), ...fromFlags]);
  const cfg: RunConfig = structuredClone(run);
  for (const [key, v] of wanted) {
    const [section, k] = key.split(".") as ["model" | "data" | "train", string];
    const have = (run[section] as Record<string, unknown>)[k];
    if (JSON.stringify(have) === JSON.stringify(v)) continue;
    const name = fromFlags.has(key) ? `${flagOf(key)} ${show(v)}` : `${key} = ${show(v)} in ${given.fileName}`;
    if (!LENGTH.has(key)) {
      throw new AbruptError(`cannot resume with ${name}: the run has ${key} = ${show(have)} (a resumed run keeps its settings; only --steps, --max-steps and --stop-after-drop may change)`);
    }
    const at = resumeStep(outDir);
    if (AT_LEAST_NOW.has(key) && typeof v === "number" && at !== null && v < at) {
      throw new AbruptError(`cannot resume with ${name}: the run is at step ${at}, and a resumed run can only be extended`);
    }
    (cfg.train as Record<string, unknown>)[k] = v;
  }
  return validateRunConfig(cfg);
}
