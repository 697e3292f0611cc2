// The BERT of SPEC §2 with an explicit forward and backward, llm.c style.
//
//   x = LN_emb(wte[tok] + wpe[pos])                       embed.sum, embed.out
//   per layer l (post-LN), x = blocks.l.resid_pre:
//     qkv = x Wqkvᵀ + b                                   blocks.l.attn.qkv
//     A   = softmax(q kᵀ / √hs [+ bias]) per head         blocks.l.attn.pattern
//     z   = A v (heads concatenated)                      blocks.l.attn.z
//     a   = z Woᵀ + bo                                    blocks.l.attn.out
//     r   = x + a                                         blocks.l.resid_mid
//     x   = LN1(r)                                        blocks.l.ln1.out
//     h   = gelu(x W1ᵀ + b1)                              blocks.l.mlp.pre / .post
//     f   = h W2ᵀ + b2                                    blocks.l.mlp.out
//     r   = x + f                                         blocks.l.resid_post
//     x   = LN2(r)                                        blocks.l.ln2.out
//   y = x wᵀ + b  (one number per token)                  readout
//
// Every activation above has a stable hook name (TransformerLens's names for
// a post-LN block: resid_mid and resid_post are the sums that go into the
// LayerNorms; blocks.l.resid_pre is embed.out or blocks.{l-1}.ln2.out). The
// hook table (`hookTable` below: name, buffer, shape) is the one list of
// them; analysis code reads an activation after a forward pass (`act`) or
// reads/replaces it during the pass (`addHook`), which then changes
// everything downstream. See src/model/hooks.ts.
//
// Tensors are the backend's (`Bert<Buf>`, Buf = Float32Array by default):
// parameters, gradients and activations are allocated through the kernels,
// so on webgpu they all live on the GPU. Analyses use the asynchronous
// `run` / `actHost` / `getParam`, which work on every backend: on webgpu a
// hooked activation is downloaded, handed to its hooks, and uploaded back.
//
// The attention intervention (`setAttnBias`, src/model/attn-bias.ts) adds
// log c to the logits of each query's target keys in the chosen layers, in
// every forward pass (training, evaluation, analyses) until it is set to null.

import type { Kernels } from "../kernels/types.js";
import { AbruptError } from "../errors.js";
import { Rng } from "../data/rng.js";
import { MASK_ID } from "../data/matrix.js";
import { type AttnBias, fillAttnBias } from "./attn-bias.js";
import { HookTable, drive, driveAsync } from "./hooks.js";
import { ModelBase } from "./base.js";
import {
  type ModelConfig, type ParamViews, groupMatches, paramCount, paramSpecs, paramViews,
} from "./params.js";

export type { HookFn, HookInfo } from "./hooks.js";

interface LayerActs<Buf> {
  qkv: Buf; // [N, 3C]
  att: Buf; // [B, H, T, T]
  z: Buf; // [N, C]
  attnOut: Buf; // [N, C]
  residMid: Buf; // [N, C] x + attnOut (LN1 input)
  ln1: Buf; // [N, C]
  ln1Mean: Buf; // [N]
  ln1Rstd: Buf; // [N]
  pre: Buf; // [N, F]
  post: Buf; // [N, F]
  mlpOut: Buf; // [N, C]
  residPost: Buf; // [N, C] ln1 + mlpOut (LN2 input)
  ln2: Buf; // [N, C] the block's output
  ln2Mean: Buf; // [N]
  ln2Rstd: Buf; // [N]
}

interface Acts<Buf> {
  B: number;
  T: number;
  tokens: Int32Array; // [B, T] (host copy of the input)
  embSum: Buf; // [N, C]
  embOut: Buf; // [N, C]
  embMean: Buf; // [N]
  embRstd: Buf; // [N]
  layers: LayerActs<Buf>[];
  out: Buf; // [N]
  /** attention logit bias [B,T,T] and its host copy, allocated when the intervention is first on */
  bias: { dev: Buf; host: Float32Array } | null;
}

