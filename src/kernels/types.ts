// The kernel interface: every numerical primitive the model, the trainer and
// the analyses need. Backends: `ref` (plain TypeScript, the test oracle) and
// `cpu` (native C: CBLAS sgemm + OpenMP). The model never knows which runs.
//
// Conventions (as in llm.c):
// - all tensors are row-major Float32Arrays (subarray views allowed);
// - shapes are given in the comments: B batch, T tokens, C channels,
//   H heads, F feed-forward width, N = B*T rows;
// - parameter gradients ACCUMULATE (+=); activation gradients are
//   OVERWRITTEN unless a flag says otherwise;
// - linear weights are PyTorch-shaped [out, in].

export type F32 = Float32Array;

export type BackendName = "ref" | "cpu";

export interface Kernels {
  readonly name: BackendName;

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
    C: F32, A: F32, B: F32,
    M: number, N: number, K: number,
    transA: boolean, transB: boolean,
    alpha: number, beta: number,
  ): void;

  /** out[N,OC] = inp[N,IC] @ weight[OC,IC]^T + bias[OC] (bias may be null). */
  linearForward(out: F32, inp: F32, weight: F32, bias: F32 | null, N: number, IC: number, OC: number): void;

  /**
   * Backward of linearForward.
   * dinp[N,IC] = dout @ weight (or += when accumulateDinp); skipped if null.
   * dweight[OC,IC] += dout^T @ inp; skipped if null.
   * dbias[OC] += column sums of dout; skipped if null.
   */
  linearBackward(
    dinp: F32 | null, dweight: F32 | null, dbias: F32 | null,
    dout: F32, inp: F32, weight: F32,
    N: number, IC: number, OC: number, accumulateDinp: boolean,
  ): void;

  /** out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]; tokens [B,T], wte [V,C], wpe [>=T,C]. */
  embeddingForward(out: F32, tokens: Int32Array, wte: F32, wpe: F32, B: number, T: number, C: number): void;

  /**
   * dwte[tokens[b,t],:] += dout[b,t,:] except where tokens[b,t] == paddingIdx
   * (use -1 for none); dwpe[t,:] += sum_b dout[b,t,:]. Either may be null.
   */
  embeddingBackward(
    dwte: F32 | null, dwpe: F32 | null, dout: F32, tokens: Int32Array,
    B: number, T: number, C: number, paddingIdx: number,
  ): void;

  /** out[N,C] = (inp - mean) * rstd * weight + bias; saves mean[N], rstd[N]. */
  layernormForward(out: F32, mean: F32, rstd: F32, inp: F32, weight: F32, bias: F32, N: number, C: number, eps: number): void;

  /** dinp[N,C] overwritten; dweight[C], dbias[C] accumulate (null to skip). */
  layernormBackward(
    dinp: F32, dweight: F32 | null, dbias: F32 | null,
    dout: F32, inp: F32, weight: F32, mean: F32, rstd: F32, N: number, C: number,
  ): void;

  /**
   * att[B,H,T,T] = softmax_k(q·k / sqrt(C/H)) over the full sequence (no causal
   * mask). qkv is [B,T,3C]: q in columns [0,C), k in [C,2C), v in [2C,3C);
   * head h uses columns h*hs..(h+1)*hs of each, hs = C/H.
   */
  attentionPattern(att: F32, qkv: F32, B: number, T: number, C: number, H: number): void;

  /** out[B,T,C] (heads concatenated): out[b,t,h*hs+j] = sum_k att[b,h,t,k] * v[b,k,h*hs+j]. */
  attentionApply(out: F32, att: F32, qkv: F32, B: number, T: number, C: number, H: number): void;

  /**
   * Backward of attentionApply∘attentionPattern: dqkv[B,T,3C] overwritten;
   * datt[B,H,T,T] is scratch.
   */
  attentionBackward(dqkv: F32, datt: F32, dout: F32, qkv: F32, att: F32, B: number, T: number, C: number, H: number): void;

  /** out[i] = x * Phi(x) (exact erf GELU). out may alias inp. */
  geluForward(out: F32, inp: F32, n: number): void;

  /** dinp[i] = dout[i] * gelu'(inp[i]). dinp may alias dout. */
  geluBackward(dinp: F32, inp: F32, dout: F32, n: number): void;

  /** out[i] = a[i] + b[i]. out may alias a or b. */
  add(out: F32, a: F32, b: F32, n: number): void;

  /**
   * Returns sum_i (pred[i] - target[i])^2 (as a double). If dpred is not null,
   * writes dpred[i] = gradScale * 2 * (pred[i] - target[i]).
   */
  mse(dpred: F32 | null, pred: F32, target: F32, n: number, gradScale: number): number;

  /**
   * One Adam step with PyTorch semantics (torch.optim.Adam, no weight decay):
   * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
   * p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps).
   * step counts from 1.
   */
  adam(param: F32, grad: F32, m: F32, v: F32, n: number, lr: number, beta1: number, beta2: number, eps: number, step: number): void;
}
