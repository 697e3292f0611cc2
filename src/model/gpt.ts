// The GPT variant of SPEC §2 (the reference's minGPT), forward and backward
// side by side, llm.c style:
//
//   x = wte[tok] + wpe[pos]                                   embed.out
//   per layer l (pre-LN), x = blocks.l.resid_pre:
//     u   = ln_1(x)                                           blocks.l.ln1.out
//     qkv = u Wc_attnᵀ + b                                    blocks.l.attn.qkv
//     A   = causal softmax(q kᵀ / √hs) per head               blocks.l.attn.pattern
//           (attn "linear": q kᵀ / √hs below the diagonal, no softmax)
//     z   = A v (heads concatenated)                          blocks.l.attn.z
//     a   = z Wc_projᵀ + b                                    blocks.l.attn.out
//     x   = x + a                                             blocks.l.resid_mid
//     w   = ln_2(x)                                           blocks.l.ln2.out
//     h   = gelu_tanh(w Wc_fcᵀ + b)                           blocks.l.mlp.pre / .post
//     f   = h Wc_projᵀ + b                                    blocks.l.mlp.out
//     x   = x + f                                             blocks.l.resid_post
//   y = ln_f(x)                                               ln_f.out
//   logits = y Wlm_headᵀ (no bias)                            logits
//
// LayerNorm eps 1e-5, no dropout. The loss is next-token cross-entropy
// (`loss`); generation is greedy (`generate`). Hooks (one hook table,
// `gptHookTable`, as in bert.ts; src/model/hooks.ts), freezing and the
// backend-generic tensors work as in bert.ts: a trainer calls init, forward,
// loss, backward, zeroGrad and the Adam kernel over `params`/`grads` the same
// way; the parameter layout (`gptParamSpecs`) uses minGPT's tensor names, so
// a checkpoint is the flat array cut at the specs' offsets.

import { Rng } from "../data/rng.js";
import { GPT_VOCAB } from "../data/sequence.js";
import { AbruptError } from "../errors.js";
import type { AttentionKind, Kernels } from "../kernels/types.js";
import { type TensorSpec, groupMatches } from "./params.js";
import { HookTable, drive, driveAsync } from "./hooks.js";
import { ModelBase } from "./base.js";

export interface GptConfig {
  /** vocabulary (405: MASK, 401 values, 2 unused, SEP) */
  vocab: number;
  /** block size: rows of the position table, the longest sequence (99) */
  block: number;
  L: number;
  H: number;
  d: number;
  /** MLP width (4d in minGPT) */
  ff: number;
  /** LayerNorm epsilon (torch default 1e-5) */
  lnEps: number;
  /** causal softmax attention, or the reference's linear variant */
  attn: AttentionKind;
}

/** SPEC §2's GPT: L2 H2 d256 ff 4d, vocab 405, block 99 (7×7 matrices). */
export const GPT_DEFAULT: GptConfig = { vocab: GPT_VOCAB, block: 99, L: 2, H: 2, d: 256, ff: 1024, lnEps: 1e-5, attn: "softmax" };

export const GPT_INIT_STD = 0.02;

// ------------------------------------------------------------ parameter layout

interface GptLayerViews<Buf> {
  ln1W: Buf; ln1B: Buf; // [C]
  qkvW: Buf; qkvB: Buf; // [3C, C], [3C]  (q; k; v)
  projW: Buf; projB: Buf; // [C, C], [C]
  ln2W: Buf; ln2B: Buf; // [C]
  fcW: Buf; fcB: Buf; // [F, C], [F]
  fcProjW: Buf; fcProjB: Buf; // [C, F], [C]
}

export interface GptViews<Buf> {
  wte: Buf; // [V, C]
  wpe: Buf; // [block, C]
  layers: GptLayerViews<Buf>[];
  lnfW: Buf; lnfB: Buf; // [C]
  lmW: Buf; // [V, C]
}

/**
 * The parameters in minGPT's state_dict order and names (PyTorch shapes,
 * [out, in] for linear weights). Groups for freezing: tok_emb, pos_emb,
 * blocks.{l}.ln1, blocks.{l}.attn, blocks.{l}.ln2, blocks.{l}.mlp, ln_f, lm_head.
 */
