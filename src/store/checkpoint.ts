// Checkpoints as safetensors in the paper's PyTorch names (SPEC §2): HF
// BertModel under "_backbone." plus "read_out.*", so a file we write loads
// into the reference code with strict=True and theirs load here.
//
// Our flat layout (model/params.ts) differs from theirs in two places:
// - query, key and value are rows [0,C), [C,2C), [2C,3C) of one qkv tensor;
// - there is no token-type embedding. The paper's code removed it from HF's
//   BertModel (its patched modeling_bert.py), so SAVE writes none. A stock HF
//   checkpoint has one and adds its row 0 to every token (token_type_ids
//   default to 0): LOAD folds that row into every row of the position table,
//   which is exact.
//
// Adam state for exact resume is a second file: "adam.m", "adam.v" in our
// flat order, the step in metadata, plus whatever the caller adds (the PRNG
// state, by convention under "rng").

import { z } from "zod";
import { AbruptError } from "../errors.js";
import { type ModelConfig, ModelConfigSchema, paramCount, paramSpecs } from "../model/params.js";
import { type StFile, type TensorIn, getFloat32, readSafetensors, writeSafetensors } from "./safetensors.js";

const BACKBONE = "_backbone.";
const TOKEN_TYPE = "embeddings.token_type_embeddings.weight";
const CONFIG_KEY = "abrupt.config";
const RESERVED = new Set([CONFIG_KEY, "format"]);
const STEP_KEY = "adam.step";

/** A checkpoint's model: the model config with at least one layer, and H dividing d. */
const ConfigSchema = ModelConfigSchema
  .extend({ L: z.number().int().positive() })
  .refine((c) => c.d % c.H === 0, { message: "H must divide d" });

function fail(file: string, problem: string): never {
  throw new AbruptError(`${file}: ${problem}`);
}

function checkConfig(file: string, cfg: unknown): ModelConfig {
  const r = ConfigSchema.safeParse(cfg);
  if (!r.success) {
    const i = r.error.issues[0]!;
    fail(file, `bad model config ${JSON.stringify(cfg)}: ${i.path.length ? i.path.join(".") + ": " : ""}${i.message}`);
  }
  return r.data;
}

const shapeText = (s: readonly number[]) => `[${s.join(",")}]`;
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** A PyTorch tensor (name without the "_backbone." prefix for backbone ones) and where it lives in our flat array. */
export interface PytorchSlot {
  /** e.g. "encoder.layer.0.attention.self.query.weight" or "read_out.weight" */
  name: string;
  /** true for BertModel tensors (stored as "_backbone." + name) */
  backbone: boolean;
  /** PyTorch shape ([out, in] for linear weights) */
  shape: number[];
  /** offset into the flat parameter array; the tensor is contiguous there */
  offset: number;
}

/**
 * Every parameter of the flat layout as PyTorch tensors, in HF order. The
 * token-type table is not among them (it has no place in our layout).
 */
export function pytorchLayout(cfg: ModelConfig): PytorchSlot[] {
  const { d: C, ff: F } = cfg;
  const at = new Map(paramSpecs(cfg).map((s) => [s.name, s.offset]));
  const off = (name: string) => at.get(name)!;
  const slots: PytorchSlot[] = [];
  const bb = (name: string, shape: number[], offset: number) => slots.push({ name, backbone: true, shape, offset });
  bb("embeddings.word_embeddings.weight", [cfg.vocab, C], off("embed.tok.weight"));
  bb("embeddings.position_embeddings.weight", [cfg.positions, C], off("embed.pos.weight"));
  bb("embeddings.LayerNorm.weight", [C], off("embed.ln.weight"));
  bb("embeddings.LayerNorm.bias", [C], off("embed.ln.bias"));
  for (let l = 0; l < cfg.L; l++) {
    const h = `encoder.layer.${l}`;
    const b = `blocks.${l}`;
    ["query", "key", "value"].forEach((qkv, k) => {
      bb(`${h}.attention.self.${qkv}.weight`, [C, C], off(`${b}.attn.qkv.weight`) + k * C * C);
      bb(`${h}.attention.self.${qkv}.bias`, [C], off(`${b}.attn.qkv.bias`) + k * C);
    });
    bb(`${h}.attention.output.dense.weight`, [C, C], off(`${b}.attn.proj.weight`));
    bb(`${h}.attention.output.dense.bias`, [C], off(`${b}.attn.proj.bias`));
    bb(`${h}.attention.output.LayerNorm.weight`, [C], off(`${b}.ln1.weight`));
    bb(`${h}.attention.output.LayerNorm.bias`, [C], off(`${b}.ln1.bias`));
    bb(`${h}.intermediate.dense.weight`, [F, C], off(`${b}.mlp.fc1.weight`));
    bb(`${h}.intermediate.dense.bias`, [F], off(`${b}.mlp.fc1.bias`));
    bb(`${h}.output.dense.weight`, [C, F], off(`${b}.mlp.fc2.weight`));
    bb(`${h}.output.dense.bias`, [C], off(`${b}.mlp.fc2.bias`));
    bb(`${h}.output.LayerNorm.weight`, [C], off(`${b}.ln2.weight`));
    bb(`${h}.output.LayerNorm.bias`, [C], off(`${b}.ln2.bias`));
  }
  slots.push({ name: "read_out.weight", backbone: false, shape: [1, C], offset: off("readout.weight") });
  slots.push({ name: "read_out.bias", backbone: false, shape: [1], offset: off("readout.bias") });
  return slots;
}

