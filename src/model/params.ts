// Parameter layout of the BERT of SPEC §2: one flat Float32Array with named
// views. The order is chosen so that query, key and value of a layer are
// adjacent (one [3C, C] product) and each freezable group is contiguous.

import { z } from "zod";

const posInt = z.number().int().positive();

/**
 * The model's shape: the one schema of it, for run configs (config.json,
 * presets, flags; src/train/config.ts) and checkpoint metadata
 * (src/store/checkpoint.ts, which also asks for L ≥ 1).
 */
export const ModelConfigSchema = z.object({
  /** layers */
  L: z.number().int().min(0),
  /** heads */
  H: posInt,
  /** width */
  d: posInt,
  /** feed-forward width */
  ff: posInt,
  /** rows of the position table (>= m*n; HF default 512) */
  positions: posInt,
  /** vocabulary size (2002 for the default tokenisation) */
  vocab: posInt,
  /** LayerNorm epsilon (HF BERT: 1e-12) */
  lnEps: z.number().positive(),
  /** the GPT's attention (src/family/gpt.ts): causal softmax or the reference's linear variant; the BERT has none */
  attn: z.enum(["softmax", "linear"]).optional(),
}).strict();

export type ModelConfig = z.infer<typeof ModelConfigSchema>;

export interface TensorSpec {
  /** our name, e.g. "blocks.0.attn.qkv.weight" */
  name: string;
  shape: number[];
  offset: number;
  size: number;
  /** parameter group used for freezing, e.g. "tok_emb", "blocks.0.attn" */
  group: string;
}

export interface LayerViews<Buf = Float32Array> {
  qkvW: Buf; // [3C, C]  (query; key; value)
  qkvB: Buf; // [3C]
  projW: Buf; // [C, C]
  projB: Buf; // [C]
  ln1W: Buf; // [C]
  ln1B: Buf; // [C]
  fc1W: Buf; // [F, C]
  fc1B: Buf; // [F]
  fc2W: Buf; // [C, F]
  fc2B: Buf; // [C]
  ln2W: Buf; // [C]
  ln2B: Buf; // [C]
}

export interface ParamViews<Buf = Float32Array> {
  wte: Buf; // [V, C]
  wpe: Buf; // [P, C]
  embLnW: Buf; // [C] the embedding LayerNorm
  embLnB: Buf; // [C]
  layers: LayerViews<Buf>[];
  outW: Buf; // [1, C]
  outB: Buf; // [1]
}

/** The ordered list of parameter tensors for a config. */
export function paramSpecs(cfg: ModelConfig): TensorSpec[] {
  const { vocab: V, positions: P, d: C, ff: F, L } = cfg;
  const specs: TensorSpec[] = [];
  let offset = 0;
  const push = (name: string, shape: number[], group: string) => {
    const size = shape.reduce((a, b) => a * b, 1);
    specs.push({ name, shape, offset, size, group });
    offset += size;
  };
  push("embed.tok.weight", [V, C], "tok_emb");
  push("embed.pos.weight", [P, C], "pos_emb");
  push("embed.ln.weight", [C], "emb_ln");
  push("embed.ln.bias", [C], "emb_ln");
  for (let l = 0; l < L; l++) {
    const b = `blocks.${l}`;
    push(`${b}.attn.qkv.weight`, [3 * C, C], `${b}.attn`);
    push(`${b}.attn.qkv.bias`, [3 * C], `${b}.attn`);
    push(`${b}.attn.proj.weight`, [C, C], `${b}.attn`);
    push(`${b}.attn.proj.bias`, [C], `${b}.attn`);
    push(`${b}.ln1.weight`, [C], `${b}.ln1`);
    push(`${b}.ln1.bias`, [C], `${b}.ln1`);
    push(`${b}.mlp.fc1.weight`, [F, C], `${b}.mlp`);
    push(`${b}.mlp.fc1.bias`, [F], `${b}.mlp`);
    push(`${b}.mlp.fc2.weight`, [C, F], `${b}.mlp`);
    push(`${b}.mlp.fc2.bias`, [C], `${b}.mlp`);
    push(`${b}.ln2.weight`, [C], `${b}.ln2`);
    push(`${b}.ln2.bias`, [C], `${b}.ln2`);
  }
  push("readout.weight", [1, C], "readout");
  push("readout.bias", [1], "readout");
  return specs;
}