export function gptParamSpecs(cfg: GptConfig): TensorSpec[] {
  const { vocab: V, block: P, d: C, ff: F, L } = cfg;
  const specs: TensorSpec[] = [];
  let offset = 0;
  const push = (name: string, shape: number[], group: string) => {
    const size = shape.reduce((a, b) => a * b, 1);
    specs.push({ name, shape, offset, size, group });
    offset += size;
  };
  push("transformer.wte.weight", [V, C], "tok_emb");
  push("transformer.wpe.weight", [P, C], "pos_emb");
  for (let l = 0; l < L; l++) {
    const h = `transformer.h.${l}`, g = `blocks.${l}`;
    push(`${h}.ln_1.weight`, [C], `${g}.ln1`);
    push(`${h}.ln_1.bias`, [C], `${g}.ln1`);
    push(`${h}.attn.c_attn.weight`, [3 * C, C], `${g}.attn`);
    push(`${h}.attn.c_attn.bias`, [3 * C], `${g}.attn`);
    push(`${h}.attn.c_proj.weight`, [C, C], `${g}.attn`);
    push(`${h}.attn.c_proj.bias`, [C], `${g}.attn`);
    push(`${h}.ln_2.weight`, [C], `${g}.ln2`);
    push(`${h}.ln_2.bias`, [C], `${g}.ln2`);
    push(`${h}.mlp.c_fc.weight`, [F, C], `${g}.mlp`);
    push(`${h}.mlp.c_fc.bias`, [F], `${g}.mlp`);
    push(`${h}.mlp.c_proj.weight`, [C, F], `${g}.mlp`);
    push(`${h}.mlp.c_proj.bias`, [C], `${g}.mlp`);
  }
  push("transformer.ln_f.weight", [C], "ln_f");
  push("transformer.ln_f.bias", [C], "ln_f");
  push("lm_head.weight", [V, C], "lm_head");
  return specs;
}

export function gptParamCount(cfg: GptConfig): number {
  const s = gptParamSpecs(cfg);
  return s[s.length - 1]!.offset + s[s.length - 1]!.size;
}

function gptViews<Buf>(cfg: GptConfig, view: (offset: number, size: number) => Buf): GptViews<Buf> {
  const by = new Map(gptParamSpecs(cfg).map((s) => [s.name, s]));
  const v = (name: string) => {
    const s = by.get(name)!;
    return view(s.offset, s.size);
  };
  const layers: GptLayerViews<Buf>[] = [];
  for (let l = 0; l < cfg.L; l++) {
    const h = `transformer.h.${l}`;
    layers.push({
      ln1W: v(`${h}.ln_1.weight`), ln1B: v(`${h}.ln_1.bias`),
      qkvW: v(`${h}.attn.c_attn.weight`), qkvB: v(`${h}.attn.c_attn.bias`),
      projW: v(`${h}.attn.c_proj.weight`), projB: v(`${h}.attn.c_proj.bias`),
      ln2W: v(`${h}.ln_2.weight`), ln2B: v(`${h}.ln_2.bias`),
      fcW: v(`${h}.mlp.c_fc.weight`), fcB: v(`${h}.mlp.c_fc.bias`),
      fcProjW: v(`${h}.mlp.c_proj.weight`), fcProjB: v(`${h}.mlp.c_proj.bias`),
    });
  }
  return {
    wte: v("transformer.wte.weight"), wpe: v("transformer.wpe.weight"), layers,
    lnfW: v("transformer.ln_f.weight"), lnfB: v("transformer.ln_f.bias"), lmW: v("lm_head.weight"),
  };
}

/** minGPT's names of the embedding groups (transformer.wte, transformer.wpe) */
const MINGPT_GROUPS: Record<string, string> = { wte: "tok_emb", wpe: "pos_emb" };

/**
 * Group selectors as for the BERT (params.ts groupMatches: exact names, attn,
 * mlp, embeddings, blocks.N), with "ln" covering ln_1, ln_2 and ln_f, and
 * minGPT's wte and wpe naming tok_emb and pos_emb.
 */