export function saveCheckpoint(file: string, cfg: ModelConfig, params: Float32Array, meta: Record<string, string>): void {
  cfg = checkConfig(file, cfg);
  if (params.length !== paramCount(cfg)) fail(file, `params has ${params.length} values, the config needs ${paramCount(cfg)}`);
  for (const k of Object.keys(meta)) if (RESERVED.has(k)) fail(file, `metadata key "${k}" is reserved`);
  const tensors: [string, TensorIn][] = [];
  for (const s of pytorchLayout(cfg)) {
    const size = s.shape.reduce((a, b) => a * b, 1);
    tensors.push([(s.backbone ? BACKBONE : "") + s.name, { dtype: "F32", shape: s.shape, data: params.subarray(s.offset, s.offset + size) }]);
  }
  writeSafetensors(file, tensors, { ...meta, [CONFIG_KEY]: JSON.stringify(cfg), format: "pt" });
}

export interface LoadedCheckpoint {
  cfg: ModelConfig;
  params: Float32Array;
  /** the file's metadata less "abrupt.config" and "format" */
  meta: Record<string, string>;
}

/**
 * Load a checkpoint written by saveCheckpoint or by the paper's code
 * ("_backbone." names; a bare BertModel state dict with "read_out.*" also
 * works). Without "abrupt.config" metadata the config is inferred from the
 * shapes, with H = opts.heads (default 8) and lnEps 1e-12.
 */
export function loadCheckpoint(file: string, opts: { heads?: number } = {}): LoadedCheckpoint {
  const st = readSafetensors(file);
  const has = (n: string) => st.tensors.has(n);
  const prefix = has(BACKBONE + "embeddings.word_embeddings.weight") ? BACKBONE
    : has("embeddings.word_embeddings.weight") ? ""
    : fail(file, `missing tensor "${BACKBONE}embeddings.word_embeddings.weight"`);

  let cfg: ModelConfig;
  const cfgText = st.meta[CONFIG_KEY];
  if (cfgText !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(cfgText);
    } catch {
      fail(file, `metadata "${CONFIG_KEY}" is not JSON`);
    }
    cfg = checkConfig(file, parsed);
    if (opts.heads !== undefined && opts.heads !== cfg.H) fail(file, `heads ${opts.heads} requested, the checkpoint's config has H=${cfg.H}`);
  } else {
    cfg = inferConfig(st, prefix, opts.heads ?? 8);
  }

  // Names under the model's namespaces must all be expected; anything else in the file is not ours to judge.
  const slots = pytorchLayout(cfg);
  const fullName = (s: PytorchSlot) => (s.backbone ? prefix : "") + s.name;
  const expected = new Set(slots.map(fullName));
  expected.add(prefix + TOKEN_TYPE);
  const ignored = [`${prefix}embeddings.position_ids`, `${prefix}embeddings.token_type_ids`];
  for (const name of st.tensors.keys()) {
    const ours = name.startsWith(prefix + "embeddings.") || name.startsWith(prefix + "encoder.") || name.startsWith("read_out.");
    if (ours && !expected.has(name) && !ignored.includes(name)) {
      fail(file, `unexpected tensor "${name}" for config ${JSON.stringify(cfg)}`);
    }
  }

  const tensor = (name: string, shape: number[]) => {
    const t = st.tensors.get(name);
    if (!t) fail(file, `missing tensor "${name}" (expected shape ${shapeText(shape)})`);
    if (!sameShape(t.shape, shape)) fail(file, `tensor "${name}": expected shape ${shapeText(shape)}, found ${shapeText(t.shape)}`);
    return getFloat32(st, name);
  };
  const params = new Float32Array(paramCount(cfg));
  for (const s of slots) params.set(tensor(fullName(s), s.shape), s.offset);

  // Fold token_type_embeddings[0] into every position row. Zero elements are
  // skipped so that -0 stays -0. The paper's checkpoints have no such table.
  const ttName = prefix + TOKEN_TYPE;
  const ttT = st.tensors.get(ttName);
  if (ttT && (ttT.shape.length !== 2 || ttT.shape[0]! < 1 || ttT.shape[1] !== cfg.d)) {
    fail(file, `tensor "${ttName}": expected shape [2,${cfg.d}], found ${shapeText(ttT.shape)}`);
  }
  if (ttT) {
    const tt = getFloat32(st, ttName); // row 0 is the one HF uses
    const posOffset = slots.find((s) => s.name === "embeddings.position_embeddings.weight")!.offset;
    for (let p = 0; p < cfg.positions; p++) {
      for (let c = 0; c < cfg.d; c++) if (tt[c] !== 0) params[posOffset + p * cfg.d + c] += tt[c]!;
    }
  }

  const meta = Object.fromEntries(Object.entries(st.meta).filter(([k]) => !RESERVED.has(k)));
  return { cfg, params, meta };
}

