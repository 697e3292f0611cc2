// The reference backend: plain TypeScript, one loop nest per formula, sums in
// double. It is the oracle the native backend is tested against, so it favours
// being obviously correct over being fast. Shapes follow types.ts.

import type { AttentionKind, F32, Kernels } from "./types.js";

/** Throws unless `a` holds at least `n` elements (catches shape bugs early). */
function need(a: ArrayLike<number>, n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${what}: bad size ${n}`);
  if (a.length < n) throw new RangeError(`${what}: length ${a.length} < required ${n}`);
}

// ---------------------------------------------------------------------------
// erf / erfc in double, accurate to ~1e-15 relative (far beyond float needs).
// |x| < 3: erf(x) = 2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (1·3·…·(2n+1)),
//          a series of positive terms (no cancellation);
// x >= 3:  erfc(x) = e^{-x^2}/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + …)))),
//          the Laplace continued fraction, evaluated bottom-up.

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);
const INV_SQRT_PI = 1 / Math.sqrt(Math.PI);

function erfSeries(x: number): number {
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
}

function erfcContinuedFraction(x: number): number {
  let f = x;
  for (let k = 120; k >= 1; k--) f = x + k / 2 / f;
  return (Math.exp(-x * x) * INV_SQRT_PI) / f;
}

export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  const r = a < 3 ? erfSeries(a) : 1 - erfcContinuedFraction(a);
  return x < 0 ? -r : r;
}

export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x >= 3) return erfcContinuedFraction(x);
  if (x <= -3) return 2 - erfcContinuedFraction(-x);
  return 1 - (x < 0 ? -erfSeries(-x) : erfSeries(x));
}

/** Standard normal CDF Φ(x) = (1 + erf(x/√2))/2, accurate in both tails. */
export function normCdf(x: number): number {
  return 0.5 * erfc(-x * Math.SQRT1_2);
}

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** Exact GELU x·Φ(x) and its derivative Φ(x) + x·φ(x), in double. */
export function gelu(x: number): number {
  return x * normCdf(x);
}
export function geluGrad(x: number): number {
  return normCdf(x) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
}

const GELU_TANH_K = Math.sqrt(2 / Math.PI);

/**
 * GELU, tanh form, and its derivative, in double. 0.5 x (1 + tanh(u)) is
 * written x σ(2u) (the same function), which does not cancel for x << 0.
 */
export function geluTanh(x: number): number {
  const u = GELU_TANH_K * (x + 0.044715 * x * x * x);
  return x / (1 + Math.exp(-2 * u));
}
export function geluTanhGrad(x: number): number {
  const u = GELU_TANH_K * (x + 0.044715 * x * x * x);
  const s = 1 / (1 + Math.exp(-2 * u));
  return s + 2 * x * s * (1 - s) * GELU_TANH_K * (1 + 3 * 0.044715 * x * x);
}

// ---------------------------------------------------------------------------

/** Memory of the host backends: tensors are Float32Arrays, views subarrays. */
export const hostMemory = {
  host: true as const,
  alloc: (n: number): F32 => new Float32Array(n),
  view: (t: F32, offset: number, n: number): F32 => {
    if (offset < 0 || n < 0 || offset + n > t.length) throw new RangeError(`view [${offset}, ${offset + n}) outside a tensor of ${t.length}`);
    return t.subarray(offset, offset + n);
  },
  size: (t: F32): number => t.length,
  upload: (dst: F32, src: F32): void => dst.set(src),
  download: (t: F32): Promise<F32> => Promise.resolve(t.slice()),
  zero: (t: F32): void => {
    t.fill(0);
  },
  copy: (dst: F32, src: F32, n: number): void => dst.set(src.subarray(0, n)),
  finish: (): Promise<void> => Promise.resolve(),
};

// ---------------------------------------------------------------------------
// The GPT's kernels: causal attention (softmax or linear), tanh GELU, cross-entropy.

function checkKind(kind: AttentionKind): void {
  if (kind !== "softmax" && kind !== "linear") throw new RangeError(`causal attention: kind must be "softmax" or "linear", got ${String(kind)}`);
}

const refGptKernels = {
  causalAttentionPattern(att: F32, qkv: F32, B: number, T: number, C: number, H: number, kind: AttentionKind) {
    checkAttention(qkv, B, T, C, H);
    checkKind(kind);
    need(att, B * H * T * T, "causalAttentionPattern att");
    const hs = C / H;
    const scale = 1 / Math.sqrt(hs);
    const row = new Float64Array(T);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const q = (b * T + t) * 3 * C + h * hs;
          let max = -Infinity;
          for (let k = 0; k <= t; k++) {
            const key = (b * T + k) * 3 * C + C + h * hs;
            let s = 0;
            for (let j = 0; j < hs; j++) s += qkv[q + j]! * qkv[key + j]!;
            row[k] = s * scale;
            if (row[k]! > max) max = row[k]!;
          }
          let sum = 1;
          if (kind === "softmax") {
            sum = 0;
            for (let k = 0; k <= t; k++) {
              row[k] = Math.exp(row[k]! - max);
              sum += row[k]!;
            }
          }
          const a = ((b * H + h) * T + t) * T;
          for (let k = 0; k < T; k++) att[a + k] = k <= t ? row[k]! / sum : 0;
        }
      }
    }
  },

  causalAttentionBackward(dqkv: F32, datt: F32, dout: F32, qkv: F32, att: F32, B: number, T: number, C: number, H: number, kind: AttentionKind) {
    checkAttention(qkv, B, T, C, H);
    checkKind(kind);
    need(att, B * H * T * T, "causalAttentionBackward att");
    need(datt, B * H * T * T, "causalAttentionBackward datt");
    need(dout, B * T * C, "causalAttentionBackward dout");
    need(dqkv, B * T * 3 * C, "causalAttentionBackward dqkv");
    const hs = C / H;
    const scale = 1 / Math.sqrt(hs);
    const C3 = 3 * C;
    dqkv.fill(0, 0, B * T * C3);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const a0 = (b * H + h) * T * T;
        const qOff = (t: number) => (b * T + t) * C3 + h * hs;
        const kOff = (t: number) => (b * T + t) * C3 + C + h * hs;
        const vOff = (t: number) => (b * T + t) * C3 + 2 * C + h * hs;
        const oOff = (t: number) => (b * T + t) * C + h * hs;
        // datt[t,k] = dout[t] · v[k] for k <= t (0 above: those entries are constants)
        for (let t = 0; t < T; t++) {
          for (let k = 0; k < T; k++) {
            let s = 0;
            if (k <= t) for (let j = 0; j < hs; j++) s += dout[oOff(t) + j]! * qkv[vOff(k) + j]!;
            datt[a0 + t * T + k] = s;
          }
        }
        // dv[k] = sum_t att[t,k] dout[t]
        for (let k = 0; k < T; k++) {
          for (let j = 0; j < hs; j++) {
            let s = 0;
            for (let t = k; t < T; t++) s += att[a0 + t * T + k]! * dout[oOff(t) + j]!;
            dqkv[vOff(k) + j] = s;
          }
        }
        // softmax backward in place (linear: datt is already the score gradient)
        if (kind === "softmax") {
          for (let t = 0; t < T; t++) {
            let dot = 0;
            for (let k = 0; k <= t; k++) dot += att[a0 + t * T + k]! * datt[a0 + t * T + k]!;
            for (let k = 0; k <= t; k++) datt[a0 + t * T + k] = att[a0 + t * T + k]! * (datt[a0 + t * T + k]! - dot);
          }
        }
        // dq[t] = scale sum_{k<=t} dscore[t,k] k[k];  dk[k] = scale sum_{t>=k} dscore[t,k] q[t]
        for (let t = 0; t < T; t++) {
          for (let j = 0; j < hs; j++) {
            let s = 0;
            for (let k = 0; k <= t; k++) s += datt[a0 + t * T + k]! * qkv[kOff(k) + j]!;
            dqkv[qOff(t) + j] = s * scale;
          }
        }
        for (let k = 0; k < T; k++) {
          for (let j = 0; j < hs; j++) {
            let s = 0;
            for (let t = k; t < T; t++) s += datt[a0 + t * T + k]! * qkv[qOff(t) + j]!;
            dqkv[kOff(k) + j] = s * scale;
          }
        }
      }
    }
  },

  geluTanhForward(out: F32, inp: F32, n: number) {
    need(inp, n, "geluTanhForward inp");
    need(out, n, "geluTanhForward out");
    for (let i = 0; i < n; i++) out[i] = geluTanh(inp[i]!);
  },

  geluTanhBackward(dinp: F32, inp: F32, dout: F32, n: number) {
    need(inp, n, "geluTanhBackward inp");
    need(dout, n, "geluTanhBackward dout");
    need(dinp, n, "geluTanhBackward dinp");
    for (let i = 0; i < n; i++) dinp[i] = dout[i]! * geluTanhGrad(inp[i]!);
  },

  crossEntropy(dlogits: F32 | null, rowLoss: F32 | null, logits: F32, targets: Int32Array, N: number, V: number, gradScale: number, loss?: F32 | null) {
    need(logits, N * V, "crossEntropy logits");
    need(targets, N, "crossEntropy targets");
    if (dlogits) need(dlogits, N * V, "crossEntropy dlogits");
    if (rowLoss) need(rowLoss, N, "crossEntropy rowLoss");
    if (loss) need(loss, 1, "crossEntropy loss");
    const count = countTargets(targets, N, V);
    const p = new Float64Array(V);
    let sum = 0;
    for (let i = 0; i < N; i++) {
      const tgt = targets[i]!;
      const r = i * V;
      if (tgt < 0) {
        if (rowLoss) rowLoss[i] = 0;
        if (dlogits) dlogits.fill(0, r, r + V);
        continue;
      }
      let max = -Infinity;
      for (let c = 0; c < V; c++) max = Math.max(max, logits[r + c]!);
      let z = 0;
      for (let c = 0; c < V; c++) {
        p[c] = Math.exp(logits[r + c]! - max);
        z += p[c]!;
      }
      const nll = Math.log(z) + max - logits[r + tgt]!;
      sum += nll;
      if (rowLoss) rowLoss[i] = nll;
      if (dlogits) {
        const g = gradScale / count;
        for (let c = 0; c < V; c++) dlogits[r + c] = g * (p[c]! / z - (c === tgt ? 1 : 0));
      }
    }
    const mean = count > 0 ? sum / count : 0;
    if (loss) loss[0] = mean;
    return mean;
  },
} satisfies Pick<Kernels, "causalAttentionPattern" | "causalAttentionBackward" | "geluTanhForward" | "geluTanhBackward" | "crossEntropy">;

/** Rows of targets [N] that count (not -1); throws on ids outside [0, V) other than -1. */
export function countTargets(targets: Int32Array, N: number, V: number): number {
  let count = 0;
  for (let i = 0; i < N; i++) {
    const t = targets[i]!;
    if (t === -1) continue;
    if (!(t >= 0 && t < V)) throw new RangeError(`crossEntropy: target ${t} at row ${i} outside [0, ${V}) (and not -1)`);
    count++;
  }
  return count;
}

export const refKernels: Kernels = {
  name: "ref",
  ...hostMemory,

  threads: () => 1,

  matmul(C, A, B, M, N, K, transA, transB, alpha, beta) {
    need(A, M * K, "matmul A");
    need(B, K * N, "matmul B");
    need(C, M * N, "matmul C");
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let p = 0; p < K; p++) {
          const a = transA ? A[p * M + i]! : A[i * K + p]!;
          const b = transB ? B[j * K + p]! : B[p * N + j]!;
          s += a * b;
        }
        // beta == 0 means C is write-only (BLAS convention: NaNs in C vanish)
        C[i * N + j] = beta === 0 ? alpha * s : alpha * s + beta * C[i * N + j]!;
      }
    }
  },

  linearForward(out, inp, weight, bias, N, IC, OC) {
    need(inp, N * IC, "linearForward inp");
    need(weight, OC * IC, "linearForward weight");
    need(out, N * OC, "linearForward out");
    if (bias) need(bias, OC, "linearForward bias");
    for (let n = 0; n < N; n++) {
      for (let o = 0; o < OC; o++) {
        let s = bias ? bias[o]! : 0;
        for (let i = 0; i < IC; i++) s += inp[n * IC + i]! * weight[o * IC + i]!;
        out[n * OC + o] = s;
      }
    }
  },

  linearBackward(dinp, dweight, dbias, dout, inp, weight, N, IC, OC, accumulateDinp) {
    need(dout, N * OC, "linearBackward dout");
    if (dinp) {
      need(dinp, N * IC, "linearBackward dinp");
      need(weight, OC * IC, "linearBackward weight");
      for (let n = 0; n < N; n++) {
        for (let i = 0; i < IC; i++) {
          let s = 0;
          for (let o = 0; o < OC; o++) s += dout[n * OC + o]! * weight[o * IC + i]!;
          dinp[n * IC + i] = accumulateDinp ? dinp[n * IC + i]! + s : s;
        }
      }
    }
    if (dweight) {
      need(dweight, OC * IC, "linearBackward dweight");
      need(inp, N * IC, "linearBackward inp");
      for (let o = 0; o < OC; o++) {
        for (let i = 0; i < IC; i++) {
          let s = 0;
          for (let n = 0; n < N; n++) s += dout[n * OC + o]! * inp[n * IC + i]!;
          dweight[o * IC + i] += s;
        }
      }
    }
    if (dbias) {
      need(dbias, OC, "linearBackward dbias");
      for (let o = 0; o < OC; o++) {
        let s = 0;
        for (let n = 0; n < N; n++) s += dout[n * OC + o]!;
        dbias[o] += s;
      }
    }
  },

  embeddingForward(out, tokens, wte, wpe, B, T, C) {
    need(tokens, B * T, "embeddingForward tokens");
    need(wpe, T * C, "embeddingForward wpe");
    need(out, B * T * C, "embeddingForward out");
    const V = Math.floor(wte.length / C);
    for (let bt = 0; bt < B * T; bt++) {
      const tok = tokens[bt]!;
      if (!(tok >= 0 && tok < V)) throw new RangeError(`embeddingForward: token ${tok} outside [0, ${V})`);
      const t = bt % T;
      for (let c = 0; c < C; c++) out[bt * C + c] = wte[tok * C + c]! + wpe[t * C + c]!;
    }
  },

  embeddingBackward(dwte, dwpe, dout, tokens, B, T, C, paddingIdx) {
    need(tokens, B * T, "embeddingBackward tokens");
    need(dout, B * T * C, "embeddingBackward dout");
    if (dwte) {
      const V = Math.floor(dwte.length / C);
      for (let bt = 0; bt < B * T; bt++) {
        const tok = tokens[bt]!;
        if (!(tok >= 0 && tok < V)) throw new RangeError(`embeddingBackward: token ${tok} outside [0, ${V})`);
        if (tok === paddingIdx) continue;
        for (let c = 0; c < C; c++) dwte[tok * C + c] += dout[bt * C + c]!;
      }
    }
    if (dwpe) {
      need(dwpe, T * C, "embeddingBackward dwpe");
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < C; c++) {
          let s = 0;
          for (let b = 0; b < B; b++) s += dout[(b * T + t) * C + c]!;
          dwpe[t * C + c] += s;
        }
      }
    }
  },

  layernormForward(out, mean, rstd, inp, weight, bias, N, C, eps) {
    need(inp, N * C, "layernormForward inp");
    need(out, N * C, "layernormForward out");
    need(mean, N, "layernormForward mean");
    need(rstd, N, "layernormForward rstd");
    need(weight, C, "layernormForward weight");
    need(bias, C, "layernormForward bias");
    for (let n = 0; n < N; n++) {
      const x = n * C;
      let m = 0;
      for (let c = 0; c < C; c++) m += inp[x + c]!;
      m /= C;
      let v = 0;
      for (let c = 0; c < C; c++) v += (inp[x + c]! - m) ** 2;
      v /= C; // biased variance, as torch.nn.LayerNorm
      const s = 1 / Math.sqrt(v + eps);
      for (let c = 0; c < C; c++) out[x + c] = (inp[x + c]! - m) * s * weight[c]! + bias[c]!;
      mean[n] = m;
      rstd[n] = s;
    }
  },

  layernormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C) {
    need(inp, N * C, "layernormBackward inp");
    need(dout, N * C, "layernormBackward dout");
    need(dinp, N * C, "layernormBackward dinp");
    need(mean, N, "layernormBackward mean");
    need(rstd, N, "layernormBackward rstd");
    need(weight, C, "layernormBackward weight");
    if (dweight) need(dweight, C, "layernormBackward dweight");
    if (dbias) need(dbias, C, "layernormBackward dbias");
    const dw = new Float64Array(C);
    const db = new Float64Array(C);
    for (let n = 0; n < N; n++) {
      const x = n * C;
      const m = mean[n]!;
      const s = rstd[n]!;
      // dnorm = dout * weight; dinp = s * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
      let dnormMean = 0;
      let dnormNormMean = 0;
      for (let c = 0; c < C; c++) {
        const norm = (inp[x + c]! - m) * s;
        const dnorm = dout[x + c]! * weight[c]!;
        dnormMean += dnorm;
        dnormNormMean += dnorm * norm;
        dw[c] += dout[x + c]! * norm;
        db[c] += dout[x + c]!;
      }
      dnormMean /= C;
      dnormNormMean /= C;
      for (let c = 0; c < C; c++) {
        const norm = (inp[x + c]! - m) * s;
        const dnorm = dout[x + c]! * weight[c]!;
        dinp[x + c] = s * (dnorm - dnormMean - norm * dnormNormMean);
      }
    }
    if (dweight) for (let c = 0; c < C; c++) dweight[c] += dw[c]!;
    if (dbias) for (let c = 0; c < C; c++) dbias[c] += db[c]!;
  },

  attentionPattern(att, qkv, B, T, C, H, bias) {
    checkAttention(qkv, B, T, C, H);
    need(att, B * H * T * T, "attentionPattern att");
    if (bias) need(bias, B * T * T, "attentionPattern bias");
    const hs = C / H;
    const scale = 1 / Math.sqrt(hs);
    const row = new Float64Array(T);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const q = (b * T + t) * 3 * C + h * hs;
          let max = -Infinity;
          for (let k = 0; k < T; k++) {
            const key = (b * T + k) * 3 * C + C + h * hs;
            let s = 0;
            for (let j = 0; j < hs; j++) s += qkv[q + j]! * qkv[key + j]!;
            row[k] = s * scale + (bias ? bias[(b * T + t) * T + k]! : 0);
            if (row[k]! > max) max = row[k]!;
          }
          let sum = 0;
          for (let k = 0; k < T; k++) {
            row[k] = Math.exp(row[k]! - max);
            sum += row[k]!;
          }
          const a = ((b * H + h) * T + t) * T;
          for (let k = 0; k < T; k++) att[a + k] = row[k]! / sum;
        }
      }
    }
  },

  attentionApply(out, att, qkv, B, T, C, H) {
    checkAttention(qkv, B, T, C, H);
    need(att, B * H * T * T, "attentionApply att");
    need(out, B * T * C, "attentionApply out");
    const hs = C / H;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const a = ((b * H + h) * T + t) * T;
          for (let j = 0; j < hs; j++) {
            let s = 0;
            for (let k = 0; k < T; k++) s += att[a + k]! * qkv[(b * T + k) * 3 * C + 2 * C + h * hs + j]!;
            out[(b * T + t) * C + h * hs + j] = s;
          }
        }
      }
    }
  },

  attentionBackward(dqkv, datt, dout, qkv, att, B, T, C, H) {
    checkAttention(qkv, B, T, C, H);
    need(att, B * H * T * T, "attentionBackward att");
    need(datt, B * H * T * T, "attentionBackward datt");
    need(dout, B * T * C, "attentionBackward dout");
    need(dqkv, B * T * 3 * C, "attentionBackward dqkv");
    const hs = C / H;
    const scale = 1 / Math.sqrt(hs);
    const C3 = 3 * C;
    dqkv.fill(0, 0, B * T * C3);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const a0 = (b * H + h) * T * T;
        const qOff = (t: number) => (b * T + t) * C3 + h * hs;
        const kOff = (t: number) => (b * T + t) * C3 + C + h * hs;
        const vOff = (t: number) => (b * T + t) * C3 + 2 * C + h * hs;
        const oOff = (t: number) => (b * T + t) * C + h * hs;
        // datt[t,k] = dout[t] · v[k];  dv[k] = sum_t att[t,k] dout[t]
        for (let t = 0; t < T; t++) {
          for (let k = 0; k < T; k++) {
            let s = 0;
            for (let j = 0; j < hs; j++) s += dout[oOff(t) + j]! * qkv[vOff(k) + j]!;
            datt[a0 + t * T + k] = s;
          }
        }
        for (let k = 0; k < T; k++) {
          for (let j = 0; j < hs; j++) {
            let s = 0;
            for (let t = 0; t < T; t++) s += att[a0 + t * T + k]! * dout[oOff(t) + j]!;
            dqkv[vOff(k) + j] = s;
          }
        }
        // softmax backward, in place: dpre[t,k] = att[t,k] (datt[t,k] - sum_k' att[t,k'] datt[t,k'])
        for (let t = 0; t < T; t++) {
          let dot = 0;
          for (let k = 0; k < T; k++) dot += att[a0 + t * T + k]! * datt[a0 + t * T + k]!;
          for (let k = 0; k < T; k++) {
            datt[a0 + t * T + k] = att[a0 + t * T + k]! * (datt[a0 + t * T + k]! - dot);
          }
        }
        // dq[t] = scale sum_k dpre[t,k] k[k];  dk[k] = scale sum_t dpre[t,k] q[t]
        for (let t = 0; t < T; t++) {
          for (let j = 0; j < hs; j++) {
            let s = 0;
            for (let k = 0; k < T; k++) s += datt[a0 + t * T + k]! * qkv[kOff(k) + j]!;
            dqkv[qOff(t) + j] = s * scale;
          }
        }
        for (let k = 0; k < T; k++) {
          for (let j = 0; j < hs; j++) {
            let s = 0;
            for (let t = 0; t < T; t++) s += datt[a0 + t * T + k]! * qkv[qOff(t) + j]!;
            dqkv[kOff(k) + j] = s * scale;
          }
        }
      }
    }
  },

  geluForward(out, inp, n) {
    need(inp, n, "geluForward inp");
    need(out, n, "geluForward out");
    for (let i = 0; i < n; i++) out[i] = gelu(inp[i]!);
  },

  geluBackward(dinp, inp, dout, n) {
    need(inp, n, "geluBackward inp");
    need(dout, n, "geluBackward dout");
    need(dinp, n, "geluBackward dinp");
    for (let i = 0; i < n; i++) dinp[i] = dout[i]! * geluGrad(inp[i]!);
  },

  add(out, a, b, n) {
    need(a, n, "add a");
    need(b, n, "add b");
    need(out, n, "add out");
    for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
  },

  mse(dpred, pred, target, n, gradScale, sse) {
    need(pred, n, "mse pred");
    need(target, n, "mse target");
    if (dpred) need(dpred, n, "mse dpred");
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const d = pred[i]! - target[i]!;
      sum += d * d;
      if (dpred) dpred[i] = gradScale * 2 * d;
    }
    if (sse) sse[0] = sum;
    return sum;
  },

  adam(param, grad, m, v, n, lr, beta1, beta2, eps, step, weightDecay = 0) {
    need(param, n, "adam param");
    need(grad, n, "adam grad");
    need(m, n, "adam m");
    need(v, n, "adam v");
    if (!(Number.isInteger(step) && step >= 1)) throw new RangeError(`adam: step ${step} must be an integer >= 1`);
    const stepSize = lr / (1 - beta1 ** step);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
    const keep = 1 - lr * weightDecay;
    for (let i = 0; i < n; i++) {
      const g = grad[i]!;
      if (weightDecay !== 0) param[i] = param[i]! * keep;
      m[i] = beta1 * m[i]! + (1 - beta1) * g;
      v[i] = beta2 * v[i]! + (1 - beta2) * g * g;
      param[i] -= (stepSize * m[i]!) / (Math.sqrt(v[i]!) / bc2Sqrt + eps);
    }
  },
  ...refGptKernels,

  sgd(param, grad, n, lr, weightDecay = 0) {
    need(param, n, "sgd param");
    need(grad, n, "sgd grad");
    for (let i = 0; i < n; i++) param[i] = param[i]! - lr * (grad[i]! + weightDecay * param[i]!);
  },
};

function checkAttention(qkv: F32, B: number, T: number, C: number, H: number): void {
  if (!(Number.isInteger(H) && H > 0 && C % H === 0)) throw new RangeError(`attention: C=${C} not divisible by H=${H}`);
  need(qkv, B * T * 3 * C, "attention qkv");
}