export function gptGroupMatches(group: string, selector: string): boolean {
  if (selector === "ln" && group === "ln_f") return true;
  return groupMatches(group, MINGPT_GROUPS[selector] ?? selector);
}

export function gptGroupNames(cfg: GptConfig): string[] {
  return [...new Set(gptParamSpecs(cfg).map((s) => s.group))];
}

export function validateGptConfig(cfg: GptConfig): void {
  const int = (x: number) => Number.isInteger(x) && x > 0;
  for (const k of ["vocab", "block", "L", "H", "d", "ff"] as const) {
    if (!int(cfg[k])) throw new AbruptError(`GPT config: ${k} must be a positive integer (got ${cfg[k]})`);
  }
  if (cfg.d % cfg.H !== 0) throw new AbruptError(`heads (${cfg.H}) must divide the width d (${cfg.d})`);
  if (!(cfg.lnEps > 0)) throw new AbruptError(`GPT config: lnEps must be positive (got ${cfg.lnEps})`);
  if (cfg.attn !== "softmax" && cfg.attn !== "linear") throw new AbruptError(`GPT config: attn must be "softmax" or "linear" (got ${String(cfg.attn)})`);
}

// ------------------------------------------------------------------ the model

interface LayerActs<Buf> {
  ln1: Buf; ln1Mean: Buf; ln1Rstd: Buf; // [N, C], [N], [N]
  qkv: Buf; // [N, 3C]
  att: Buf; // [B, H, T, T]
  z: Buf; // [N, C]
  attnOut: Buf; // [N, C]
  residMid: Buf; // [N, C]
  ln2: Buf; ln2Mean: Buf; ln2Rstd: Buf;
  pre: Buf; post: Buf; // [N, F]
  mlpOut: Buf; // [N, C]
  residPost: Buf; // [N, C]
}

interface Acts<Buf> {
  B: number;
  T: number;
  tokens: Int32Array; // [B, T]
  embOut: Buf; // [N, C]
  layers: LayerActs<Buf>[];
  lnf: Buf; lnfMean: Buf; lnfRstd: Buf; // [N, C], [N], [N]
  logits: Buf; // [N, V]
  // the loss and its gradient
  dlogits: Buf; // [N, V]
  rowLoss: Buf; // [N]
  loss: Buf; // [1]
}

interface Grads<Buf> {
  key: string;
  dx: Buf; dln: Buf; dres: Buf; dz: Buf; // [N, C]
  dh: Buf; // [N, F]
  dqkv: Buf; // [N, 3C]
  datt: Buf; // [B, H, T, T]
}

/** The activations a hook can read or replace, in forward order (see the header). */
function gptHookTable<Buf>(cfg: GptConfig): HookTable<Acts<Buf>, Buf> {
  const { d: C, ff: F, H, vocab: V } = cfg;
  const btc = (B: number, T: number) => [B, T, C];
  const btf = (B: number, T: number) => [B, T, F];
  const la = (a: Acts<Buf>, l: number) => a.layers[l]!;
  return new HookTable<Acts<Buf>, Buf>(
    [{ name: "embed.out", buf: (a) => a.embOut, shape: btc }],
    [
      { name: "resid_pre", buf: (a, l) => (l > 0 ? la(a, l - 1).residPost : a.embOut), shape: btc },
      { name: "ln1.out", buf: (a, l) => la(a, l).ln1, shape: btc },
      { name: "attn.qkv", buf: (a, l) => la(a, l).qkv, shape: (B, T) => [B, T, 3 * C] },
      { name: "attn.pattern", buf: (a, l) => la(a, l).att, shape: (B, T) => [B, H, T, T] },
      { name: "attn.z", buf: (a, l) => la(a, l).z, shape: btc },
      { name: "attn.out", buf: (a, l) => la(a, l).attnOut, shape: btc },
      { name: "resid_mid", buf: (a, l) => la(a, l).residMid, shape: btc },
      { name: "ln2.out", buf: (a, l) => la(a, l).ln2, shape: btc },
      { name: "mlp.pre", buf: (a, l) => la(a, l).pre, shape: btf },
      { name: "mlp.post", buf: (a, l) => la(a, l).post, shape: btf },
      { name: "mlp.out", buf: (a, l) => la(a, l).mlpOut, shape: btc },
      { name: "resid_post", buf: (a, l) => la(a, l).residPost, shape: btc },
    ],
    cfg.L,
    [
      { name: "ln_f.out", buf: (a) => a.lnf, shape: btc },
      { name: "logits", buf: (a) => a.logits, shape: (B, T) => [B, T, V] },
    ],
  );
}

