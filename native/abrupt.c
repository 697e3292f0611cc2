// The `cpu` backend: every kernel of src/kernels/types.ts in C. Matrix
// products go through OpenBLAS (cblas_sgemm); everything else is plain loops
// with OpenMP. The first half of the file is the math (llm.c style, shapes in
// comments); the second half is the Node-API glue, which checks every
// argument's type and length so that no call can read or write out of bounds.
//
// Determinism: for a fixed thread count every result is bitwise reproducible.
// All OpenMP loops use static schedules; reductions across rows (bias,
// layernorm weight, embedding gradients) are parallelised over channel blocks
// (each output element is summed by one thread, in row order), and the scalar
// mse sum adds fixed-size chunk partials in chunk order. So the non-BLAS code
// gives the same bits for any thread count; OpenBLAS's sgemm need not (its
// Haswell kernels differ between 1 and 2 threads in the last bits).
//
// GELU uses glibc's vector math library (libmvec) through `omp declare simd`
// declarations of erfcf/expf; no -ffast-math anywhere. Measured against the
// double-precision ref: within 3e-6 relative everywhere on [-10, 10], the
// worst in the far negative tail, from rounding x/sqrt(2) to float.

#define NAPI_VERSION 8
#include <node_api.h>

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Vector variants exist in libmvec (_ZGV?N?v_erfcf, _ZGV?N?v_expf).
#pragma omp declare simd notinbranch
float erfcf(float);
#pragma omp declare simd notinbranch
float expf(float);

typedef int64_t i64;

// Parallelise an elementwise loop only when it is worth a fork/join.
#define PAR_MIN 32768
// Channel block for reductions over rows (one thread owns a block).
#define CB 32

// ---------------------------------------------------------------------------
// Matrix products

// C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C; op(A) = A^T (A stored
// [K,M]) when tA. beta == 0 means C is write-only.
static void matmul(float* C, const float* A, const float* B, int M, int N, int K,
                   bool tA, bool tB, float alpha, float beta) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // BLAS would reject lda = 0; the product is empty
    for (i64 i = 0; i < (i64)M * N; i++) C[i] = beta == 0.0f ? 0.0f : beta * C[i];
    return;
  }
  cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans,
              M, N, K, alpha, A, tA ? M : K, B, tB ? K : N, beta, C, N);
}

// dst[c] += sum_n src[n,c] for src [N,C], summed in double, in row order.
static void colsum_acc(float* dst, const float* src, i64 N, i64 C) {
  i64 nb = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (N * C > PAR_MIN)
  for (i64 b = 0; b < nb; b++) {
    i64 c0 = b * CB, w = C - c0 < CB ? C - c0 : CB;
    double acc[CB] = {0};
    for (i64 n = 0; n < N; n++) {
      const float* row = src + n * C + c0;
      for (i64 c = 0; c < w; c++) acc[c] += row[c];
    }
    for (i64 c = 0; c < w; c++) dst[c0 + c] += (float)acc[c];
  }
}

// out[N,OC] = inp[N,IC] @ weight[OC,IC]^T + bias[OC]
static void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                           int N, int IC, int OC) {
  if (bias) {
#pragma omp parallel for schedule(static) if ((i64)N * OC > PAR_MIN)
    for (i64 n = 0; n < N; n++) memcpy(out + n * OC, bias, sizeof(float) * OC);
  }
  matmul(out, inp, weight, N, OC, IC, false, true, 1.0f, bias ? 1.0f : 0.0f);
}

// dinp[N,IC] = (+=) dout[N,OC] @ weight[OC,IC]; dweight += dout^T @ inp; dbias += colsum(dout)
static void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                            const float* inp, const float* weight, int N, int IC, int OC, bool acc) {
  if (dinp) matmul(dinp, dout, weight, N, IC, OC, false, false, 1.0f, acc ? 1.0f : 0.0f);
  if (dweight) matmul(dweight, dout, inp, OC, IC, N, true, false, 1.0f, 1.0f);
  if (dbias) colsum_acc(dbias, dout, N, OC);
}

// ---------------------------------------------------------------------------
// Embeddings (tokens already range-checked by the glue)

// out[B,T,C] = wte[tokens[b,t]] + wpe[t]
static void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                              int B, int T, int C) {
#pragma omp parallel for schedule(static) if ((i64)B * T * C > PAR_MIN)
  for (i64 bt = 0; bt < (i64)B * T; bt++) {
    const float* e = wte + (i64)tokens[bt] * C;
    const float* p = wpe + (bt % T) * C;
    float* o = out + bt * C;
    for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
  }
}

// dwte[tokens[b,t]] += dout[b,t] (skipping paddingIdx); dwpe[t] += sum_b dout[b,t].
// Both parallel over channel blocks, rows in order: no races, no atomics.
static void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                               int B, int T, int C, int pad) {
  i64 nb = (C + CB - 1) / CB;
  if (dwte) {
#pragma omp parallel for schedule(static) if ((i64)B * T * C > PAR_MIN)
    for (i64 b = 0; b < nb; b++) {
      i64 c0 = b * CB, w = C - c0 < CB ? C - c0 : CB;
      for (i64 bt = 0; bt < (i64)B * T; bt++) {
        if (tokens[bt] == pad) continue;
        float* d = dwte + (i64)tokens[bt] * C + c0;
        const float* g = dout + bt * C + c0;
        for (i64 c = 0; c < w; c++) d[c] += g[c];
      }
    }
  }
  if (dwpe) {
#pragma omp parallel for schedule(static) if ((i64)B * T * C > PAR_MIN)
    for (i64 t = 0; t < T; t++) {
      float* d = dwpe + t * C;
      for (i64 b = 0; b < B; b++) {
        const float* g = dout + (b * T + t) * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
      }
    }
  }
}

// ---------------------------------------------------------------------------
// LayerNorm (biased variance, as torch.nn.LayerNorm)

// out[N,C] = (inp - mean) * rstd * weight + bias; mean[N], rstd[N] saved
static void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                              const float* weight, const float* bias, int N, int C, double eps) {
#pragma omp parallel for schedule(static) if ((i64)N * C > PAR_MIN)
  for (i64 n = 0; n < N; n++) {
    const float* x = inp + n * C;
    double m = 0.0;
#pragma omp simd reduction(+ : m)
    for (int c = 0; c < C; c++) m += x[c];
    m /= C;
    double v = 0.0;
#pragma omp simd reduction(+ : v)
    for (int c = 0; c < C; c++) {
      double d = x[c] - m;
      v += d * d;
    }
    v /= C;
    float s = (float)(1.0 / sqrt(v + eps));
    float mf = (float)m;
    float* o = out + n * C;
    for (int c = 0; c < C; c++) o[c] = (x[c] - mf) * s * weight[c] + bias[c];
    mean[n] = mf;
    rstd[n] = s;
  }
}

