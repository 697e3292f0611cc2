// GPT checkpoints: safetensors in minGPT's state_dict names (SPEC §2), so a
// file we write loads into minGPT with load_state_dict(strict=True) and a
// converted minGPT checkpoint loads here. Our flat layout (gptParamSpecs)
// already uses those names and shapes; the file adds minGPT's causal-mask
// buffers transformer.h.{l}.attn.bias [1,1,block,block] (ones on and below
// the diagonal), which strict loading requires and which we ignore on load.
// The metadata holds our config under "abrupt.config" (attn included).
//
// A file without that metadata (a converted minGPT checkpoint) is recognised
// by its tensor names; its config comes from the shapes, with the heads and
// the attention kind given by the caller (default 2 heads, as SPEC's GPT,
// and softmax attention) and LayerNorm eps 1e-5.

import { closeSync, openSync, readSync } from "node:fs";
import { z } from "zod";
import { AbruptError } from "../errors.js";
import { type GptConfig, gptParamCount, gptParamSpecs, validateGptConfig } from "../model/gpt.js";
import { type StFile, type TensorIn, getFloat32, readSafetensors, writeSafetensors } from "./safetensors.js";

const CONFIG_KEY = "abrupt.config";
const FAMILY_KEY = "abrupt.family";
const RESERVED = new Set([CONFIG_KEY, FAMILY_KEY, "format"]);
const WTE = "transformer.wte.weight";

const posInt = z.number().int().positive();
const GptConfigSchema = z.strictObject({
  vocab: posInt, block: posInt, L: posInt, H: posInt, d: posInt, ff: posInt,
  lnEps: z.number().positive(), attn: z.enum(["softmax", "linear"]),
}).refine((c) => c.d % c.H === 0, { message: "H must divide d" });

function fail(file: string, problem: string): never {
  throw new AbruptError(`${file}: ${problem}`);
}

const shapeText = (s: readonly number[]) => `[${s.join(",")}]`;
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * "gpt" for a safetensors file with minGPT's tensor names
 * (transformer.wte.weight), else "bert" (also for a file that cannot be read
 * or parsed, so that the BERT loader reports what is wrong with it). Reads
 * only the header.
 */