/** The loss of the last forward pass (tensors of the model's backend, valid until the next forward of that shape). */
export interface GptLoss<Buf> {
  /** [1]: the mean over the counted positions */
  mean: Buf;
  /** [B, T]: each position's -log p(target), 0 where the target is -1 */
  rowLoss: Buf;
  /** [B, T, V]: d mean / d logits (for backward), or null when not asked for */
  dlogits: Buf | null;
  /** the mean as a number on host backends, NaN on webgpu (download `mean`) */
  value: number;
}

export class Gpt<Buf = Float32Array> extends ModelBase<Acts<Buf>, Buf> {
  readonly cfg: GptConfig;
  /** named views of `params` (the layout, `specs`, has minGPT's names) */
  readonly paramViews: GptViews<Buf>;
  private readonly gradViews: GptViews<Buf>;

  private actsByShape = new Map<string, Acts<Buf>>();
  private gradBufs: Grads<Buf> | null = null;

  constructor(cfg: GptConfig, kernels: Kernels<Buf>) {
    validateGptConfig(cfg);
    super(kernels, gptParamSpecs(cfg), gptHookTable<Buf>(cfg), gptGroupMatches, "gptParamSpecs in src/model/gpt.ts");
    this.cfg = cfg;
    this.paramViews = gptViews(cfg, (o, s) => kernels.view(this.params, o, s));
    this.gradViews = gptViews(cfg, (o, s) => kernels.view(this.grads, o, s));
  }

  /**
   * minGPT's init: N(0, std) for every linear and embedding weight, and
   * N(0, std/√(2L)) for each c_proj.weight (GPT-2's scaled residual
   * projections); zero biases; LayerNorm weight 1, bias 0.
   */
  init(seed: number, std = GPT_INIT_STD): void {
    const rng = new Rng(seed);
    const params = new Float32Array(this.size);
    const projStd = std / Math.sqrt(2 * this.cfg.L);
    for (const s of this.specs) {
      const v = params.subarray(s.offset, s.offset + s.size);
      const isLn = /\.ln_[12f]\./.test(s.name);
      if (s.name.endsWith(".bias")) v.fill(0);
      else if (isLn) v.fill(1);
      else {
        const sd = s.name.endsWith("c_proj.weight") ? projStd : std;
        for (let i = 0; i < v.length; i++) v[i] = sd * rng.normal();
      }
    }
    this.kernels.upload(this.params, params);
  }

  // (hooks, parameter access and freezing: ModelBase, base.ts)

  /**
   * A new model on the same backend with a copy of this one's parameters and
   * frozen groups (no hooks): a variant to change (setParam, init) while this
   * one stays as it is.
   */
  clone(): Gpt<Buf> {
    const c = new Gpt(this.cfg, this.kernels);
    this.kernels.copy(c.params, this.params, this.size);
    c.frozen = new Set(this.frozen);
    return c;
  }

  // --------------------------------------------------------------- forward

  private allocActs(B: number, T: number): Acts<Buf> {
    const { d: C, ff: F, H, L, vocab: V } = this.cfg;
    const N = B * T;
    const f = (n: number) => this.kernels.alloc(n);
    const layers: LayerActs<Buf>[] = [];
    for (let l = 0; l < L; l++) {
      layers.push({
        ln1: f(N * C), ln1Mean: f(N), ln1Rstd: f(N), qkv: f(N * 3 * C), att: f(B * H * T * T),
        z: f(N * C), attnOut: f(N * C), residMid: f(N * C), ln2: f(N * C), ln2Mean: f(N), ln2Rstd: f(N),
        pre: f(N * F), post: f(N * F), mlpOut: f(N * C), residPost: f(N * C),
      });
    }
    return {
      B, T, tokens: new Int32Array(N), embOut: f(N * C), layers,
      lnf: f(N * C), lnfMean: f(N), lnfRstd: f(N), logits: f(N * V),
      dlogits: f(N * V), rowLoss: f(N), loss: f(1),
    };
  }