// dinp[N,C] overwritten; dweight[C] += sum_n dout*norm; dbias[C] += sum_n dout
static void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, const float* mean,
                               const float* rstd, int N, int C) {
  // parameter gradients first (so that dinp may even alias dout)
  if (dweight || dbias) {
    i64 nb = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static) if ((i64)N * C > PAR_MIN)
    for (i64 b = 0; b < nb; b++) {
      i64 c0 = b * CB, w = C - c0 < CB ? C - c0 : CB;
      double dw[CB] = {0}, db[CB] = {0};
      for (i64 n = 0; n < N; n++) {
        const float* x = inp + n * C + c0;
        const float* g = dout + n * C + c0;
        float m = mean[n], s = rstd[n];
        for (i64 c = 0; c < w; c++) {
          dw[c] += g[c] * ((x[c] - m) * s);
          db[c] += g[c];
        }
      }
      for (i64 c = 0; c < w; c++) {
        if (dweight) dweight[c0 + c] += (float)dw[c];
        if (dbias) dbias[c0 + c] += (float)db[c];
      }
    }
  }
  // dinp = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dout * weight
#pragma omp parallel for schedule(static) if ((i64)N * C > PAR_MIN)
  for (i64 n = 0; n < N; n++) {
    const float* x = inp + n * C;
    const float* g = dout + n * C;
    float m = mean[n], s = rstd[n];
    double a = 0.0, bsum = 0.0;
#pragma omp simd reduction(+ : a, bsum)
    for (int c = 0; c < C; c++) {
      float dnorm = g[c] * weight[c];
      a += dnorm;
      bsum += dnorm * ((x[c] - m) * s);
    }
    float dmean = (float)(a / C), dnn = (float)(bsum / C);
    float* d = dinp + n * C;
    for (int c = 0; c < C; c++) {
      float norm = (x[c] - m) * s;
      d[c] = s * (g[c] * weight[c] - dmean - norm * dnn);
    }
  }
}

// ---------------------------------------------------------------------------
// Attention, per (sample, head) with OpenMP over B*H; the three small products
// of each head are sgemm calls on strided views of qkv (row stride 3C), which
// OpenBLAS runs single-threaded inside the parallel loop. qkv is [B,T,3C];
// head h uses columns h*hs..(h+1)*hs of q, k and v. Each (b,h) touches only
// its own columns of out/dqkv and its own [T,T] block of att/datt: no races.
//
// A loop-fused C version (scores, softmax and products in one pass per head,
// K/V transposed into per-thread scratch) was measured against this one and
// lost by 2-4x (1 thread, ms; pattern / apply / backward):
//   B=128 T=49 C=128 H=4:  fused 7.0 / 6.4 / 24.3   sgemm per head 3.1 / 1.7 / 6.2
//   B=128 T=49 C=768 H=8:  fused 25.7 / 30.6 / 110  sgemm per head 11.7 / 8.5 / 32.3
// (its accumulators round-trip through memory; OpenBLAS's micro-kernels don't).

// att[B,H,T,T] = softmax_k(q_t . k_k / sqrt(hs) + bias[b,t,k]); bias [B,T,T]
// (shared by the heads) may be NULL.
static void attention_pattern(float* att, const float* qkv, const float* bias, int B, int T, int C, int H) {
  if (B == 0 || T == 0) return;  // (BLAS rejects leading dimension 0)
  int hs = C / H;
  float scale = (float)(1.0 / sqrt((double)hs));
  int C3 = 3 * C;
#pragma omp parallel for schedule(static)
  for (i64 bh = 0; bh < (i64)B * H; bh++) {
    i64 b = bh / H, h = bh % H;
    const float* q = qkv + b * T * C3 + h * hs;
    float* a = att + bh * T * T;
    // a[T,T] = scale * q[T,hs] @ k[T,hs]^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, q + C, C3, 0.0f, a, T);
    for (int t = 0; t < T; t++) {
      float* s = a + (i64)t * T;
      if (bias) {
        const float* br = bias + (b * T + t) * (i64)T;
        for (int k = 0; k < T; k++) s[k] += br[k];
      }
      float mx = -INFINITY;
      for (int k = 0; k < T; k++) mx = s[k] > mx ? s[k] : mx;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int k = 0; k < T; k++) {
        s[k] = expf(s[k] - mx);
        sum += s[k];
      }
      float inv = 1.0f / sum;
      for (int k = 0; k < T; k++) s[k] *= inv;
    }
  }
}

// out[b,t,h*hs+j] = sum_k att[b,h,t,k] * v[b,k,h*hs+j]
static void attention_apply(float* out, const float* att, const float* qkv, int B, int T, int C, int H) {
  if (B == 0 || T == 0) return;  // (BLAS rejects leading dimension 0)
  int hs = C / H;
  int C3 = 3 * C;
#pragma omp parallel for schedule(static)
  for (i64 bh = 0; bh < (i64)B * H; bh++) {
    i64 b = bh / H, h = bh % H;
    // out_h[T,hs] = att[T,T] @ v[T,hs]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, att + bh * T * T, T,
                qkv + b * T * C3 + 2 * C + h * hs, C3, 0.0f, out + b * T * C + h * hs, C);
  }
}

// Backward of apply∘pattern. dqkv[B,T,3C] overwritten; datt[B,H,T,T] is
// scratch (it ends holding the gradient of the pre-softmax scores / scale).
static void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv,
                               const float* att, int B, int T, int C, int H) {
  if (B == 0 || T == 0) return;  // (BLAS rejects leading dimension 0)
  int hs = C / H;
  float scale = (float)(1.0 / sqrt((double)hs));
  int C3 = 3 * C;
#pragma omp parallel for schedule(static)
  for (i64 bh = 0; bh < (i64)B * H; bh++) {
    i64 b = bh / H, h = bh % H;
    const float* q = qkv + b * T * C3 + h * hs;  // k = q + C, v = q + 2C
    float* dq = dqkv + b * T * C3 + h * hs;      // dk = dq + C, dv = dq + 2C
    const float* a = att + bh * T * T;
    float* da = datt + bh * T * T;
    const float* go = dout + b * T * C + h * hs;
    // datt[T,T] = dout_h[T,hs] @ v^T;  dv[T,hs] = att^T @ dout_h
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, go, C, q + 2 * C, C3, 0.0f, da, T);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, a, T, go, C, 0.0f, dq + 2 * C, C3);
    // softmax backward in place: datt[t,k] = att[t,k] (datt[t,k] - sum_k' att[t,k'] datt[t,k'])
    for (int t = 0; t < T; t++) {
      const float* ar = a + (i64)t * T;
      float* dr = da + (i64)t * T;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int k = 0; k < T; k++) dot += ar[k] * dr[k];
      for (int k = 0; k < T; k++) dr[k] = ar[k] * (dr[k] - dot);
    }
    // dq = scale * dpre @ k;  dk = scale * dpre^T @ q
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, da, T, q + C, C3, 0.0f, dq, C3);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, da, T, q, C3, 0.0f, dq + C, C3);
  }
}