function inferConfig(st: StFile, prefix: string, heads: number): ModelConfig {
  const shapeOf = (name: string, what: string): readonly number[] => {
    const t = st.tensors.get(prefix + name);
    if (!t) fail(st.file, `missing tensor "${prefix}${name}" (needed to infer the config)`);
    if (t.shape.length !== 2) fail(st.file, `tensor "${prefix}${name}": expected shape ${what}, found ${shapeText(t.shape)}`);
    return t.shape;
  };
  const [vocab, d] = shapeOf("embeddings.word_embeddings.weight", "[vocab,d]") as [number, number];
  const [positions] = shapeOf("embeddings.position_embeddings.weight", "[positions,d]") as [number];
  const layerRe = new RegExp(`^${prefix.replace(/\./g, "\\.")}encoder\\.layer\\.(\\d+)\\.`);
  let L = 0;
  for (const name of st.tensors.keys()) {
    const m = layerRe.exec(name);
    if (m) L = Math.max(L, Number(m[1]) + 1);
  }
  if (L === 0) fail(st.file, `no encoder layers (no tensor named "${prefix}encoder.layer.0.*")`);
  const [ff] = shapeOf("encoder.layer.0.intermediate.dense.weight", "[ff,d]") as [number];
  if (!Number.isInteger(heads) || heads <= 0 || d % heads !== 0) fail(st.file, `heads ${heads} does not divide d=${d}`);
  return checkConfig(st.file, { vocab, positions, L, H: heads, d, ff, lnEps: 1e-12 });
}

// ---------------------------------------------------------------- Adam state

/** Adam moments in our flat order, the step count, and caller metadata (the PRNG state, e.g. under "rng"). */
export function saveOptimizerState(file: string, m: Float32Array, v: Float32Array, step: number, meta: Record<string, string>): void {
  if (m.length !== v.length) fail(file, `adam.m has ${m.length} values, adam.v ${v.length}`);
  if (!Number.isSafeInteger(step) || step < 0) fail(file, `step ${step} is not a non-negative integer`);
  if (STEP_KEY in meta) fail(file, `metadata key "${STEP_KEY}" is reserved`);
  writeSafetensors(
    file,
    [["adam.m", { dtype: "F32", shape: [m.length], data: m }], ["adam.v", { dtype: "F32", shape: [v.length], data: v }]],
    { ...meta, [STEP_KEY]: String(step) },
  );
}

export interface OptimizerState {
  m: Float32Array;
  v: Float32Array;
  step: number;
  /** the file's metadata less "adam.step" */
  meta: Record<string, string>;
}

export function loadOptimizerState(file: string, expectedSize: number): OptimizerState {
  const st = readSafetensors(file);
  const moment = (name: string) => {
    const t = st.tensors.get(name);
    if (!t) fail(file, `missing tensor "${name}" (expected F32 [${expectedSize}])`);
    if (t.dtype !== "F32" || !sameShape(t.shape, [expectedSize])) {
      fail(file, `tensor "${name}": expected F32 [${expectedSize}], found ${t.dtype} ${shapeText(t.shape)}`);
    }
    return getFloat32(st, name);
  };
  const m = moment("adam.m");
  const v = moment("adam.v");
  const stepText = st.meta[STEP_KEY];
  if (stepText === undefined || !/^\d+$/.test(stepText) || !Number.isSafeInteger(Number(stepText))) {
    fail(file, `metadata "${STEP_KEY}" is ${stepText === undefined ? "missing" : JSON.stringify(stepText) + ", not a step count"}`);
  }
  const meta = Object.fromEntries(Object.entries(st.meta).filter(([k]) => k !== STEP_KEY));
  return { m, v, step: Number(stepText), meta };
}