/** Activation gradients of one backward pass, allocated for one (B, T). */
interface Grads<Buf> {
  B: number;
  T: number;
  dx: Buf; // [N, C]
  dres: Buf; // [N, C]
  dz: Buf; // [N, C]
  dh: Buf; // [N, F] the MLP's hidden layer (post, then pre)
  dqkv: Buf; // [N, 3C]
  datt: Buf; // [B, H, T, T]
}

/** The activations a hook can read or replace, in forward order (see the header). */
function hookTable<Buf>(cfg: ModelConfig): HookTable<Acts<Buf>, Buf> {
  const { d: C, ff: F, H } = cfg;
  const btc = (B: number, T: number) => [B, T, C];
  const btf = (B: number, T: number) => [B, T, F];
  const la = (a: Acts<Buf>, l: number) => a.layers[l]!;
  return new HookTable<Acts<Buf>, Buf>(
    [
      { name: "embed.sum", buf: (a) => a.embSum, shape: btc },
      { name: "embed.out", buf: (a) => a.embOut, shape: btc },
    ],
    [
      { name: "resid_pre", buf: (a, l) => (l > 0 ? la(a, l - 1).ln2 : a.embOut), shape: btc },
      { name: "attn.qkv", buf: (a, l) => la(a, l).qkv, shape: (B, T) => [B, T, 3 * C] },
      { name: "attn.pattern", buf: (a, l) => la(a, l).att, shape: (B, T) => [B, H, T, T] },
      { name: "attn.z", buf: (a, l) => la(a, l).z, shape: btc },
      { name: "attn.out", buf: (a, l) => la(a, l).attnOut, shape: btc },
      { name: "resid_mid", buf: (a, l) => la(a, l).residMid, shape: btc },
      { name: "ln1.out", buf: (a, l) => la(a, l).ln1, shape: btc },
      { name: "mlp.pre", buf: (a, l) => la(a, l).pre, shape: btf },
      { name: "mlp.post", buf: (a, l) => la(a, l).post, shape: btf },
      { name: "mlp.out", buf: (a, l) => la(a, l).mlpOut, shape: btc },
      { name: "resid_post", buf: (a, l) => la(a, l).residPost, shape: btc },
      { name: "ln2.out", buf: (a, l) => la(a, l).ln2, shape: btc },
    ],
    cfg.L,
    [{ name: "readout", buf: (a) => a.out, shape: (B, T) => [B, T] }],
  );
}

export const DEFAULT_INIT_STD = 0.02;

export class Bert<Buf = Float32Array> extends ModelBase<Acts<Buf>, Buf> {
  readonly cfg: ModelConfig;
  /** named views of `params` (wte, wpe, layers[l].qkvW, ...) */
  readonly paramViews: ParamViews<Buf>;
  private readonly gradViews: ParamViews<Buf>;

  private actsByShape = new Map<string, Acts<Buf>>();
  private gradBufs: Grads<Buf> | null = null;
  private attnBiasCfg: AttnBias | null = null;

  constructor(cfg: ModelConfig, kernels: Kernels<Buf>) {
    if (cfg.d % cfg.H !== 0) throw new AbruptError(`heads (${cfg.H}) must divide the width d (${cfg.d})`);
    super(kernels, paramSpecs(cfg), hookTable<Buf>(cfg), groupMatches, "paramSpecs in src/model/params.ts");
    this.cfg = cfg;
    const view = (flat: Buf) => (offset: number, size: number) => kernels.view(flat, offset, size);
    this.paramViews = paramViews(cfg, view(this.params));
    this.gradViews = paramViews(cfg, view(this.grads));
  }

  /**
   * HF BERT init: N(0, std) weights and embeddings, zero biases, LN 1/0, MASK
   * row zero. The read-out is initialised the same way ("normal"), or as in the
   * reference code ("torch": PyTorch's nn.Linear default, weight and bias
   * U(±1/√d), since HF's init never touches it; SPEC §2).
   */
  init(seed: number, std = DEFAULT_INIT_STD, readout: "normal" | "torch" = "normal"): void {
    const rng = new Rng(seed);
    const params = new Float32Array(paramCount(this.cfg));
    for (const s of paramSpecs(this.cfg)) {
      const v = params.subarray(s.offset, s.offset + s.size);
      const isLn = /(^|\.)ln\d?\.|embed\.ln\./.test(s.name);
      if (readout === "torch" && s.group === "readout") {
        const a = 1 / Math.sqrt(this.cfg.d);
        for (let i = 0; i < v.length; i++) v[i] = rng.range(-a, a);
      } else if (s.name.endsWith(".bias")) v.fill(0);
      else if (isLn) v.fill(1);
      else for (let i = 0; i < v.length; i++) v[i] = std * rng.normal();
    }
    params.subarray(MASK_ID * this.cfg.d, (MASK_ID + 1) * this.cfg.d).fill(0); // wte comes first
    this.kernels.upload(this.params, params);
  }

