// The BERT of SPEC §2 with an explicit forward and backward, llm.c style.
//
//   x = LN_emb(wte[tok] + wpe[pos])                       embed.sum, embed.out
//   per layer l (post-LN):
//     qkv = x Wqkvᵀ + b                                   blocks.l.attn.qkv
//     A   = softmax(q kᵀ / √hs [+ bias]) per head         blocks.l.attn.pattern
//     z   = A v (heads concatenated)                      blocks.l.attn.z
//     a   = z Woᵀ + bo                                    blocks.l.attn.out
//     x   = LN1(x + a)                                    blocks.l.resid_mid
//     h   = gelu(x W1ᵀ + b1)                              blocks.l.mlp.pre / .post
//     f   = h W2ᵀ + b2                                    blocks.l.mlp.out
//     x   = LN2(x + f)                                    blocks.l.resid_post
//   y = x wᵀ + b  (one number per token)                  readout
//
// Every activation above has a stable hook name: analysis code can read it
// after a forward pass (`act(name)`) or read/replace/zero it during the pass
// (`addHook(name, fn)`), which then changes everything downstream.
//
// Tensors are the backend's (`Bert<Buf>`, Buf = Float32Array by default):
// parameters, gradients and activations are allocated through the kernels,
// so on webgpu they all live on the GPU. Analyses use the asynchronous
// `run` / `actHost` / `paramHost`, which work on every backend: on webgpu a
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
import {
  type ModelConfig, type ParamViews, groupMatches, groupNames, isValidGroupSelector,
  paramCount, paramSpecs, paramViews,
} from "./params.js";

export type HookFn = (act: Float32Array, info: HookInfo) => void;
export interface HookInfo {
  name: string;
  /** shape of the activation, e.g. [B, T, C] or [B, H, T, T] */
  shape: number[];
}

interface LayerActs<Buf> {
  qkv: Buf; // [N, 3C]
  att: Buf; // [B, H, T, T]
  z: Buf; // [N, C]
  attnOut: Buf; // [N, C]
  res1: Buf; // [N, C] x + attnOut (LN1 input)
  ln1: Buf; // [N, C] resid_mid
  ln1Mean: Buf; // [N]
  ln1Rstd: Buf; // [N]
  pre: Buf; // [N, F]
  post: Buf; // [N, F]
  mlpOut: Buf; // [N, C]
  res2: Buf; // [N, C] resid_mid + mlpOut (LN2 input)
  ln2: Buf; // [N, C] resid_post
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

interface Grads<Buf> {
  N: number;
  BHTT: number;
  dx: Buf; // [N, C]
  dres: Buf; // [N, C]
  dz: Buf; // [N, C]
  dF: Buf; // [N, F]
  dqkv: Buf; // [N, 3C]
  datt: Buf; // [B, H, T, T]
}

export const DEFAULT_INIT_STD = 0.02;

export class Bert<Buf = Float32Array> {
  readonly cfg: ModelConfig;
  readonly k: Kernels<Buf>;
  /** all parameters, laid out by paramSpecs */
  readonly params: Buf;
  /** gradients, same layout */
  readonly grads: Buf;
  readonly p: ParamViews<Buf>;
  readonly g: ParamViews<Buf>;

  private actsByShape = new Map<string, Acts<Buf>>();
  private acts: Acts<Buf> | null = null;
  private gradBufs: Grads<Buf> | null = null;
  private hooks = new Map<string, HookFn[]>();
  private frozen = new Set<string>();
  private attnBiasCfg: AttnBias | null = null;

  constructor(cfg: ModelConfig, kernels: Kernels<Buf>) {
    if (cfg.d % cfg.H !== 0) throw new AbruptError(`heads (${cfg.H}) must divide the width d (${cfg.d})`);
    this.cfg = cfg;
    this.k = kernels;
    const n = paramCount(cfg);
    this.params = kernels.alloc(n);
    this.grads = kernels.alloc(n);
    const view = (flat: Buf) => (offset: number, size: number) => kernels.view(flat, offset, size);
    this.p = paramViews(cfg, view(this.params));
    this.g = paramViews(cfg, view(this.grads));
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
    this.k.upload(this.params, params);
  }

  // ---------------------------------------------------------------- hooks

  /** All hook names of this model, in forward order. */
  hookNames(): string[] {
    const names = ["embed.sum", "embed.out"];
    for (let l = 0; l < this.cfg.L; l++) {
      for (const s of ["attn.qkv", "attn.pattern", "attn.z", "attn.out", "resid_mid", "mlp.pre", "mlp.post", "mlp.out", "resid_post"]) {
        names.push(`blocks.${l}.${s}`);
      }
    }
    names.push("readout");
    return names;
  }