export function checkpointFamily(file: string): "bert" | "gpt" {
  let fd: number | null = null;
  try {
    fd = openSync(file, "r");
    const len = Buffer.alloc(8);
    if (readSync(fd, len, 0, 8, 0) !== 8) return "bert";
    const n = len.readBigUInt64LE(0);
    if (n > 100n * 1024n * 1024n) return "bert";
    const header = Buffer.alloc(Number(n));
    if (readSync(fd, header, 0, header.length, 8) !== header.length) return "bert";
    const h = JSON.parse(header.toString("utf8")) as unknown;
    return typeof h === "object" && h !== null && Object.prototype.hasOwnProperty.call(h, WTE) ? "gpt" : "bert";
  } catch {
    return "bert";
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

function familyOf(st: StFile): "bert" | "gpt" {
  return st.tensors.has(WTE) ? "gpt" : "bert";
}

const maskBufferName = (l: number) => `transformer.h.${l}.attn.bias`;

export function saveGptCheckpoint(file: string, cfg: GptConfig, params: Float32Array, meta: Record<string, string>): void {
  const parsed = GptConfigSchema.safeParse(cfg);
  if (!parsed.success) fail(file, `bad GPT config ${JSON.stringify(cfg)}: ${parsed.error.issues[0]!.message}`);
  if (params.length !== gptParamCount(cfg)) fail(file, `params has ${params.length} values, the config needs ${gptParamCount(cfg)}`);
  for (const k of Object.keys(meta)) if (RESERVED.has(k)) fail(file, `metadata key "${k}" is reserved`);
  const tensors: [string, TensorIn][] = gptParamSpecs(cfg).map((s) => [s.name, { dtype: "F32", shape: s.shape, data: params.subarray(s.offset, s.offset + s.size) }]);
  const P = cfg.block;
  const tril = new Float32Array(P * P);
  for (let i = 0; i < P; i++) tril.fill(1, i * P, i * P + i + 1);
  for (let l = 0; l < cfg.L; l++) tensors.push([maskBufferName(l), { dtype: "F32", shape: [1, 1, P, P], data: tril }]);
  writeSafetensors(file, tensors, { ...meta, [CONFIG_KEY]: JSON.stringify(cfg), [FAMILY_KEY]: "gpt", format: "pt" });
}

export interface LoadedGptCheckpoint {
  cfg: GptConfig;
  params: Float32Array;
  /** the file's metadata less our reserved keys */
  meta: Record<string, string>;
}

/**
 * Loads a checkpoint written by saveGptCheckpoint or converted from minGPT.
 * opts.heads and opts.attn set what a file without our config cannot tell
 * (defaults 2 and "softmax"); with our config they must agree with it.
 * A missing or misshapen tensor is an error naming it, as is an unexpected
 * tensor under transformer.* or lm_head.*; other tensors are ignored.
 */
export function loadGptCheckpoint(file: string, opts: { heads?: number; attn?: GptConfig["attn"] } = {}): LoadedGptCheckpoint {
  const st = readSafetensors(file);
  if (familyOf(st) !== "gpt") fail(file, `missing tensor "${WTE}" (not a GPT checkpoint)`);
  let cfg: GptConfig;
  const text = st.meta[CONFIG_KEY];
  if (text !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      fail(file, `metadata "${CONFIG_KEY}" is not JSON`);
    }
    const r = GptConfigSchema.safeParse(raw);
    if (!r.success) {
      const i = r.error.issues[0]!;
      fail(file, `bad GPT config ${text}: ${i.path.length ? i.path.join(".") + ": " : ""}${i.message}`);
    }
    cfg = r.data;
    if (opts.heads !== undefined && opts.heads !== cfg.H) fail(file, `heads ${opts.heads} requested, the checkpoint's config has H=${cfg.H}`);
    if (opts.attn !== undefined && opts.attn !== cfg.attn) fail(file, `attention "${opts.attn}" requested, the checkpoint's config has "${cfg.attn}"`);
  } else {
    cfg = inferGptConfig(st, opts.heads ?? 2, opts.attn ?? "softmax");
  }

  const specs = gptParamSpecs(cfg);
  const expected = new Set(specs.map((s) => s.name));
  for (let l = 0; l < cfg.L; l++) expected.add(maskBufferName(l));
  for (const name of st.tensors.keys()) {
    if ((name.startsWith("transformer.") || name.startsWith("lm_head.")) && !expected.has(name)) {
      fail(file, `unexpected tensor "${name}" for GPT config ${JSON.stringify(cfg)}`);
    }
  }
  const params = new Float32Array(gptParamCount(cfg));
  for (const s of specs) {
    const t = st.tensors.get(s.name);
    if (!t) fail(file, `missing tensor "${s.name}" (expected shape ${shapeText(s.shape)})`);
    if (!sameShape(t.shape, s.shape)) fail(file, `tensor "${s.name}": expected shape ${shapeText(s.shape)}, found ${shapeText(t.shape)}`);
    params.set(getFloat32(st, s.name), s.offset);
  }
  const meta = Object.fromEntries(Object.entries(st.meta).filter(([k]) => !RESERVED.has(k)));
  return { cfg, params, meta };
}

function inferGptConfig(st: StFile, heads: number, attn: GptConfig["attn"]): GptConfig {
  const shapeOf = (name: string, want: string, rank: number): readonly number[] => {
    const t = st.tensors.get(name);
    if (!t) fail(st.file, `missing tensor "${name}" (needed to infer the config)`);
    if (t.shape.length !== rank) fail(st.file, `tensor "${name}": expected shape ${want}, found ${shapeText(t.shape)}`);
    return t.shape;
  };
  const [vocab, d] = shapeOf(WTE, "[vocab,d]", 2) as [number, number];
  const [block] = shapeOf("transformer.wpe.weight", "[block,d]", 2) as [number];
  let L = 0;
  for (const name of st.tensors.keys()) {
    const m = /^transformer\.h\.(\d+)\./.exec(name);
    if (m) L = Math.max(L, Number(m[1]) + 1);
  }
  if (L === 0) fail(st.file, `no blocks (no tensor named "transformer.h.0.*")`);
  const [ff] = shapeOf("transformer.h.0.mlp.c_fc.weight", "[ff,d]", 2) as [number];
  if (!Number.isInteger(heads) || heads <= 0 || d % heads !== 0) fail(st.file, `heads ${heads} does not divide d=${d}`);
  const cfg: GptConfig = { vocab, block, L, H: heads, d, ff, lnEps: 1e-5, attn };
  try {
    validateGptConfig(cfg);
  } catch (e) {
    fail(st.file, (e as Error).message);
  }
  return cfg;
}