  /**
   * A new model on the same backend with a copy of this one's parameters,
   * frozen groups and attention intervention (no hooks): a variant to change
   * (setParam) while this one stays as it is.
   */
  clone(): Bert<Buf> {
    const c = new Bert(this.cfg, this.kernels);
    this.kernels.copy(c.params, this.params, paramCount(this.cfg));
    c.frozen = new Set(this.frozen);
    c.attnBiasCfg = this.attnBiasCfg;
    return c;
  }

  // (hooks, parameter access and freezing: ModelBase, base.ts)

  // ------------------------------------------------------ attention bias

  /**
   * Turns the attention intervention on (every later forward pass multiplies
   * each query's attention on its target keys by c, in `layers`, null = all)
   * or off (null). See src/model/attn-bias.ts for the targets.
   */
  setAttnBias(b: AttnBias | null): void {
    if (b) {
      if (!(Number.isFinite(b.c) && b.c > 0)) throw new AbruptError(`attention bias: c must be a positive number (got ${b.c})`);
      for (const l of b.layers ?? []) {
        if (!Number.isInteger(l) || l < 0 || l >= this.cfg.L) throw new AbruptError(`attention bias: layer ${l} is outside 0..${this.cfg.L - 1}`);
      }
      if (!(Number.isInteger(b.m) && Number.isInteger(b.n) && b.m > 0 && b.n > 0)) throw new AbruptError(`attention bias: bad matrix shape ${b.m}×${b.n}`);
      b = { ...b, layers: b.layers ? [...b.layers] : null };
    }
    this.attnBiasCfg = b;
  }

  attnBias(): AttnBias | null {
    return this.attnBiasCfg;
  }

  // --------------------------------------------------------------- forward

  private allocActs(B: number, T: number): Acts<Buf> {
    const { d: C, ff: F, H, L } = this.cfg;
    const N = B * T;
    const f = (n: number) => this.kernels.alloc(n);
    const layers: LayerActs<Buf>[] = [];
    for (let l = 0; l < L; l++) {
      layers.push({
        qkv: f(N * 3 * C), att: f(B * H * T * T), z: f(N * C), attnOut: f(N * C),
        residMid: f(N * C), ln1: f(N * C), ln1Mean: f(N), ln1Rstd: f(N),
        pre: f(N * F), post: f(N * F), mlpOut: f(N * C),
        residPost: f(N * C), ln2: f(N * C), ln2Mean: f(N), ln2Rstd: f(N),
      });
    }
    return {
      B, T, tokens: new Int32Array(N),
      embSum: f(N * C), embOut: f(N * C), embMean: f(N), embRstd: f(N),
      layers, out: f(N), bias: null,
    };
  }

  /**
   * Runs the model on tokens [B,T]; returns the outputs [B,T] (a view, valid
   * until the next forward). Synchronous: on webgpu the kernels are queued
   * and the result stays on the device; hooks then need `run`.
   */
  forward(tokens: Int32Array, B: number, T: number): Buf {
    return drive(this.pass(tokens, B, T), this.hooks, this.kernels, () => this.acts!, B, T);
  }

  /**
   * Runs the model on tokens [B,T] on any backend, hooks included, and
   * returns a host copy of the outputs [B,T]. On a device backend each
   * hooked activation is downloaded, given to the hooks, and uploaded back
   * (so a hook may change it, as on the host).
   */
  async run(tokens: Int32Array, B: number, T: number): Promise<Float32Array> {
    return this.hostCopy(await driveAsync(this.pass(tokens, B, T), this.hooks, this.kernels, () => this.acts!, B, T));
  }

