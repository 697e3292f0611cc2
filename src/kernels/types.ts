// The kernel interface: every numerical primitive the model, the trainer and
// the analyses need. Backends: `ref` (plain TypeScript, the test oracle),
// `cpu` (native C: CBLAS sgemm + OpenMP) and `webgpu` (WGSL through Dawn,
// src/kernels/webgpu.ts). The model never knows which runs.
//
// Tensors are of an opaque type Buf chosen by the backend: Float32Array for
// the host backends (ref, cpu: `Kernels` = `Kernels<Float32Array>`), a
// (GPUBuffer, offset, length) view for webgpu. Code that must run on every
// backend (the model, the trainer) allocates through the backend (`alloc`,
// `view`) and moves data with `upload` / `download`; only host backends can
// hand out their tensors as Float32Arrays (`host: true`).
//
// Conventions (as in llm.c):
// - all tensors are row-major float32 (views at any element offset allowed);
// - shapes are given in the comments: B batch, T tokens, C channels,
//   H heads, F feed-forward width, N = B*T rows;
// - parameter gradients ACCUMULATE (+=); activation gradients are
//   OVERWRITTEN unless a flag says otherwise;
// - linear weights are PyTorch-shaped [out, in].
//
// To add a kernel:
//   1. declare it in `Kernels` below, with the shape of every buffer in its
//      comment and whether it accumulates or overwrites;
//   2. write it in ref.ts (plain TypeScript, the oracle the others are tested
//      against), then for cpu in native/abrupt.c (exported by the addon,
//      wrapped in cpu.ts only where the call differs) and for webgpu in
//      webgpu.ts (WGSL);
//   3. test cpu against ref in test/kernels.test.ts and webgpu against ref in
//      test/webgpu.test.ts, on awkward shapes and subarray views;
//   4. call it from the model's forward or backward (src/model/bert.ts).
// A new backend implements `Kernels`, and gets its name in BackendName and in
// BACKENDS and loadKernels (index.ts).

export type F32 = Float32Array;

export type BackendName = "ref" | "cpu" | "webgpu";

/** Causal attention patterns (the GPT): softmax, or the reference's linear variant. */
export type AttentionKind = "softmax" | "linear";

export interface Kernels<Buf = F32> {
  readonly name: BackendName;

  /** true when tensors are plain Float32Arrays in this process (ref, cpu) */
  readonly host: boolean;

  // ------------------------------------------------------------- memory
  // Ordered with the kernels: an upload after a kernel call lands after that
  // kernel has run; download waits for every kernel called before it.

  /** A new zero-filled tensor of n floats. */
  alloc(n: number): Buf;

  /** Elements [offset, offset + n) of t, sharing its storage. */
  view(t: Buf, offset: number, n: number): Buf;

  /** Number of elements of t. */
  size(t: Buf): number;

  /** dst[0..src.length) = src. */
  upload(dst: Buf, src: F32): void;

  /** A host copy of t (waits for the device on webgpu). */
  download(t: Buf): Promise<F32>;

  /** t[:] = 0. */
  zero(t: Buf): void;

  /** dst[0..n) = src[0..n) (different storage or disjoint ranges). */
  copy(dst: Buf, src: Buf, n: number): void;

  /** Waits until every kernel called so far has finished (a no-op on host backends). */
  finish(): Promise<void>;

  // ------------------------------------------------------------ kernels

  /** Number of threads the backend uses (1 for ref). */
  threads(): number;

  /** Sets the thread count (cpu backend; a no-op for ref). */
  setThreads?(n: number): void;

  /**
   * General matrix product, row-major:
   * C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C.
   * op(A) = A ([M,K]) or A^T (A stored [K,M]) when transA; same for B.
   */
  matmul(
    C: Buf, A: Buf, B: Buf,
    M: number, N: number, K: number,
    transA: boolean, transB: boolean,
    alpha: number, beta: number,
  ): void;

  /** out[N,OC] = inp[N,IC] @ weight[OC,IC]^T + bias[OC] (bias may be null). */
  linearForward(out: Buf, inp: Buf, weight: Buf, bias: Buf | null, N: number, IC: number, OC: number): void;

  /**
   * Backward of linearForward.
   * dinp[N,IC] = dout @ weight (or += when accumulateDinp); skipped if null.
   * dweight[OC,IC] += dout^T @ inp; skipped if null.
   * dbias[OC] += column sums of dout; skipped if null.
   */
  linearBackward(
    dinp: Buf | null, dweight: Buf | null, dbias: Buf | null,
    dout: Buf, inp: Buf, weight: Buf,
    N: number, IC: number, OC: number, accumulateDinp: boolean,
  ): void;

  /** out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]; tokens [B,T], wte [V,C], wpe [>=T,C]. */
  embeddingForward(out: Buf, tokens: Int32Array, wte: Buf, wpe: Buf, B: number, T: number, C: number): void;

  /**
   * dwte[tokens[b,t],:] += dout[b,t,:] except where tokens[b,t] == paddingIdx
   * (use -1 for none); dwpe[t,:] += sum_b dout[b,t,:]. Either may be null.
   */
  embeddingBackward(
    dwte: Buf | null, dwpe: Buf | null, dout: Buf, tokens: Int32Array,
    B: number, T: number, C: number, paddingIdx: number,
  ): void;

  /** out[N,C] = (inp - mean) * rstd * weight + bias; saves mean[N], rstd[N]. */
  layernormForward(out: Buf, mean: Buf, rstd: Buf, inp: Buf, weight: Buf, bias: Buf, N: number, C: number, eps: number): void;