// ---------------------------------------------------------------------------
// Elementwise

#define INV_SQRT_2PI 0.3989422804014327f

// out = x * Phi(x), Phi(x) = erfc(-x/sqrt2)/2 (accurate in the negative tail)
static void gelu_forward(float* out, const float* inp, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (i64 i = 0; i < n; i++) {
    float x = inp[i];
    out[i] = x * 0.5f * erfcf(-x * (float)M_SQRT1_2);
  }
}

// dinp = dout * (Phi(x) + x phi(x))
static void gelu_backward(float* dinp, const float* inp, const float* dout, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (i64 i = 0; i < n; i++) {
    float x = inp[i];
    float cdf = 0.5f * erfcf(-x * (float)M_SQRT1_2);
    float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
    dinp[i] = dout[i] * (cdf + x * pdf);
  }
}

static void add(float* out, const float* a, const float* b, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (i64 i = 0; i < n; i++) out[i] = a[i] + b[i];
}

#define MSE_CHUNK 8192

// returns sum (pred - target)^2; dpred = gradScale * 2 * (pred - target) if dpred
static int mse(double* result, float* dpred, const float* pred, const float* target, i64 n, double gscale) {
  i64 nc = (n + MSE_CHUNK - 1) / MSE_CHUNK;
  double* part = malloc(sizeof(double) * (nc > 0 ? nc : 1));
  if (!part) return -1;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
  for (i64 c = 0; c < nc; c++) {
    i64 i0 = c * MSE_CHUNK, i1 = i0 + MSE_CHUNK < n ? i0 + MSE_CHUNK : n;
    // 8 explicit lanes: the summation order is fixed by the code, not by
    // how the compiler vectorises (so the sum is the same with or without dpred)
    double lane[8] = {0};
    i64 i = i0;
    for (; i + 8 <= i1; i += 8)
      for (int l = 0; l < 8; l++) {
        double d = (double)pred[i + l] - target[i + l];
        lane[l] += d * d;
      }
    for (; i < i1; i++) {
      double d = (double)pred[i] - target[i];
      lane[0] += d * d;
    }
    if (dpred)
      for (i = i0; i < i1; i++) dpred[i] = (float)(gscale * 2.0 * ((double)pred[i] - target[i]));
    double s = 0.0;
    for (int l = 0; l < 8; l++) s += lane[l];
    part[c] = s;
  }
  double s = 0.0;
  for (i64 c = 0; c < nc; c++) s += part[c];
  free(part);
  *result = s;
  return 0;
}

// torch.optim.Adam, step counted from 1; wd > 0: torch.optim.AdamW's
// decoupled decay p *= 1 - lr*wd before the update
static void adam(float* p, const float* g, float* m, float* v, i64 n, double lr, double b1, double b2,
                 double eps, double step, double wd) {
  float step_size = (float)(lr / (1.0 - pow(b1, step)));
  float bc2_sqrt = (float)sqrt(1.0 - pow(b2, step));
  float fb1 = (float)b1, fb2 = (float)b2, fe = (float)eps;
  float a1 = (float)(1.0 - b1), a2 = (float)(1.0 - b2);
  float keep = (float)(1.0 - lr * wd);
  bool decay = wd != 0.0;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (i64 i = 0; i < n; i++) {
    float gi = g[i];
    if (decay) p[i] *= keep;
    float mi = fb1 * m[i] + a1 * gi;
    float vi = fb2 * v[i] + a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step_size * mi / (sqrtf(vi) / bc2_sqrt + fe);
  }
}

// torch.optim.SGD without momentum: p -= lr * (g + wd * p)
static void sgd(float* p, const float* g, i64 n, double lr, double wd) {
  float flr = (float)lr, fwd = (float)wd;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (i64 i = 0; i < n; i++) p[i] -= flr * (g[i] + fwd * p[i]);
}

// ---------------------------------------------------------------------------
// The GPT's kernels: causal attention (softmax or linear), tanh GELU,
// softmax cross-entropy. Attention as above: sgemm per (sample, head) on
// strided views of qkv, the full [T,T] block (the upper triangle is computed
// and then zeroed: at T ~ 100 that is cheaper than T small products).

// att[B,H,T,T]: softmax over k <= t of q_t . k_k / sqrt(hs) (softmax), or the
// scaled scores themselves (linear); 0 for k > t
static void causal_attention_pattern(float* att, const float* qkv, int B, int T, int C, int H, bool softmax) {
  if (B == 0 || T == 0) return;
  int hs = C / H;
  float scale = (float)(1.0 / sqrt((double)hs));
  int C3 = 3 * C;
#pragma omp parallel for schedule(static)
  for (i64 bh = 0; bh < (i64)B * H; bh++) {
    i64 b = bh / H, h = bh % H;
    const float* q = qkv + b * T * C3 + h * hs;
    float* a = att + bh * T * T;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, q + C, C3, 0.0f, a, T);
    for (int t = 0; t < T; t++) {
      float* s = a + (i64)t * T;
      for (int k = t + 1; k < T; k++) s[k] = 0.0f;
      if (!softmax) continue;
      float mx = -INFINITY;
      for (int k = 0; k <= t; k++) mx = s[k] > mx ? s[k] : mx;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int k = 0; k <= t; k++) {
        s[k] = expf(s[k] - mx);
        sum += s[k];
      }
      float inv = 1.0f / sum;
      for (int k = 0; k <= t; k++) s[k] *= inv;
    }
  }
}