  /**
   * The forward pass itself, written once: it yields the name of every
   * hooked activation (only those with hooks) when it is ready, so that
   * `forward` (synchronous) and `run` (asynchronous) can hand it to the
   * hooks (hooks.ts), and returns the outputs.
   */
  private *pass(tokens: Int32Array, B: number, T: number): Generator<string, Buf, void> {
    const { d: C, ff: F, H, L, vocab, positions, lnEps } = this.cfg;
    if (T > positions) throw new AbruptError(`sequence of ${T} tokens is longer than the model's ${positions} positions`);
    if (tokens.length !== B * T) throw new Error(`forward: tokens has ${tokens.length} entries, expected ${B * T}`);
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (t < 0 || t >= vocab) throw new AbruptError(`token id ${t} is outside the model's vocabulary of ${vocab}`);
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
    const ab = this.attnBiasCfg;
    if (ab) {
      if (ab.m * ab.n !== T) throw new AbruptError(`attention bias: ${ab.m}×${ab.n} matrices have ${ab.m * ab.n} cells, the input has ${T} tokens`);
      a.bias ??= { dev: k.alloc(B * T * T), host: new Float32Array(B * T * T) };
      fillAttnBias(a.bias.host, tokens, B, ab.m, ab.n, Math.log(ab.c));
      k.upload(a.bias.dev, a.bias.host);
    }
    const biasOf = (l: number) => (ab && a.bias && (ab.layers === null || ab.layers.includes(l)) ? a.bias.dev : null);

    k.embeddingForward(a.embSum, tokens, p.wte, p.wpe, B, T, C);
    if (on && hooks.has("embed.sum")) yield "embed.sum";
    k.layernormForward(a.embOut, a.embMean, a.embRstd, a.embSum, p.embLnW, p.embLnB, N, C, lnEps);
    if (on && hooks.has("embed.out")) yield "embed.out";

    let x = a.embOut;
    for (let l = 0; l < L; l++) {
      const w = p.layers[l]!;
      const la = a.layers[l]!;
      const at = (s: string) => `blocks.${l}.${s}`;
      const hooked = (s: string) => on && hooks.has(at(s));
      if (hooked("resid_pre")) yield at("resid_pre");
      k.linearForward(la.qkv, x, w.qkvW, w.qkvB, N, C, 3 * C);
      if (hooked("attn.qkv")) yield at("attn.qkv");
      k.attentionPattern(la.att, la.qkv, B, T, C, H, biasOf(l));
      if (hooked("attn.pattern")) yield at("attn.pattern");
      k.attentionApply(la.z, la.att, la.qkv, B, T, C, H);
      if (hooked("attn.z")) yield at("attn.z");
      k.linearForward(la.attnOut, la.z, w.projW, w.projB, N, C, C);
      if (hooked("attn.out")) yield at("attn.out");
      k.add(la.residMid, x, la.attnOut, N * C);
      if (hooked("resid_mid")) yield at("resid_mid");
      k.layernormForward(la.ln1, la.ln1Mean, la.ln1Rstd, la.residMid, w.ln1W, w.ln1B, N, C, lnEps);
      if (hooked("ln1.out")) yield at("ln1.out");
      k.linearForward(la.pre, la.ln1, w.fc1W, w.fc1B, N, C, F);
      if (hooked("mlp.pre")) yield at("mlp.pre");
      k.geluForward(la.post, la.pre, N * F);
      if (hooked("mlp.post")) yield at("mlp.post");
      k.linearForward(la.mlpOut, la.post, w.fc2W, w.fc2B, N, F, C);
      if (hooked("mlp.out")) yield at("mlp.out");
      k.add(la.residPost, la.ln1, la.mlpOut, N * C);
      if (hooked("resid_post")) yield at("resid_post");
      k.layernormForward(la.ln2, la.ln2Mean, la.ln2Rstd, la.residPost, w.ln2W, w.ln2B, N, C, lnEps);
      if (hooked("ln2.out")) yield at("ln2.out");
      x = la.ln2;
    }
    k.linearForward(a.out, x, p.outW, p.outB, N, C, 1);
    if (on && hooks.has("readout")) yield "readout";
    return a.out;
  }