  hookShape(name: string, B: number, T: number): number[] {
    const { d: C, ff: F, H } = this.cfg;
    if (name === "readout") return [B, T];
    if (name.endsWith("attn.qkv")) return [B, T, 3 * C];
    if (name.endsWith("attn.pattern")) return [B, H, T, T];
    if (name.endsWith("mlp.pre") || name.endsWith("mlp.post")) return [B, T, F];
    return [B, T, C];
  }

  private checkHookName(name: string): void {
    if (!this.hookNames().includes(name)) {
      throw new AbruptError(`unknown hook "${name}" (valid: embed.sum, embed.out, blocks.{0..${this.cfg.L - 1}}.{attn.qkv, attn.pattern, attn.z, attn.out, resid_mid, mlp.pre, mlp.post, mlp.out, resid_post}, readout)`);
    }
  }

  /**
   * Calls fn on the activation right after it is computed; fn may change it
   * in place. On a device backend (webgpu) fn gets a host copy, and the pass
   * must be run with `run` (asynchronous).
   */
  addHook(name: string, fn: HookFn): () => void {
    this.checkHookName(name);
    const list = this.hooks.get(name) ?? [];
    list.push(fn);
    this.hooks.set(name, list);
    return () => {
      const l = this.hooks.get(name);
      if (l) this.hooks.set(name, l.filter((f) => f !== fn));
    };
  }

  clearHooks(): void {
    this.hooks.clear();
  }

  /** The activation of the last forward pass (a view: copy it to keep it). */
  act(name: string): Buf {
    this.checkHookName(name);
    const a = this.acts;
    if (!a) throw new AbruptError("no forward pass has run yet");
    if (name === "embed.sum") return a.embSum;
    if (name === "embed.out") return a.embOut;
    if (name === "readout") return a.out;
    const m = /^blocks\.(\d+)\.(.+)$/.exec(name)!;
    const la = a.layers[Number(m[1])]!;
    switch (m[2]) {
      case "attn.qkv": return la.qkv;
      case "attn.pattern": return la.att;
      case "attn.z": return la.z;
      case "attn.out": return la.attnOut;
      case "resid_mid": return la.ln1;
      case "mlp.pre": return la.pre;
      case "mlp.post": return la.post;
      case "mlp.out": return la.mlpOut;
      default: return la.ln2;
    }
  }

  // -------------------------------------------------------------- freezing

  /** Freeze parameter groups (see params.ts groupMatches for selectors). */
  setFrozen(selectors: string[]): void {
    this.frozen.clear();
    for (const sel of selectors) {
      if (!isValidGroupSelector(this.cfg, sel)) {
        throw new AbruptError(`unknown parameter group "${sel}" (groups: ${groupNames(this.cfg).join(", ")}, or attn, mlp, ln, embeddings, blocks.N)`);
      }
      for (const g of groupNames(this.cfg)) if (groupMatches(g, sel)) this.frozen.add(g);
    }
  }

  isFrozen(group: string): boolean {
    return this.frozen.has(group);
  }