  /**
   * Runs the model on tokens [B,T] (T <= block); returns the logits
   * [B,T,V] (a view, valid until the next forward of this shape).
   * Synchronous; with hooks on a device backend use `run`.
   */
  forward(tokens: Int32Array, B: number, T: number): Buf {
    return drive(this.pass(tokens, B, T), this.hooks, this.kernels, () => this.acts!, B, T);
  }

  /** The forward pass on any backend with hooks; the logits stay on the backend. */
  private forwardAsync(tokens: Int32Array, B: number, T: number): Promise<Buf> {
    return driveAsync(this.pass(tokens, B, T), this.hooks, this.kernels, () => this.acts!, B, T);
  }

  /** As Bert.run: any backend, hooks included; returns a host copy of the logits [B,T,V]. */
  async run(tokens: Int32Array, B: number, T: number): Promise<Float32Array> {
    return this.hostCopy(await this.forwardAsync(tokens, B, T));
  }

  /** The forward pass, written once; yields the names of hooked activations (see Bert.pass). */
  private *pass(tokens: Int32Array, B: number, T: number): Generator<string, Buf, void> {
    const { d: C, ff: F, H, L, vocab: V, block, lnEps, attn } = this.cfg;
    if (T > block) throw new AbruptError(`sequence of ${T} tokens is longer than the model's block size ${block}`);
    if (tokens.length !== B * T) throw new Error(`forward: tokens has ${tokens.length} entries, expected ${B * T}`);
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (!(t >= 0 && t < V)) throw new AbruptError(`token id ${t} is outside the model's vocabulary of ${V}`);
    }
    const key = `${B},${T}`;
    let a = this.actsByShape.get(key);
    if (!a) {
      a = this.allocActs(B, T);
      this.actsByShape.set(key, a);
    }
    this.acts = a;
    const k = this.kernels;
    const p = this.paramViews;
    const N = B * T;
    a.tokens.set(tokens);
    const hooks = this.hooks;
    const on = hooks.active;