  // -------------------------------------------------------------- backward

  /**
   * Accumulates into `grads` the gradient of a scalar loss whose gradient
   * with respect to the outputs of the last forward pass is dout [B,T].
   * Frozen groups get no gradient (and their weight products are skipped).
   */
  backward(dout: Buf): void {
    const a = this.acts;
    if (!a) throw new Error("backward before forward");
    const { d: C, ff: F, H, L } = this.cfg;
    const { B, T } = a;
    const N = B * T;
    const k = this.kernels;
    const p = this.paramViews;
    const g = this.gradViews;
    let gb = this.gradBufs;
    if (!gb || gb.B !== B || gb.T !== T) {
      const f = (n: number) => k.alloc(n);
      gb = { B, T, dx: f(N * C), dres: f(N * C), dz: f(N * C), dh: f(N * F), dqkv: f(N * 3 * C), datt: f(B * H * T * T) };
      this.gradBufs = gb;
    }
    const tr = (group: string) => !this.frozen.has(group);
    const { dx, dres, dz, dh, dqkv, datt } = gb;

    const xFinal = L > 0 ? a.layers[L - 1]!.ln2 : a.embOut;
    const trainReadout = tr("readout");
    k.linearBackward(dx, trainReadout ? g.outW : null, trainReadout ? g.outB : null, dout, xFinal, p.outW, N, C, 1, false);

    for (let l = L - 1; l >= 0; l--) {
      const w = p.layers[l]!;
      const gw = g.layers[l]!;
      const la = a.layers[l]!;
      const xIn = l > 0 ? a.layers[l - 1]!.ln2 : a.embOut;
      const name = `blocks.${l}`;
      const tLn2 = tr(`${name}.ln2`), tMlp = tr(`${name}.mlp`), tLn1 = tr(`${name}.ln1`), tAttn = tr(`${name}.attn`);
      // x = LN2(residPost), residPost = ln1 + mlpOut
      k.layernormBackward(dres, tLn2 ? gw.ln2W : null, tLn2 ? gw.ln2B : null, dx, la.residPost, w.ln2W, la.ln2Mean, la.ln2Rstd, N, C);
      // mlpOut = gelu(ln1 W1ᵀ + b1) W2ᵀ + b2
      k.linearBackward(dh, tMlp ? gw.fc2W : null, tMlp ? gw.fc2B : null, dres, la.post, w.fc2W, N, F, C, false);
      k.geluBackward(dh, la.pre, dh, N * F);
      k.copy(dx, dres, N * C);
      k.linearBackward(dx, tMlp ? gw.fc1W : null, tMlp ? gw.fc1B : null, dh, la.ln1, w.fc1W, N, C, F, true);
      // ln1 = LN1(residMid), residMid = xIn + attnOut
      k.layernormBackward(dres, tLn1 ? gw.ln1W : null, tLn1 ? gw.ln1B : null, dx, la.residMid, w.ln1W, la.ln1Mean, la.ln1Rstd, N, C);
      k.linearBackward(dz, tAttn ? gw.projW : null, tAttn ? gw.projB : null, dres, la.z, w.projW, N, C, C, false);
      k.attentionBackward(dqkv, datt, dz, la.qkv, la.att, B, T, C, H);
      k.copy(dx, dres, N * C);
      k.linearBackward(dx, tAttn ? gw.qkvW : null, tAttn ? gw.qkvB : null, dqkv, xIn, w.qkvW, N, C, 3 * C, true);
    }
    const tLnE = tr("emb_ln"), tTok = tr("tok_emb"), tPos = tr("pos_emb");
    if (tLnE || tTok || tPos) {
      k.layernormBackward(dres, tLnE ? g.embLnW : null, tLnE ? g.embLnB : null, dx, a.embSum, p.embLnW, a.embMean, a.embRstd, N, C);
      if (tTok || tPos) k.embeddingBackward(tTok ? g.wte : null, tPos ? g.wpe : null, dres, a.tokens, B, T, C, MASK_ID);
    }
  }

}
