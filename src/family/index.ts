// The model families (see types.ts for what a family is and how to add one).

import { AbruptError } from "../errors.js";
import type { RunConfig } from "../train/config.js";
import { bertFamily } from "./bert.js";
import { gptFamily } from "./gpt.js";
import type { ModelFamily } from "./types.js";

export type { EventSignal, FamilyModel, ModelFamily, RunTrainer } from "./types.js";

/** Every family, by its --model name; the first is the default. */
export const FAMILIES: Record<string, ModelFamily> = {
  bert: bertFamily,
  gpt: gptFamily,
};

/** The default family: runs whose config has no `family` are the BERT's. */
export const DEFAULT_FAMILY = "bert";

/** A family by name; one line listing the names when there is none. */
export function familyNamed(name: string, what = "--model"): ModelFamily {
  const f = FAMILIES[name];
  if (!f) throw new AbruptError(`${what}: unknown model "${name}" (models: ${Object.keys(FAMILIES).join(", ")})`);
  return f;
}

/** The family of a run config. */
export function familyOf(cfg: Pick<RunConfig, "family">): ModelFamily {
  return familyNamed(cfg.family ?? DEFAULT_FAMILY, "config: family");
}