export function paramCount(cfg: ModelConfig): number {
  const specs = paramSpecs(cfg);
  const last = specs[specs.length - 1]!;
  return last.offset + last.size;
}

/**
 * Named views into a flat array laid out by paramSpecs (params or grads
 * alike): a Float32Array, or any tensor given a function that makes views.
 */
export function paramViews(cfg: ModelConfig, flat: Float32Array): ParamViews;
export function paramViews<Buf>(cfg: ModelConfig, view: (offset: number, size: number) => Buf): ParamViews<Buf>;
export function paramViews<Buf>(cfg: ModelConfig, flat: Float32Array | ((offset: number, size: number) => Buf)): ParamViews<Buf | Float32Array> {
  const specs = paramSpecs(cfg);
  const by = new Map(specs.map((s) => [s.name, s]));
  const v = (name: string) => {
    const s = by.get(name)!;
    return typeof flat === "function" ? flat(s.offset, s.size) : flat.subarray(s.offset, s.offset + s.size);
  };
  const layers: LayerViews<Buf | Float32Array>[] = [];
  for (let l = 0; l < cfg.L; l++) {
    const b = `blocks.${l}`;
    layers.push({
      qkvW: v(`${b}.attn.qkv.weight`), qkvB: v(`${b}.attn.qkv.bias`),
      projW: v(`${b}.attn.proj.weight`), projB: v(`${b}.attn.proj.bias`),
      ln1W: v(`${b}.ln1.weight`), ln1B: v(`${b}.ln1.bias`),
      fc1W: v(`${b}.mlp.fc1.weight`), fc1B: v(`${b}.mlp.fc1.bias`),
      fc2W: v(`${b}.mlp.fc2.weight`), fc2B: v(`${b}.mlp.fc2.bias`),
      ln2W: v(`${b}.ln2.weight`), ln2B: v(`${b}.ln2.bias`),
    });
  }
  return {
    wte: v("embed.tok.weight"), wpe: v("embed.pos.weight"),
    embLnW: v("embed.ln.weight"), embLnB: v("embed.ln.bias"),
    layers,
    outW: v("readout.weight"), outB: v("readout.bias"),
  };
}

/** The embedding groups under the prefix of their tensors' names (embed.tok.weight …). */
const TENSOR_PREFIX_GROUPS: Record<string, string> = { "embed.tok": "tok_emb", "embed.pos": "pos_emb", "embed.ln": "emb_ln" };

/**
 * Names of the freezable parameter groups. Besides the exact group names
 * ("tok_emb", "pos_emb", "emb_ln", "blocks.{l}.attn", "blocks.{l}.ln1",
 * "blocks.{l}.mlp", "blocks.{l}.ln2", "readout"), these aliases select
 * across layers: "attn", "mlp", "ln" (all layernorms incl. embedding LN),
 * "blocks.{l}" (a whole layer), "embeddings" (tok_emb + pos_emb + emb_ln);
 * and the tensor-name prefixes "embed.tok", "embed.pos", "embed.ln" are the
 * same groups as tok_emb, pos_emb, emb_ln.
 */
export function groupMatches(group: string, selector: string): boolean {
  selector = TENSOR_PREFIX_GROUPS[selector] ?? selector;
  if (group === selector) return true;
  if (selector === "attn") return /^blocks\.\d+\.attn$/.test(group);
  if (selector === "mlp") return /^blocks\.\d+\.mlp$/.test(group);
  if (selector === "ln") return group === "emb_ln" || /^blocks\.\d+\.ln[12]$/.test(group);
  if (selector === "embeddings") return group === "tok_emb" || group === "pos_emb" || group === "emb_ln";
  if (/^blocks\.\d+$/.test(selector)) return group.startsWith(selector + ".");
  return false;
}

export function groupNames(cfg: ModelConfig): string[] {
  return [...new Set(paramSpecs(cfg).map((s) => s.group))];
}

export function isValidGroupSelector(cfg: ModelConfig, selector: string): boolean {
  return groupNames(cfg).some((g) => groupMatches(g, selector));
}