// Backward of attention_apply o causal_attention_pattern. dqkv[B,T,3C]
// overwritten; datt[B,H,T,T] scratch (ends as the score gradient / scale).
static void causal_attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv,
                                      const float* att, int B, int T, int C, int H, bool softmax) {
  if (B == 0 || T == 0) return;
  int hs = C / H;
  float scale = (float)(1.0 / sqrt((double)hs));
  int C3 = 3 * C;
#pragma omp parallel for schedule(static)
  for (i64 bh = 0; bh < (i64)B * H; bh++) {
    i64 b = bh / H, h = bh % H;
    const float* q = qkv + b * T * C3 + h * hs;  // k = q + C, v = q + 2C
    float* dq = dqkv + b * T * C3 + h * hs;      // dk = dq + C, dv = dq + 2C
    const float* a = att + bh * T * T;
    float* da = datt + bh * T * T;
    const float* go = dout + b * T * C + h * hs;
    // datt[T,T] = dout_h @ v^T;  dv = att^T @ dout_h (att is 0 above the diagonal)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, go, C, q + 2 * C, C3, 0.0f, da, T);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, a, T, go, C, 0.0f, dq + 2 * C, C3);
    for (int t = 0; t < T; t++) {
      const float* ar = a + (i64)t * T;
      float* dr = da + (i64)t * T;
      for (int k = t + 1; k < T; k++) dr[k] = 0.0f;  // masked entries are constants
      if (!softmax) continue;
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int k = 0; k <= t; k++) dot += ar[k] * dr[k];
      for (int k = 0; k <= t; k++) dr[k] = ar[k] * (dr[k] - dot);
    }
    // dq = scale * dscore @ k;  dk = scale * dscore^T @ q
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, da, T, q + C, C3, 0.0f, dq, C3);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, da, T, q, C3, 0.0f, dq + C, C3);
  }
}

#define GELU_TANH_K 0.7978845608028654f  // sqrt(2/pi)
#define GELU_TANH_A 0.044715f

// out = 0.5 x (1 + tanh(u)) = x sigma(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
// (the sigmoid form does not cancel for x << 0)
static void gelu_tanh_forward(float* out, const float* inp, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (i64 i = 0; i < n; i++) {
    float x = inp[i];
    float u = GELU_TANH_K * (x + GELU_TANH_A * x * x * x);
    out[i] = x / (1.0f + expf(-2.0f * u));
  }
}

// dinp = dout * (s + 2 x s (1 - s) u'), s = sigma(2u), u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
static void gelu_tanh_backward(float* dinp, const float* inp, const float* dout, i64 n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
  for (i64 i = 0; i < n; i++) {
    float x = inp[i];
    float u = GELU_TANH_K * (x + GELU_TANH_A * x * x * x);
    float s = 1.0f / (1.0f + expf(-2.0f * u));
    float du = GELU_TANH_K * (1.0f + 3.0f * GELU_TANH_A * x * x);
    dinp[i] = dout[i] * (s + 2.0f * x * s * (1.0f - s) * du);
  }
}

// Cross-entropy of logits[N,V] against targets[N] (-1 = row left out; checked
// by the glue), count rows counted. Per row: nll = logsumexp - logit[target];
// dlogits = gscale (softmax - onehot) / count (may alias logits: each row is
// read completely before it is written). Row terms are summed in row order.
static int cross_entropy(double* result, float* dlogits, float* row_loss, const float* logits, const int32_t* targets,
                         i64 N, i64 V, double gscale, i64 count) {
  double* nll = malloc(sizeof(double) * (N > 0 ? N : 1));
  if (!nll) return -1;
  float g = count > 0 ? (float)(gscale / (double)count) : 0.0f;
#pragma omp parallel for schedule(static) if (N * V > PAR_MIN)
  for (i64 i = 0; i < N; i++) {
    const float* l = logits + i * V;
    int32_t tgt = targets[i];
    if (tgt < 0) {
      nll[i] = 0.0;
      if (dlogits) memset(dlogits + i * V, 0, sizeof(float) * V);
      continue;
    }
    float mx = -INFINITY;
    for (i64 c = 0; c < V; c++) mx = l[c] > mx ? l[c] : mx;
    double z = 0.0;
#pragma omp simd reduction(+ : z)
    for (i64 c = 0; c < V; c++) z += expf(l[c] - mx);
    double lse = (double)mx + log(z);
    nll[i] = lse - (double)l[tgt];
    if (dlogits) {
      float lsef = (float)lse;
      float* d = dlogits + i * V;
      for (i64 c = 0; c < V; c++) d[c] = g * expf(l[c] - lsef);
      d[tgt] -= g;
    }
  }
  double s = 0.0;
  for (i64 i = 0; i < N; i++) {
    s += nll[i];
    if (row_loss) row_loss[i] = (float)nll[i];
  }
  free(nll);
  *result = count > 0 ? s / (double)count : 0.0;
  return 0;
}

// ---------------------------------------------------------------------------
// Threads

static int n_threads = 1;

static void set_threads(int n) {
  n_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

// ===========================================================================
// Node-API glue. Every argument is checked: types (Float32Array / Int32Array
// / integer / number / boolean) and lengths against the shapes. A failed check
// throws a JS TypeError/RangeError naming the function and argument.
// napi_get_typedarray_info returns `data` already advanced by byte_offset, so
// subarray views are handled without further arithmetic.

#define MAXARGS 12

typedef struct {
  napi_env env;
  const char* fn;
  size_t argc;
  napi_value argv[MAXARGS];
  bool bad;
} Args;

typedef struct {
  float* p;
  i64 n;
} FArr;

static void fail(Args* a, bool range, const char* fmt, ...) {
  if (a->bad) return;
  char msg[320];
  int k = snprintf(msg, sizeof msg, "%s: ", a->fn);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + k, sizeof msg - k, fmt, ap);
  va_end(ap);
  if (range) napi_throw_range_error(a->env, NULL, msg);
  else napi_throw_type_error(a->env, NULL, msg);
  a->bad = true;
}

static bool args_init(Args* a, napi_env env, napi_callback_info info, const char* fn, size_t want) {
  a->env = env;
  a->fn = fn;
  a->bad = false;
  a->argc = MAXARGS;
  if (napi_get_cb_info(env, info, &a->argc, a->argv, NULL, NULL) != napi_ok) {
    fail(a, false, "cannot read arguments");
    return false;
  }
  if (a->argc < want) {
    fail(a, false, "expected %zu arguments, got %zu", want, a->argc);
    return false;
  }
  return true;
}

static bool is_nullish(Args* a, size_t i) {
  napi_valuetype t;
  if (napi_typeof(a->env, a->argv[i], &t) != napi_ok) return false;
  return t == napi_null || t == napi_undefined;
}