    k.embeddingForward(a.embOut, tokens, p.wte, p.wpe, B, T, C);
    if (on && hooks.has("embed.out")) yield "embed.out";
    let x = a.embOut;
    for (let l = 0; l < L; l++) {
      const w = p.layers[l]!;
      const la = a.layers[l]!;
      const at = (s: string) => `blocks.${l}.${s}`;
      const hooked = (s: string) => on && hooks.has(at(s));
      if (hooked("resid_pre")) yield at("resid_pre");
      // x = x + attn(ln_1(x))
      k.layernormForward(la.ln1, la.ln1Mean, la.ln1Rstd, x, w.ln1W, w.ln1B, N, C, lnEps);
      if (hooked("ln1.out")) yield at("ln1.out");
      k.linearForward(la.qkv, la.ln1, w.qkvW, w.qkvB, N, C, 3 * C);
      if (hooked("attn.qkv")) yield at("attn.qkv");
      k.causalAttentionPattern(la.att, la.qkv, B, T, C, H, attn);
      if (hooked("attn.pattern")) yield at("attn.pattern");
      k.attentionApply(la.z, la.att, la.qkv, B, T, C, H);
      if (hooked("attn.z")) yield at("attn.z");
      k.linearForward(la.attnOut, la.z, w.projW, w.projB, N, C, C);
      if (hooked("attn.out")) yield at("attn.out");
      k.add(la.residMid, x, la.attnOut, N * C);
      if (hooked("resid_mid")) yield at("resid_mid");
      // x = x + mlp(ln_2(x))
      k.layernormForward(la.ln2, la.ln2Mean, la.ln2Rstd, la.residMid, w.ln2W, w.ln2B, N, C, lnEps);
      if (hooked("ln2.out")) yield at("ln2.out");
      k.linearForward(la.pre, la.ln2, w.fcW, w.fcB, N, C, F);
      if (hooked("mlp.pre")) yield at("mlp.pre");
      k.geluTanhForward(la.post, la.pre, N * F);
      if (hooked("mlp.post")) yield at("mlp.post");
      k.linearForward(la.mlpOut, la.post, w.fcProjW, w.fcProjB, N, F, C);
      if (hooked("mlp.out")) yield at("mlp.out");
      k.add(la.residPost, la.residMid, la.mlpOut, N * C);
      if (hooked("resid_post")) yield at("resid_post");
      x = la.residPost;
    }
    k.layernormForward(a.lnf, a.lnfMean, a.lnfRstd, x, p.lnfW, p.lnfB, N, C, lnEps);
    if (on && hooks.has("ln_f.out")) yield "ln_f.out";
    k.linearForward(a.logits, a.lnf, p.lmW, null, N, C, V);
    if (on && hooks.has("logits")) yield "logits";
    return a.logits;
  }

  // ------------------------------------------------------------------ loss

  /**
   * Next-token cross-entropy of the last forward pass: targets [B,T] are the
   * ids each position must predict (-1 = not counted); the mean over the
   * counted positions, each position's loss, and (unless withGrad is false)
   * the logits gradient that `backward` takes.
   */
  loss(targets: Int32Array, withGrad = true): GptLoss<Buf> {
    const a = this.acts;
    if (!a) throw new Error("loss before forward");
    const N = a.B * a.T;
    if (targets.length !== N) throw new Error(`loss: targets has ${targets.length} entries, expected ${N}`);
    const dl = withGrad ? a.dlogits : null;
    const value = this.kernels.crossEntropy(dl, a.rowLoss, a.logits, targets, N, this.cfg.vocab, 1, a.loss);
    return { mean: a.loss, rowLoss: a.rowLoss, dlogits: dl, value };
  }

  // -------------------------------------------------------------- backward

  /**
   * Accumulates into `grads` the gradient of a scalar loss whose gradient
   * with respect to the logits of the last forward pass is dlogits [B,T,V]
   * (e.g. `loss(targets).dlogits`). Frozen groups get no gradient.
   */
  backward(dlogits: Buf): void {
    const a = this.acts;
    if (!a) throw new Error("backward before forward");
    const { d: C, ff: F, H, L, vocab: V, attn } = this.cfg;
    const { B, T } = a;
    const N = B * T;
    const k = this.kernels;
    const p = this.paramViews;
    const g = this.gradViews;
    const key = `${B},${T}`;
    let gb = this.gradBufs;
    if (!gb || gb.key !== key) {
      const f = (n: number) => k.alloc(n);
      gb = { key, dx: f(N * C), dln: f(N * C), dres: f(N * C), dz: f(N * C), dh: f(N * F), dqkv: f(N * 3 * C), datt: f(B * H * T * T) };
      this.gradBufs = gb;
    }
    const tr = (group: string) => !this.frozen.has(group);
    const { dx, dln, dres, dz, dh, dqkv, datt } = gb;

    // logits = ln_f(x) Wᵀ
    const xLast = L > 0 ? a.layers[L - 1]!.residPost : a.embOut;
    k.linearBackward(dln, tr("lm_head") ? g.lmW : null, null, dlogits, a.lnf, p.lmW, N, C, V, false);
    const tLnf = tr("ln_f");
    k.layernormBackward(dx, tLnf ? g.lnfW : null, tLnf ? g.lnfB : null, dln, xLast, p.lnfW, a.lnfMean, a.lnfRstd, N, C);

    for (let l = L - 1; l >= 0; l--) {
      const w = p.layers[l]!;
      const gw = g.layers[l]!;
      const la = a.layers[l]!;
      const xIn = l > 0 ? a.layers[l - 1]!.residPost : a.embOut;
      const b = `blocks.${l}`;
      const tMlp = tr(`${b}.mlp`), tLn2 = tr(`${b}.ln2`), tAttn = tr(`${b}.attn`), tLn1 = tr(`${b}.ln1`);
      // dx holds d resid_post; resid_post = resid_mid + c_proj(gelu(c_fc(ln_2(resid_mid))))
      k.linearBackward(dh, tMlp ? gw.fcProjW : null, tMlp ? gw.fcProjB : null, dx, la.post, w.fcProjW, N, F, C, false);
      k.geluTanhBackward(dh, la.pre, dh, N * F);
      k.linearBackward(dln, tMlp ? gw.fcW : null, tMlp ? gw.fcB : null, dh, la.ln2, w.fcW, N, C, F, false);
      k.layernormBackward(dres, tLn2 ? gw.ln2W : null, tLn2 ? gw.ln2B : null, dln, la.residMid, w.ln2W, la.ln2Mean, la.ln2Rstd, N, C);
      k.add(dx, dx, dres, N * C);
      // dx holds d resid_mid; resid_mid = xIn + c_proj(attn(c_attn(ln_1(xIn))))
      k.linearBackward(dz, tAttn ? gw.projW : null, tAttn ? gw.projB : null, dx, la.z, w.projW, N, C, C, false);
      k.causalAttentionBackward(dqkv, datt, dz, la.qkv, la.att, B, T, C, H, attn);
      k.linearBackward(dln, tAttn ? gw.qkvW : null, tAttn ? gw.qkvB : null, dqkv, la.ln1, w.qkvW, N, C, 3 * C, false);
      k.layernormBackward(dres, tLn1 ? gw.ln1W : null, tLn1 ? gw.ln1B : null, dln, xIn, w.ln1W, la.ln1Mean, la.ln1Rstd, N, C);
      k.add(dx, dx, dres, N * C);
    }
    const tTok = tr("tok_emb"), tPos = tr("pos_emb");
    // minGPT's wte has no padding row: MASK (0) is learned like any token
    if (tTok || tPos) k.embeddingBackward(tTok ? g.wte : null, tPos ? g.wpe : null, dx, a.tokens, B, T, C, -1);
  }

  // ------------------------------------------------------------ generation

  /**
   * Greedy decoding: for each of the B prompts [B,P] appends the most likely
   * next token `steps` times (the first of equal maxima), as minGPT's
   * generate(do_sample=False). Returns the new tokens [B, steps]. Every
   * forward pass runs on sequences of the fixed length P + steps - 1 (the
   * training length for [masked X, SEP] prompts), the positions not yet
   * generated holding 0: causal attention makes the logits at position t
   * independent of everything after t, so this equals growing the sequence.
   * Hooks fire at every pass.
   */
  async generate(prompts: Int32Array, B: number, P: number, steps: number): Promise<Int32Array> {
    if (!(P >= 1 && steps >= 1)) throw new AbruptError(`generate: needs a prompt (P=${P}) and at least one step (${steps})`);
    if (prompts.length !== B * P) throw new Error(`generate: prompts has ${prompts.length} entries, expected ${B * P}`);
    const T = P + steps - 1;
    if (T > this.cfg.block) throw new AbruptError(`prompt of ${P} tokens plus ${steps} generated is longer than the model's block size ${this.cfg.block} + 1`);
    const V = this.cfg.vocab;
    const seq = new Int32Array(B * T); // positions not generated yet hold 0 (any id would do)
    for (let b = 0; b < B; b++) seq.set(prompts.subarray(b * P, (b + 1) * P), b * T);
    const out = new Int32Array(B * steps);
    const rows = this.kernels.host ? null : this.kernels.alloc(B * V);
    for (let s = 0; s < steps; s++) {
      const pos = P - 1 + s; // the position whose logits predict the next token
      const logits = await this.forwardAsync(seq, B, T);
      let last: Float32Array;
      if (rows === null) last = logits as Float32Array;
      else {
        for (let b = 0; b < B; b++) this.kernels.copy(this.kernels.view(rows, b * V, V), this.kernels.view(logits, (b * T + pos) * V, V), V);
        last = await this.kernels.download(rows);
      }
      for (let b = 0; b < B; b++) {
        const r = rows === null ? (b * T + pos) * V : b * V;
        let best = 0;
        for (let c = 1; c < V; c++) if (last[r + c]! > last[r + best]!) best = c;
        out[b * steps + s] = best;
        if (pos + 1 < T) seq[b * T + pos + 1] = best;
      }
    }
    return out;
  }
}
