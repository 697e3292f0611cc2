// Readers of flag values for commander: each turns a bad value into the
// one-line error `abrupt: …` the CLI prints.

import { InvalidArgumentError } from "commander";
import { BACKENDS } from "../kernels/index.js";
import type { AttentionKind, BackendName } from "../kernels/types.js";

export const num = (name: string) => (v: string) => {
  const x = Number(v);
  if (v.trim() === "" || !Number.isFinite(x)) throw new InvalidArgumentError(`${name} must be a number (got "${v}")`);
  return x;
};
export const int = (name: string) => (v: string) => {
  const x = num(name)(v);
  if (!Number.isInteger(x)) throw new InvalidArgumentError(`${name} must be an integer (got "${v}")`);
  return x;
};
export const seedOpt = (name: string) => (v: string) => {
  const x = int(name)(v);
  if (x < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer (got ${v})`);
  return x;
};
export const list = (v: string) => v.split(",").map((s) => s.trim()).filter(Boolean);
export const intList = (name: string) => (v: string) => list(v).map((s) => int(name)(s));
export const attnOpt = (v: string): AttentionKind => {
  if (v !== "softmax" && v !== "linear") throw new InvalidArgumentError(`attention must be softmax or linear (got "${v}")`);
  return v;
};

/** Whether `v` names a backend. */
export const isBackend = (v: string): v is BackendName => (BACKENDS as readonly string[]).includes(v);

/** The backends in words: "cpu, ref or webgpu". */
export const BACKEND_WORDS = `${BACKENDS.slice(0, -1).join(", ")} or ${BACKENDS.at(-1)}`;

export const backendOpt = (v: string): BackendName => {
  if (!isBackend(v)) throw new InvalidArgumentError(`backend must be ${BACKEND_WORDS} (got "${v}")`);
  return v;
};

/** A repeatable --opt key=value. */
export const collect = (v: string, acc: string[]) => [...acc, v];