static void* arg_typed(Args* a, size_t i, const char* name, napi_typedarray_type want, const char* tname,
                       i64* len) {
  *len = 0;
  if (a->bad) return NULL;
  bool is = false;
  napi_is_typedarray(a->env, a->argv[i], &is);
  napi_typedarray_type type;
  size_t n = 0, off = 0;
  void* data = NULL;
  napi_value ab;
  if (!is || napi_get_typedarray_info(a->env, a->argv[i], &type, &n, &data, &ab, &off) != napi_ok ||
      type != want) {
    fail(a, false, "%s must be a %s", name, tname);
    return NULL;
  }
  *len = (i64)n;
  return data;
}

static FArr arg_f32(Args* a, size_t i, const char* name) {
  FArr r;
  r.p = arg_typed(a, i, name, napi_float32_array, "Float32Array", &r.n);
  return r;
}

static FArr arg_f32_or_null(Args* a, size_t i, const char* name) {
  if (!a->bad && is_nullish(a, i)) return (FArr){NULL, 0};
  return arg_f32(a, i, name);
}

static double arg_num(Args* a, size_t i, const char* name) {
  double x = 0.0;
  if (a->bad) return 0.0;
  if (napi_get_value_double(a->env, a->argv[i], &x) != napi_ok) fail(a, false, "%s must be a number", name);
  return x;
}

// an integer in [lo, INT32_MAX]
static int arg_int(Args* a, size_t i, const char* name, i64 lo) {
  double x = arg_num(a, i, name);
  if (a->bad) return 0;
  if (!(x == floor(x) && x >= (double)lo && x <= 2147483647.0)) {
    fail(a, true, "%s must be an integer >= %lld, got %g", name, (long long)lo, x);
    return 0;
  }
  return (int)x;
}

static bool arg_bool(Args* a, size_t i, const char* name) {
  bool x = false;
  if (a->bad) return false;
  if (napi_get_value_bool(a->env, a->argv[i], &x) != napi_ok) fail(a, false, "%s must be a boolean", name);
  return x;
}

// product of nonnegative sizes, saturating (a saturated size fails every length check)
static i64 mul(i64 x, i64 y) {
  i64 r;
  return __builtin_mul_overflow(x, y, &r) ? INT64_MAX : r;
}
static i64 mul3(i64 x, i64 y, i64 z) { return mul(mul(x, y), z); }
static i64 mul4(i64 w, i64 x, i64 y, i64 z) { return mul(mul(w, x), mul(y, z)); }

static void need(Args* a, i64 len, i64 n, const char* name) {
  if (a->bad || (len >= n && n >= 0)) return;
  fail(a, true, "%s has %lld elements, needs %lld", name, (long long)len, (long long)n);
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value oom(Args* a) {
  napi_throw_error(a->env, NULL, "abrupt native: out of memory");
  return NULL;
}

// Checks tokens are in [0, V), V = table rows.
static void check_tokens(Args* a, const int32_t* tok, i64 n, i64 V) {
  if (a->bad) return;
  for (i64 i = 0; i < n; i++) {
    if (tok[i] < 0 || tok[i] >= V) {
      fail(a, true, "token %d at index %lld outside [0, %lld)", tok[i], (long long)i, (long long)V);
      return;
    }
  }
}

static void check_heads(Args* a, int C, int H) {
  if (!a->bad && (H < 1 || C % H != 0)) fail(a, true, "C=%d is not divisible by H=%d", C, H);
}

// matmul(C, A, B, M, N, K, transA, transB, alpha, beta)
static napi_value js_matmul(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "matmul", 10)) return NULL;
  FArr C = arg_f32(&a, 0, "C"), A = arg_f32(&a, 1, "A"), B = arg_f32(&a, 2, "B");
  int M = arg_int(&a, 3, "M", 0), N = arg_int(&a, 4, "N", 0), K = arg_int(&a, 5, "K", 0);
  bool tA = arg_bool(&a, 6, "transA"), tB = arg_bool(&a, 7, "transB");
  double alpha = arg_num(&a, 8, "alpha"), beta = arg_num(&a, 9, "beta");
  need(&a, C.n, mul(M, N), "C");
  need(&a, A.n, mul(M, K), "A");
  need(&a, B.n, mul(K, N), "B");
  if (a.bad) return NULL;
  matmul(C.p, A.p, B.p, M, N, K, tA, tB, (float)alpha, (float)beta);
  return undefined(env);
}

// linearForward(out, inp, weight, bias|null, N, IC, OC)
static napi_value js_linear_forward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "linearForward", 7)) return NULL;
  FArr out = arg_f32(&a, 0, "out"), inp = arg_f32(&a, 1, "inp"), w = arg_f32(&a, 2, "weight");
  FArr bias = arg_f32_or_null(&a, 3, "bias");
  int N = arg_int(&a, 4, "N", 0), IC = arg_int(&a, 5, "IC", 0), OC = arg_int(&a, 6, "OC", 0);
  need(&a, out.n, mul(N, OC), "out");
  need(&a, inp.n, mul(N, IC), "inp");
  need(&a, w.n, mul(OC, IC), "weight");
  if (bias.p) need(&a, bias.n, OC, "bias");
  if (a.bad) return NULL;
  linear_forward(out.p, inp.p, w.p, bias.p, N, IC, OC);
  return undefined(env);
}

// linearBackward(dinp|null, dweight|null, dbias|null, dout, inp, weight, N, IC, OC, accumulateDinp)
static napi_value js_linear_backward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "linearBackward", 10)) return NULL;
  FArr dinp = arg_f32_or_null(&a, 0, "dinp"), dw = arg_f32_or_null(&a, 1, "dweight");
  FArr db = arg_f32_or_null(&a, 2, "dbias");
  FArr dout = arg_f32(&a, 3, "dout");
  FArr inp = arg_f32_or_null(&a, 4, "inp"), w = arg_f32_or_null(&a, 5, "weight");
  int N = arg_int(&a, 6, "N", 0), IC = arg_int(&a, 7, "IC", 0), OC = arg_int(&a, 8, "OC", 0);
  bool acc = arg_bool(&a, 9, "accumulateDinp");
  need(&a, dout.n, mul(N, OC), "dout");
  if (dinp.p) {
    need(&a, dinp.n, mul(N, IC), "dinp");
    if (!w.p) fail(&a, false, "weight is required for dinp");
    need(&a, w.n, mul(OC, IC), "weight");
  }
  if (dw.p) {
    need(&a, dw.n, mul(OC, IC), "dweight");
    if (!inp.p) fail(&a, false, "inp is required for dweight");
    need(&a, inp.n, mul(N, IC), "inp");
  }
  if (db.p) need(&a, db.n, OC, "dbias");
  if (a.bad) return NULL;
  linear_backward(dinp.p, dw.p, db.p, dout.p, inp.p, w.p, N, IC, OC, acc);
  return undefined(env);
}