  frozenGroups(): string[] {
    return [...this.frozen];
  }

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
    const f = (n: number) => this.k.alloc(n);
    const layers: LayerActs<Buf>[] = [];
    for (let l = 0; l < L; l++) {
      layers.push({
        qkv: f(N * 3 * C), att: f(B * H * T * T), z: f(N * C), attnOut: f(N * C),
        res1: f(N * C), ln1: f(N * C), ln1Mean: f(N), ln1Rstd: f(N),
        pre: f(N * F), post: f(N * F), mlpOut: f(N * C),
        res2: f(N * C), ln2: f(N * C), ln2Mean: f(N), ln2Rstd: f(N),
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
    const pass = this.pass(tokens, B, T);
    let r = pass.next();
    if (!r.done && !this.k.host) throw new AbruptError(`hooks on ${this.k.name} need the asynchronous model.run(), not model.forward()`);
    while (!r.done) {
      this.fireHost(r.value, B, T);
      r = pass.next();
    }
    return r.value;
  }

  /**
   * Runs the model on tokens [B,T] on any backend, hooks included, and
   * returns a host copy of the outputs [B,T]. On a device backend each
   * hooked activation is downloaded, given to the hooks, and uploaded back
   * (so a hook may change it, as on the host).
   */
  async run(tokens: Int32Array, B: number, T: number): Promise<Float32Array> {
    const pass = this.pass(tokens, B, T);
    let r = pass.next();
    while (!r.done) {
      if (this.k.host) this.fireHost(r.value, B, T);
      else {
        const { name, buf } = r.value;
        const host = await this.k.download(buf);
        const info = { name, shape: this.hookShape(name, B, T) };
        for (const fn of this.hooks.get(name)!) fn(host, info);
        this.k.upload(buf, host);
      }
      r = pass.next();
    }
    return this.hostCopy(r.value);
  }

  /** A host copy of an activation of the last forward pass (any backend; see act). */
  async actHost(name: string): Promise<Float32Array> {
    return this.hostCopy(this.act(name));
  }

  /** A host copy of a parameter tensor (any backend), e.g. `await model.paramHost(model.p.wte)`. */
  async paramHost(view: Buf): Promise<Float32Array> {
    return this.hostCopy(view);
  }

  /** A host copy of any tensor of this model (a Float32Array slice on host backends). */
  private async hostCopy(t: Buf): Promise<Float32Array> {
    return this.k.host ? (t as Float32Array).slice() : await this.k.download(t);
  }

  /** A host copy of all parameters, laid out by paramSpecs. */
  async paramsHost(): Promise<Float32Array> {
    return this.paramHost(this.params);
  }

  /** Sets all parameters from a host array laid out by paramSpecs. */
  setParams(params: Float32Array): void {
    if (params.length !== paramCount(this.cfg)) throw new Error(`setParams: ${params.length} values, the model has ${paramCount(this.cfg)}`);
    this.k.upload(this.params, params);
  }

  private fireHost(at: { name: string; buf: Buf }, B: number, T: number): void {
    const info = { name: at.name, shape: this.hookShape(at.name, B, T) };
    for (const fn of this.hooks.get(at.name)!) fn(at.buf as Float32Array, info); // host backend: Buf is Float32Array
  }

  /**
   * The forward pass itself, written once: it yields at every hooked
   * activation (only those with hooks) so that `forward` (synchronous) and
   * `run` (asynchronous) can hand it to the hooks, and returns the outputs.
   */
  private *pass(tokens: Int32Array, B: number, T: number): Generator<{ name: string; buf: Buf }, Buf, void> {
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
    const k = this.k;
    const p = this.p;
    const N = B * T;
    a.tokens.set(tokens);
    const hooked = (name: string) => (this.hooks.get(name)?.length ?? 0) > 0;
    const ab = this.attnBiasCfg;
    if (ab) {
      if (ab.m * ab.n !== T) throw new AbruptError(`attention bias: ${ab.m}×${ab.n} matrices have ${ab.m * ab.n} cells, the input has ${T} tokens`);
      a.bias ??= { dev: k.alloc(B * T * T), host: new Float32Array(B * T * T) };
      fillAttnBias(a.bias.host, tokens, B, ab.m, ab.n, Math.log(ab.c));
      k.upload(a.bias.dev, a.bias.host);
    }
    const biasOf = (l: number) => (ab && a.bias && (ab.layers === null || ab.layers.includes(l)) ? a.bias.dev : null);

    k.embeddingForward(a.embSum, tokens, p.wte, p.wpe, B, T, C);
    if (hooked("embed.sum")) yield { name: "embed.sum", buf: a.embSum };
    k.layernormForward(a.embOut, a.embMean, a.embRstd, a.embSum, p.lnEW, p.lnEB, N, C, lnEps);
    if (hooked("embed.out")) yield { name: "embed.out", buf: a.embOut };

    let x = a.embOut;
    for (let l = 0; l < L; l++) {
      const w = p.layers[l]!;
      const la = a.layers[l]!;
      const at = (s: string) => `blocks.${l}.${s}`;
      k.linearForward(la.qkv, x, w.qkvW, w.qkvB, N, C, 3 * C);
      if (hooked(at("attn.qkv"))) yield { name: at("attn.qkv"), buf: la.qkv };
      k.attentionPattern(la.att, la.qkv, B, T, C, H, biasOf(l));
      if (hooked(at("attn.pattern"))) yield { name: at("attn.pattern"), buf: la.att };
      k.attentionApply(la.z, la.att, la.qkv, B, T, C, H);
      if (hooked(at("attn.z"))) yield { name: at("attn.z"), buf: la.z };
      k.linearForward(la.attnOut, la.z, w.projW, w.projB, N, C, C);
      if (hooked(at("attn.out"))) yield { name: at("attn.out"), buf: la.attnOut };
      k.add(la.res1, x, la.attnOut, N * C);
      k.layernormForward(la.ln1, la.ln1Mean, la.ln1Rstd, la.res1, w.ln1W, w.ln1B, N, C, lnEps);
      if (hooked(at("resid_mid"))) yield { name: at("resid_mid"), buf: la.ln1 };
      k.linearForward(la.pre, la.ln1, w.fc1W, w.fc1B, N, C, F);
      if (hooked(at("mlp.pre"))) yield { name: at("mlp.pre"), buf: la.pre };
      k.geluForward(la.post, la.pre, N * F);
      if (hooked(at("mlp.post"))) yield { name: at("mlp.post"), buf: la.post };
      k.linearForward(la.mlpOut, la.post, w.fc2W, w.fc2B, N, F, C);
      if (hooked(at("mlp.out"))) yield { name: at("mlp.out"), buf: la.mlpOut };
      k.add(la.res2, la.ln1, la.mlpOut, N * C);
      k.layernormForward(la.ln2, la.ln2Mean, la.ln2Rstd, la.res2, w.ln2W, w.ln2B, N, C, lnEps);
      if (hooked(at("resid_post"))) yield { name: at("resid_post"), buf: la.ln2 };
      x = la.ln2;
    }
    k.linearForward(a.out, x, p.outW, p.outB, N, C, 1);
    if (hooked("readout")) yield { name: "readout", buf: a.out };
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
    const k = this.k;
    const p = this.p;
    const g = this.g;
    let gb = this.gradBufs;
    if (!gb || gb.N !== N || gb.BHTT !== B * H * T * T) {
      const f = (n: number) => k.alloc(n);
      gb = { N, BHTT: B * H * T * T, dx: f(N * C), dres: f(N * C), dz: f(N * C), dF: f(N * F), dqkv: f(N * 3 * C), datt: f(B * H * T * T) };
      this.gradBufs = gb;
    }
    const tr = (group: string) => !this.frozen.has(group);
    const { dx, dres, dz, dF, dqkv, datt } = gb;

    const xFinal = L > 0 ? a.layers[L - 1]!.ln2 : a.embOut;
    const ro = tr("readout");
    k.linearBackward(dx, ro ? g.outW : null, ro ? g.outB : null, dout, xFinal, p.outW, N, C, 1, false);

    for (let l = L - 1; l >= 0; l--) {
      const w = p.layers[l]!;
      const gw = g.layers[l]!;
      const la = a.layers[l]!;
      const xIn = l > 0 ? a.layers[l - 1]!.ln2 : a.embOut;
      const name = `blocks.${l}`;
      const tLn2 = tr(`${name}.ln2`), tMlp = tr(`${name}.mlp`), tLn1 = tr(`${name}.ln1`), tAttn = tr(`${name}.attn`);
      // x = LN2(res2), res2 = ln1 + mlpOut
      k.layernormBackward(dres, tLn2 ? gw.ln2W : null, tLn2 ? gw.ln2B : null, dx, la.res2, w.ln2W, la.ln2Mean, la.ln2Rstd, N, C);
      // mlpOut = gelu(ln1 W1ᵀ + b1) W2ᵀ + b2
      k.linearBackward(dF, tMlp ? gw.fc2W : null, tMlp ? gw.fc2B : null, dres, la.post, w.fc2W, N, F, C, false);
      k.geluBackward(dF, la.pre, dF, N * F);
      k.copy(dx, dres, N * C);
      k.linearBackward(dx, tMlp ? gw.fc1W : null, tMlp ? gw.fc1B : null, dF, la.ln1, w.fc1W, N, C, F, true);
      // ln1 = LN1(res1), res1 = xIn + attnOut
      k.layernormBackward(dres, tLn1 ? gw.ln1W : null, tLn1 ? gw.ln1B : null, dx, la.res1, w.ln1W, la.ln1Mean, la.ln1Rstd, N, C);
      k.linearBackward(dz, tAttn ? gw.projW : null, tAttn ? gw.projB : null, dres, la.z, w.projW, N, C, C, false);
      k.attentionBackward(dqkv, datt, dz, la.qkv, la.att, B, T, C, H);
      k.copy(dx, dres, N * C);
      k.linearBackward(dx, tAttn ? gw.qkvW : null, tAttn ? gw.qkvB : null, dqkv, xIn, w.qkvW, N, C, 3 * C, true);
    }
    const tLnE = tr("emb_ln"), tTok = tr("tok_emb"), tPos = tr("pos_emb");
    if (tLnE || tTok || tPos) {
      k.layernormBackward(dres, tLnE ? g.lnEW : null, tLnE ? g.lnEB : null, dx, a.embSum, p.lnEW, a.embMean, a.embRstd, N, C);
      if (tTok || tPos) k.embeddingBackward(tTok ? g.wte : null, tPos ? g.wpe : null, dres, a.tokens, B, T, C, MASK_ID);
    }
  }

  zeroGrad(): void {
    this.k.zero(this.grads);
  }
}