  /** dinp[N,C] overwritten; dweight[C], dbias[C] accumulate (null to skip). */
  layernormBackward(
    dinp: Buf, dweight: Buf | null, dbias: Buf | null,
    dout: Buf, inp: Buf, weight: Buf, mean: Buf, rstd: Buf, N: number, C: number,
  ): void;

  /**
   * att[B,H,T,T] = softmax_k(q·k / sqrt(C/H) + bias[b,t,k]) over the full
   * sequence (no causal mask). qkv is [B,T,3C]: q in columns [0,C), k in
   * [C,2C), v in [2C,3C); head h uses columns h*hs..(h+1)*hs of each, hs = C/H.
   * bias [B,T,T] (optional; null or omitted = none) is an additive logit bias
   * per sample, the same for every head (finite values; e.g. log c on the
   * entries whose attention is to be multiplied by c before renormalising).
   */
  attentionPattern(att: Buf, qkv: Buf, B: number, T: number, C: number, H: number, bias?: Buf | null): void;

  /** out[B,T,C] (heads concatenated): out[b,t,h*hs+j] = sum_k att[b,h,t,k] * v[b,k,h*hs+j]. */
  attentionApply(out: Buf, att: Buf, qkv: Buf, B: number, T: number, C: number, H: number): void;

  /**
   * Backward of attentionApply∘attentionPattern: dqkv[B,T,3C] overwritten;
   * datt[B,H,T,T] is scratch. It works from the saved pattern att, so a logit
   * bias given to attentionPattern needs no argument here: the bias is a
   * constant, and d(scores) = att ⊙ (datt − Σ_k att·datt) holds with it too.
   */
  attentionBackward(dqkv: Buf, datt: Buf, dout: Buf, qkv: Buf, att: Buf, B: number, T: number, C: number, H: number): void;

  /**
   * Causal attention (the GPT), per sample and head, hs = C/H, s[t,k] = q_t·k_k / sqrt(hs):
   * "softmax": att[b,h,t,k] = softmax over k <= t of s[t,k];
   * "linear":  att[b,h,t,k] = s[t,k] (no softmax; the reference's linear variant);
   * att[b,h,t,k] = 0 for k > t in both. qkv as in attentionPattern; apply the
   * pattern with attentionApply.
   */
  causalAttentionPattern(att: Buf, qkv: Buf, B: number, T: number, C: number, H: number, kind: AttentionKind): void;

  /**
   * Backward of attentionApply∘causalAttentionPattern (the same kind):
   * dqkv[B,T,3C] overwritten; datt[B,H,T,T] is scratch.
   */
  causalAttentionBackward(dqkv: Buf, datt: Buf, dout: Buf, qkv: Buf, att: Buf, B: number, T: number, C: number, H: number, kind: AttentionKind): void;

  /** out[i] = x * Phi(x) (exact erf GELU). out may alias inp. */
  geluForward(out: Buf, inp: Buf, n: number): void;

  /** dinp[i] = dout[i] * gelu'(inp[i]). dinp may alias dout. */
  geluBackward(dinp: Buf, inp: Buf, dout: Buf, n: number): void;

  /**
   * GELU in the tanh form (minGPT's NewGELU, GPT-2):
   * out[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). out may alias inp.
   */
  geluTanhForward(out: Buf, inp: Buf, n: number): void;

  /** dinp[i] = dout[i] * d/dx of geluTanhForward at inp[i]. dinp may alias dout. */
  geluTanhBackward(dinp: Buf, inp: Buf, dout: Buf, n: number): void;

  /** out[i] = a[i] + b[i]. out may alias a or b. */
  add(out: Buf, a: Buf, b: Buf, n: number): void;

  /**
   * If dpred is not null, writes dpred[i] = gradScale * 2 * (pred[i] - target[i]).
   * The sum of squares sum_i (pred[i] - target[i])^2 is written to sse[0] when
   * sse is given, and returned as a double on host backends; webgpu returns
   * NaN (its sum stays on the device until sse is downloaded).
   */
  mse(dpred: Buf | null, pred: Buf, target: Buf, n: number, gradScale: number, sse?: Buf | null): number;

  /**
   * Softmax cross-entropy of logits [N,V] against class ids targets [N]; a
   * target of -1 leaves its row out (PyTorch's ignore_index=-1), any other id
   * outside [0, V) is an error. With `count` the rows not left out:
   * loss = (1/count) sum_i (logsumexp(logits_i) - logits_i[targets_i]) (0 if count = 0).
   * dlogits [N,V] (skipped if null; may alias logits) = gradScale * dloss/dlogits,
   * i.e. gradScale (softmax(logits_i) - onehot(targets_i)) / count, 0 on rows left out.
   * rowLoss [N] (skipped if null): each row's term before the mean, 0 on rows left out.
   * The loss is written to loss[0] when loss is given, and returned as a double on
   * host backends; webgpu returns NaN (as mse).
   */
  crossEntropy(
    dlogits: Buf | null, rowLoss: Buf | null, logits: Buf, targets: Int32Array,
    N: number, V: number, gradScale: number, loss?: Buf | null,
  ): number;

  /**
   * One Adam step with PyTorch semantics (torch.optim.Adam; with
   * weightDecay > 0 torch.optim.AdamW's decoupled decay, first p *= 1 - lr*wd):
   * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
   * p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps).
   * step counts from 1; weightDecay defaults to 0.
   */
  adam(param: Buf, grad: Buf, m: Buf, v: Buf, n: number, lr: number, beta1: number, beta2: number, eps: number, step: number, weightDecay?: number): void;

  /**
   * One plain SGD step with PyTorch semantics (torch.optim.SGD, no momentum):
   * p -= lr * (g + weightDecay * p). weightDecay defaults to 0.
   */
  sgd(param: Buf, grad: Buf, n: number, lr: number, weightDecay?: number): void;
}