// embeddingForward(out, tokens, wte, wpe, B, T, C)
static napi_value js_embedding_forward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "embeddingForward", 7)) return NULL;
  FArr out = arg_f32(&a, 0, "out");
  i64 ntok = 0;
  int32_t* tok = arg_typed(&a, 1, "tokens", napi_int32_array, "Int32Array", &ntok);
  FArr wte = arg_f32(&a, 2, "wte"), wpe = arg_f32(&a, 3, "wpe");
  int B = arg_int(&a, 4, "B", 0), T = arg_int(&a, 5, "T", 0), C = arg_int(&a, 6, "C", 1);
  need(&a, out.n, mul3(B, T, C), "out");
  need(&a, ntok, mul(B, T), "tokens");
  need(&a, wpe.n, mul(T, C), "wpe");
  check_tokens(&a, tok, mul(B, T), wte.n / (C > 0 ? C : 1));
  if (a.bad) return NULL;
  embedding_forward(out.p, tok, wte.p, wpe.p, B, T, C);
  return undefined(env);
}

// embeddingBackward(dwte|null, dwpe|null, dout, tokens, B, T, C, paddingIdx)
static napi_value js_embedding_backward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "embeddingBackward", 8)) return NULL;
  FArr dwte = arg_f32_or_null(&a, 0, "dwte"), dwpe = arg_f32_or_null(&a, 1, "dwpe");
  FArr dout = arg_f32(&a, 2, "dout");
  i64 ntok = 0;
  int32_t* tok = arg_typed(&a, 3, "tokens", napi_int32_array, "Int32Array", &ntok);
  int B = arg_int(&a, 4, "B", 0), T = arg_int(&a, 5, "T", 0), C = arg_int(&a, 6, "C", 1);
  int pad = arg_int(&a, 7, "paddingIdx", -1);
  need(&a, dout.n, mul3(B, T, C), "dout");
  need(&a, ntok, mul(B, T), "tokens");
  if (dwte.p) check_tokens(&a, tok, mul(B, T), dwte.n / (C > 0 ? C : 1));
  if (dwpe.p) need(&a, dwpe.n, mul(T, C), "dwpe");
  if (a.bad) return NULL;
  embedding_backward(dwte.p, dwpe.p, dout.p, tok, B, T, C, pad);
  return undefined(env);
}

// layernormForward(out, mean, rstd, inp, weight, bias, N, C, eps)
static napi_value js_layernorm_forward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "layernormForward", 9)) return NULL;
  FArr out = arg_f32(&a, 0, "out"), mean = arg_f32(&a, 1, "mean"), rstd = arg_f32(&a, 2, "rstd");
  FArr inp = arg_f32(&a, 3, "inp"), w = arg_f32(&a, 4, "weight"), b = arg_f32(&a, 5, "bias");
  int N = arg_int(&a, 6, "N", 0), C = arg_int(&a, 7, "C", 1);
  double eps = arg_num(&a, 8, "eps");
  need(&a, out.n, mul(N, C), "out");
  need(&a, inp.n, mul(N, C), "inp");
  need(&a, mean.n, N, "mean");
  need(&a, rstd.n, N, "rstd");
  need(&a, w.n, C, "weight");
  need(&a, b.n, C, "bias");
  if (a.bad) return NULL;
  layernorm_forward(out.p, mean.p, rstd.p, inp.p, w.p, b.p, N, C, eps);
  return undefined(env);
}

// layernormBackward(dinp, dweight|null, dbias|null, dout, inp, weight, mean, rstd, N, C)
static napi_value js_layernorm_backward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "layernormBackward", 10)) return NULL;
  FArr dinp = arg_f32(&a, 0, "dinp"), dw = arg_f32_or_null(&a, 1, "dweight");
  FArr db = arg_f32_or_null(&a, 2, "dbias");
  FArr dout = arg_f32(&a, 3, "dout"), inp = arg_f32(&a, 4, "inp"), w = arg_f32(&a, 5, "weight");
  FArr mean = arg_f32(&a, 6, "mean"), rstd = arg_f32(&a, 7, "rstd");
  int N = arg_int(&a, 8, "N", 0), C = arg_int(&a, 9, "C", 1);
  need(&a, dinp.n, mul(N, C), "dinp");
  need(&a, dout.n, mul(N, C), "dout");
  need(&a, inp.n, mul(N, C), "inp");
  need(&a, w.n, C, "weight");
  need(&a, mean.n, N, "mean");
  need(&a, rstd.n, N, "rstd");
  if (dw.p) need(&a, dw.n, C, "dweight");
  if (db.p) need(&a, db.n, C, "dbias");
  if (a.bad) return NULL;
  layernorm_backward(dinp.p, dw.p, db.p, dout.p, inp.p, w.p, mean.p, rstd.p, N, C);
  return undefined(env);
}

// attentionPattern(att, qkv, B, T, C, H, bias|null|undefined)
static napi_value js_attention_pattern(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "attentionPattern", 6)) return NULL;
  FArr att = arg_f32(&a, 0, "att"), qkv = arg_f32(&a, 1, "qkv");
  int B = arg_int(&a, 2, "B", 0), T = arg_int(&a, 3, "T", 0), C = arg_int(&a, 4, "C", 1);
  int H = arg_int(&a, 5, "H", 1);
  FArr bias = arg_f32_or_null(&a, 6, "bias");  // argv past argc reads as undefined
  check_heads(&a, C, H);
  need(&a, att.n, mul4(B, H, T, T), "att");
  need(&a, qkv.n, mul4(B, T, 3, C), "qkv");
  if (bias.p) need(&a, bias.n, mul3(B, T, T), "bias");
  if (a.bad) return NULL;
  attention_pattern(att.p, qkv.p, bias.p, B, T, C, H);
  return undefined(env);
}

// attentionApply(out, att, qkv, B, T, C, H)
static napi_value js_attention_apply(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "attentionApply", 7)) return NULL;
  FArr out = arg_f32(&a, 0, "out"), att = arg_f32(&a, 1, "att"), qkv = arg_f32(&a, 2, "qkv");
  int B = arg_int(&a, 3, "B", 0), T = arg_int(&a, 4, "T", 0), C = arg_int(&a, 5, "C", 1);
  int H = arg_int(&a, 6, "H", 1);
  check_heads(&a, C, H);
  need(&a, out.n, mul3(B, T, C), "out");
  need(&a, att.n, mul4(B, H, T, T), "att");
  need(&a, qkv.n, mul4(B, T, 3, C), "qkv");
  if (a.bad) return NULL;
  attention_apply(out.p, att.p, qkv.p, B, T, C, H);
  return undefined(env);
}

// attentionBackward(dqkv, datt, dout, qkv, att, B, T, C, H)
static napi_value js_attention_backward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "attentionBackward", 9)) return NULL;
  FArr dqkv = arg_f32(&a, 0, "dqkv"), datt = arg_f32(&a, 1, "datt"), dout = arg_f32(&a, 2, "dout");
  FArr qkv = arg_f32(&a, 3, "qkv"), att = arg_f32(&a, 4, "att");
  int B = arg_int(&a, 5, "B", 0), T = arg_int(&a, 6, "T", 0), C = arg_int(&a, 7, "C", 1);
  int H = arg_int(&a, 8, "H", 1);
  check_heads(&a, C, H);
  need(&a, dqkv.n, mul4(B, T, 3, C), "dqkv");
  need(&a, qkv.n, mul4(B, T, 3, C), "qkv");
  need(&a, datt.n, mul4(B, H, T, T), "datt");
  need(&a, att.n, mul4(B, H, T, T), "att");
  need(&a, dout.n, mul3(B, T, C), "dout");
  if (a.bad) return NULL;
  attention_backward(dqkv.p, datt.p, dout.p, qkv.p, att.p, B, T, C, H);
  return undefined(env);
}

// geluForward(out, inp, n)
static napi_value js_gelu_forward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "geluForward", 3)) return NULL;
  FArr out = arg_f32(&a, 0, "out"), inp = arg_f32(&a, 1, "inp");
  int n = arg_int(&a, 2, "n", 0);
  need(&a, out.n, n, "out");
  need(&a, inp.n, n, "inp");
  if (a.bad) return NULL;
  gelu_forward(out.p, inp.p, n);
  return undefined(env);
}

// geluBackward(dinp, inp, dout, n)
static napi_value js_gelu_backward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "geluBackward", 4)) return NULL;
  FArr dinp = arg_f32(&a, 0, "dinp"), inp = arg_f32(&a, 1, "inp"), dout = arg_f32(&a, 2, "dout");
  int n = arg_int(&a, 3, "n", 0);
  need(&a, dinp.n, n, "dinp");
  need(&a, inp.n, n, "inp");
  need(&a, dout.n, n, "dout");
  if (a.bad) return NULL;
  gelu_backward(dinp.p, inp.p, dout.p, n);
  return undefined(env);
}

// add(out, a, b, n)
static napi_value js_add(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "add", 4)) return NULL;
  FArr out = arg_f32(&a, 0, "out"), x = arg_f32(&a, 1, "a"), y = arg_f32(&a, 2, "b");
  int n = arg_int(&a, 3, "n", 0);
  need(&a, out.n, n, "out");
  need(&a, x.n, n, "a");
  need(&a, y.n, n, "b");
  if (a.bad) return NULL;
  add(out.p, x.p, y.p, n);
  return undefined(env);
}

// mse(dpred|null, pred, target, n, gradScale) -> number
static napi_value js_mse(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "mse", 5)) return NULL;
  FArr dpred = arg_f32_or_null(&a, 0, "dpred"), pred = arg_f32(&a, 1, "pred");
  FArr target = arg_f32(&a, 2, "target");
  int n = arg_int(&a, 3, "n", 0);
  double gs = arg_num(&a, 4, "gradScale");
  need(&a, pred.n, n, "pred");
  need(&a, target.n, n, "target");
  if (dpred.p) need(&a, dpred.n, n, "dpred");
  if (a.bad) return NULL;
  double s = 0.0;
  if (mse(&s, dpred.p, pred.p, target.p, n, gs)) return oom(&a);
  napi_value r;
  napi_create_double(env, s, &r);
  return r;
}

// adam(param, grad, m, v, n, lr, beta1, beta2, eps, step, weightDecay?)
static napi_value js_adam(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "adam", 10)) return NULL;
  FArr p = arg_f32(&a, 0, "param"), g = arg_f32(&a, 1, "grad"), m = arg_f32(&a, 2, "m");
  FArr v = arg_f32(&a, 3, "v");
  int n = arg_int(&a, 4, "n", 0);
  double lr = arg_num(&a, 5, "lr"), b1 = arg_num(&a, 6, "beta1"), b2 = arg_num(&a, 7, "beta2");
  double eps = arg_num(&a, 8, "eps");
  int step = arg_int(&a, 9, "step", 1);
  double wd = is_nullish(&a, 10) ? 0.0 : arg_num(&a, 10, "weightDecay");
  need(&a, p.n, n, "param");
  need(&a, g.n, n, "grad");
  need(&a, m.n, n, "m");
  need(&a, v.n, n, "v");
  if (a.bad) return NULL;
  adam(p.p, g.p, m.p, v.p, n, lr, b1, b2, eps, step, wd);
  return undefined(env);
}

// sgd(param, grad, n, lr, weightDecay?)
static napi_value js_sgd(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "sgd", 4)) return NULL;
  FArr p = arg_f32(&a, 0, "param"), g = arg_f32(&a, 1, "grad");
  int n = arg_int(&a, 2, "n", 0);
  double lr = arg_num(&a, 3, "lr");
  double wd = is_nullish(&a, 4) ? 0.0 : arg_num(&a, 4, "weightDecay");
  need(&a, p.n, n, "param");
  need(&a, g.n, n, "grad");
  if (a.bad) return NULL;
  sgd(p.p, g.p, n, lr, wd);
  return undefined(env);
}

// causalAttentionPattern(att, qkv, B, T, C, H, softmax)
static napi_value js_causal_attention_pattern(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "causalAttentionPattern", 7)) return NULL;
  FArr att = arg_f32(&a, 0, "att"), qkv = arg_f32(&a, 1, "qkv");
  int B = arg_int(&a, 2, "B", 0), T = arg_int(&a, 3, "T", 0), C = arg_int(&a, 4, "C", 1);
  int H = arg_int(&a, 5, "H", 1);
  bool softmax = arg_bool(&a, 6, "softmax");
  check_heads(&a, C, H);
  need(&a, att.n, mul4(B, H, T, T), "att");
  need(&a, qkv.n, mul4(B, T, 3, C), "qkv");
  if (a.bad) return NULL;
  causal_attention_pattern(att.p, qkv.p, B, T, C, H, softmax);
  return undefined(env);
}

// causalAttentionBackward(dqkv, datt, dout, qkv, att, B, T, C, H, softmax)
static napi_value js_causal_attention_backward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "causalAttentionBackward", 10)) return NULL;
  FArr dqkv = arg_f32(&a, 0, "dqkv"), datt = arg_f32(&a, 1, "datt"), dout = arg_f32(&a, 2, "dout");
  FArr qkv = arg_f32(&a, 3, "qkv"), att = arg_f32(&a, 4, "att");
  int B = arg_int(&a, 5, "B", 0), T = arg_int(&a, 6, "T", 0), C = arg_int(&a, 7, "C", 1);
  int H = arg_int(&a, 8, "H", 1);
  bool softmax = arg_bool(&a, 9, "softmax");
  check_heads(&a, C, H);
  need(&a, dqkv.n, mul4(B, T, 3, C), "dqkv");
  need(&a, qkv.n, mul4(B, T, 3, C), "qkv");
  need(&a, datt.n, mul4(B, H, T, T), "datt");
  need(&a, att.n, mul4(B, H, T, T), "att");
  need(&a, dout.n, mul3(B, T, C), "dout");
  if (a.bad) return NULL;
  causal_attention_backward(dqkv.p, datt.p, dout.p, qkv.p, att.p, B, T, C, H, softmax);
  return undefined(env);
}

// geluTanhForward(out, inp, n)
static napi_value js_gelu_tanh_forward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "geluTanhForward", 3)) return NULL;
  FArr out = arg_f32(&a, 0, "out"), inp = arg_f32(&a, 1, "inp");
  int n = arg_int(&a, 2, "n", 0);
  need(&a, out.n, n, "out");
  need(&a, inp.n, n, "inp");
  if (a.bad) return NULL;
  gelu_tanh_forward(out.p, inp.p, n);
  return undefined(env);
}

// geluTanhBackward(dinp, inp, dout, n)
static napi_value js_gelu_tanh_backward(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "geluTanhBackward", 4)) return NULL;
  FArr dinp = arg_f32(&a, 0, "dinp"), inp = arg_f32(&a, 1, "inp"), dout = arg_f32(&a, 2, "dout");
  int n = arg_int(&a, 3, "n", 0);
  need(&a, dinp.n, n, "dinp");
  need(&a, inp.n, n, "inp");
  need(&a, dout.n, n, "dout");
  if (a.bad) return NULL;
  gelu_tanh_backward(dinp.p, inp.p, dout.p, n);
  return undefined(env);
}

// crossEntropy(dlogits|null, rowLoss|null, logits, targets, N, V, gradScale) -> number
static napi_value js_cross_entropy(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "crossEntropy", 7)) return NULL;
  FArr dl = arg_f32_or_null(&a, 0, "dlogits"), rl = arg_f32_or_null(&a, 1, "rowLoss");
  FArr logits = arg_f32(&a, 2, "logits");
  i64 ntgt = 0;
  int32_t* tgt = arg_typed(&a, 3, "targets", napi_int32_array, "Int32Array", &ntgt);
  int N = arg_int(&a, 4, "N", 0), V = arg_int(&a, 5, "V", 1);
  double gs = arg_num(&a, 6, "gradScale");
  need(&a, logits.n, mul(N, V), "logits");
  need(&a, ntgt, N, "targets");
  if (dl.p) need(&a, dl.n, mul(N, V), "dlogits");
  if (rl.p) need(&a, rl.n, N, "rowLoss");
  i64 count = 0;
  for (i64 i = 0; i < N && !a.bad; i++) {
    if (tgt[i] == -1) continue;
    if (tgt[i] < 0 || tgt[i] >= V) fail(&a, true, "target %d at row %lld outside [0, %d) (and not -1)", tgt[i], (long long)i, V);
    count++;
  }
  if (a.bad) return NULL;
  double s = 0.0;
  if (cross_entropy(&s, dl.p, rl.p, logits.p, tgt, N, V, gs, count)) return oom(&a);
  napi_value r;
  napi_create_double(env, s, &r);
  return r;
}

// setThreads(n)
static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  Args a;
  if (!args_init(&a, env, info, "setThreads", 1)) return NULL;
  int n = arg_int(&a, 0, "n", 1);
  if (!a.bad && n > 1024) fail(&a, true, "n must be <= 1024, got %d", n);
  if (a.bad) return NULL;
  set_threads(n);
  return undefined(env);
}

// threads() -> number
static napi_value js_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_int32(env, n_threads, &r);
  return r;
}

// blasInfo() -> string (OpenBLAS build configuration and core)
static napi_value js_blas_info(napi_env env, napi_callback_info info) {
  (void)info;
  char buf[512];
  snprintf(buf, sizeof buf, "%s; core %s; parallel %s", openblas_get_config(), openblas_get_corename(),
           openblas_get_parallel() == 2 ? "openmp" : openblas_get_parallel() == 1 ? "pthreads" : "none");
  napi_value r;
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &r);
  return r;
}

NAPI_MODULE_INIT() {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  set_threads(cpus > 0 ? (int)(cpus < 1024 ? cpus : 1024) : 1);
  static const struct {
    const char* name;
    napi_callback fn;
  } fns[] = {
      {"matmul", js_matmul},
      {"linearForward", js_linear_forward},
      {"linearBackward", js_linear_backward},
      {"embeddingForward", js_embedding_forward},
      {"embeddingBackward", js_embedding_backward},
      {"layernormForward", js_layernorm_forward},
      {"layernormBackward", js_layernorm_backward},
      {"attentionPattern", js_attention_pattern},
      {"attentionApply", js_attention_apply},
      {"attentionBackward", js_attention_backward},
      {"geluForward", js_gelu_forward},
      {"geluBackward", js_gelu_backward},
      {"add", js_add},
      {"mse", js_mse},
      {"adam", js_adam},
      {"sgd", js_sgd},
      {"setThreads", js_set_threads},
      {"threads", js_threads},
      {"blasInfo", js_blas_info},
      {"causalAttentionPattern", js_causal_attention_pattern},
      {"causalAttentionBackward", js_causal_attention_backward},
      {"geluTanhForward", js_gelu_tanh_forward},
      {"geluTanhBackward", js_gelu_tanh_backward},
      {"crossEntropy", js_cross_entropy},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, f) != napi_ok)
      return NULL;
  }
  return exports;
}
