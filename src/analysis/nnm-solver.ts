// Nuclear-norm minimisation for small matrices (m, n ≤ ~12), in double
// precision, with no dependency: the baseline the paper compares BERT with.
//
//   exact:        min ‖X‖*  s.t.  X_ij = M_ij on observed cells Ω
//   regularised:  min ½ Σ_Ω (X − M)² + λ ‖X‖*
//
// Both need the singular-value shrinkage SVT_τ(A) = U max(Σ − τ, 0) Vᵀ, which
// needs an SVD: a one-sided (Hestenes) Jacobi SVD, accurate to a few ulps of
// the largest singular value. In the ADMM loop it is warm-started with the
// previous right singular vectors, so near convergence one sweep suffices.
//
// Exact problem: scaled ADMM on  min ‖Z‖* s.t. X = Z, P_Ω(X) = P_Ω(M)
//   X ← P_Ω(M) + P_Ωᶜ(Z − Y);  X̂ = αX + (1 − α)Z;
//   Z ← SVT_{1/ρ}(X̂ + Y);  Y ← Y + X̂ − Z
// with over-relaxation α = 1.8 and residual balancing of ρ (tuned on 7×7
// rank-2 problems: ~300 iterations, ~1-2 ms per solve). ρY is a subgradient
// of ‖·‖* at Z that vanishes off Ω at the optimum. With G = P_Ω(ρY), for any
// feasible X': ‖X'‖* ≥ ⟨G, X'⟩/‖G‖₂ = ⟨G, M⟩/‖G‖₂ (weak duality), a lower
// bound on the optimum: the certified gap we report. Stops when
// ‖X − Z‖_F ≤ tolPrimal and (‖X‖* − bound) ≤ tolGap·max(1, ‖X‖*) (checked
// at intervals of max(10, iterations/20)), or at maxIter. The returned X is
// feasible by construction: M on Ω, Z off Ω.
//
// Regularised problem: FISTA with step 1 (the smooth part's gradient
// P_Ω(X − M) is 1-Lipschitz), prox = SVT_λ, with restart when the objective
// rises; stops when ‖X_k − X_{k−1}‖_F ≤ tolChange·max(1, ‖X_k‖_F).

/** Thin SVD result: A = U diag(s) Vᵀ, U [m,k], V [n,k] row-major, s descending, k = min(m,n). */
export interface Svd {
  U: Float64Array;
  s: Float64Array;
  V: Float64Array;
  k: number;
}

/**
 * One-sided Jacobi on the columns of W [rows, cols] (column-major, rows ≥ cols),
 * accumulating the rotations into Q [cols, cols] (column-major). Afterwards
 * the columns of W are mutually orthogonal: W = A Q, the singular values are
 * their norms. Returns the number of sweeps.
 */
function jacobiSweeps(W: Float64Array, Q: Float64Array, rows: number, cols: number, maxSweeps = 60): number {
  // columns below 1e-13·‖A‖_F count as zero: rounding noise there never
  // becomes orthogonal to the large columns, so rotating them is endless
  let fro2 = 0;
  for (let i = 0; i < rows * cols; i++) fro2 += W[i]! * W[i]!;
  const negl = 1e-26 * fro2;
  for (let sweep = 1; sweep <= maxSweeps; sweep++) {
    let rotated = false;
    for (let p = 0; p < cols - 1; p++) {
      const op = p * rows;
      for (let q = p + 1; q < cols; q++) {
        const oq = q * rows;
        let a = 0, b = 0, g = 0;
        for (let i = 0; i < rows; i++) {
          const x = W[op + i]!, y = W[oq + i]!;
          a += x * x; b += y * y; g += x * y;
        }
        if (a <= negl || b <= negl || Math.abs(g) <= 1e-15 * Math.sqrt(a * b)) continue;
        rotated = true;
        const zeta = (b - a) / (2 * g);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t), s = c * t;
        for (let i = 0; i < rows; i++) {
          const x = W[op + i]!, y = W[oq + i]!;
          W[op + i] = c * x - s * y;
          W[oq + i] = s * x + c * y;
        }
        const qp = p * cols, qq = q * cols;
        for (let i = 0; i < cols; i++) {
          const x = Q[qp + i]!, y = Q[qq + i]!;
          Q[qp + i] = c * x - s * y;
          Q[qq + i] = s * x + c * y;
        }
      }
    }
    if (!rotated) return sweep;
  }
  return maxSweeps;
}

/** SVD of A [m,n] (row-major). */
export function svd(A: Float64Array, m: number, n: number): Svd {
  const tall = m >= n;
  const rows = tall ? m : n, cols = tall ? n : m;
  // W column-major [rows, cols] holds A (tall) or Aᵀ (wide)
  const W = new Float64Array(rows * cols);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    if (tall) W[j * rows + i] = A[i * n + j]!;
    else W[i * rows + j] = A[i * n + j]!;
  }
  const Q = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) Q[i * cols + i] = 1;
  jacobiSweeps(W, Q, rows, cols);
  const k = cols;
  const norms = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    let s = 0;
    for (let i = 0; i < rows; i++) s += W[j * rows + i]! ** 2;
    norms[j] = Math.sqrt(s);
  }
  const order = [...norms.keys()].sort((x, y) => norms[y]! - norms[x]!);
  // left vectors of the Jacobi problem: W columns normalised; right: Q columns
  const L = new Float64Array(rows * k), R = new Float64Array(cols * k), s = new Float64Array(k);
  order.forEach((j, r) => {
    const sj = norms[j]!;
    s[r] = sj;
    for (let i = 0; i < rows; i++) L[i * k + r] = sj > 0 ? W[j * rows + i]! / sj : 0;
    for (let i = 0; i < cols; i++) R[i * k + r] = Q[j * cols + i]!;
  });
  return tall ? { U: L, s, V: R, k } : { U: R, s, V: L, k };
}

export function nuclearNorm(A: Float64Array, m: number, n: number): number {
  return svd(A, m, n).s.reduce((a, b) => a + b, 0);
}

/** Largest singular value. */
export function spectralNorm(A: Float64Array, m: number, n: number): number {
  return svd(A, m, n).s[0] ?? 0;
}

/**
 * Workspace for repeated shrinkage of m×n matrices: SVT_τ(A) into out, warm
 * started from the previous call's right vectors. Returns ‖SVT_τ(A)‖*.
 */
class Shrinker {
  readonly rows: number;
  readonly cols: number;
  private W: Float64Array;
  private Q: Float64Array;
  constructor(readonly m: number, readonly n: number) {
    this.rows = Math.max(m, n);
    this.cols = Math.min(m, n);
    this.W = new Float64Array(this.rows * this.cols);
    this.Q = new Float64Array(this.cols * this.cols);
    this.reset();
  }

  reset(): void {
    this.Q.fill(0);
    for (let i = 0; i < this.cols; i++) this.Q[i * this.cols + i] = 1;
  }

  /** out = SVT_τ(A); A, out [m,n] row-major (may alias). */
  shrink(out: Float64Array, A: Float64Array, tau: number): number {
    const { m, n, rows, cols, W, Q } = this;
    const tall = m >= n;
    // W = B Q with B = A (tall) or Aᵀ (wide), column-major [rows, cols]
    for (let j = 0; j < cols; j++) {
      for (let i = 0; i < rows; i++) {
        let s = 0;
        for (let l = 0; l < cols; l++) s += (tall ? A[i * n + l]! : A[l * n + i]!) * Q[j * cols + l]!;
        W[j * rows + i] = s;
      }
    }
    if (jacobiSweeps(W, Q, rows, cols) >= 60) {
      // the warm start went bad (should not happen): restart cold
      this.reset();
      for (let j = 0; j < cols; j++) for (let i = 0; i < rows; i++) W[j * rows + i] = tall ? A[i * n + j]! : A[j * n + i]!;
      jacobiSweeps(W, Q, rows, cols);
    }
    // B_τ = Σ_j (1 − τ/σ_j)_+ w_j q_jᵀ
    out.fill(0);
    let nuc = 0;
    for (let j = 0; j < cols; j++) {
      let s2 = 0;
      for (let i = 0; i < rows; i++) s2 += W[j * rows + i]! ** 2;
      const sigma = Math.sqrt(s2);
      if (sigma <= tau) continue;
      nuc += sigma - tau;
      const f = 1 - tau / sigma;
      for (let i = 0; i < rows; i++) {
        const wi = f * W[j * rows + i]!;
        for (let l = 0; l < cols; l++) {
          const v = wi * Q[j * cols + l]!;
          if (tall) out[i * n + l] = out[i * n + l]! + v;
          else out[l * n + i] = out[l * n + i]! + v;
        }
      }
    }
    return nuc;
  }
}

export interface NnmSolverOptions {
  /** stop when ‖X − Z‖_F ≤ tolPrimal ... (default 1e-6) */
  tolPrimal: number;
  /** ... and the certified relative duality gap ≤ tolGap (default 1e-7) */
  tolGap: number;
  /** default 20000 */
  maxIter: number;
}

const ALPHA = 1.8;

export const NNM_SOLVER_DEFAULTS: NnmSolverOptions = { tolPrimal: 1e-6, tolGap: 1e-7, maxIter: 20000 };

export interface NnmResult {
  /** [m,n] row-major: M on observed cells, the completion elsewhere */
  X: Float64Array;
  /** ‖X‖* */
  nuc: number;
  /** certified lower bound on the optimum (weak duality): nuc − lower ≥ 0 is the gap */
  lower: number;
  /** ‖X − Z‖_F at exit */
  primal: number;
  iters: number;
  converged: boolean;
  /** dual certificate G̃ = P_Ω(ρY)/‖P_Ω(ρY)‖₂ ([m,n]): ⟨G̃, M⟩ = lower */
  G: Float64Array;
}

/**
 * min ‖X‖* subject to X = M on observed cells. M [m,n] row-major (values at
 * hidden cells are ignored), hidden [m·n] 1 = free cell.
 */
export class NnmSolver {
  private sh: Shrinker;
  private X: Float64Array;
  private Z: Float64Array;
  private Zp: Float64Array;
  private Y: Float64Array;
  private T: Float64Array;

  constructor(readonly m: number, readonly n: number) {
    this.sh = new Shrinker(m, n);
    const f = () => new Float64Array(m * n);
    this.X = f(); this.Z = f(); this.Zp = f(); this.Y = f(); this.T = f();
  }

  solve(M: ArrayLike<number>, hidden: ArrayLike<number>, opts: NnmSolverOptions = NNM_SOLVER_DEFAULTS): NnmResult {
    const { m, n, X, Z, Zp, Y, T, sh } = this;
    const N = m * n;
    sh.reset();
    Y.fill(0);
    // start from Z = P_Ω(M) (zeros at hidden cells)
    let mNorm = 0;
    for (let i = 0; i < N; i++) {
      Z[i] = hidden[i] ? 0 : M[i]!;
      mNorm += Z[i]! ** 2;
    }
    mNorm = Math.sqrt(mNorm);
    if (mNorm === 0) {
      // nothing observed, or all observed values zero: X = 0 is optimal
      X.fill(0);
      for (let i = 0; i < N; i++) if (!hidden[i]) X[i] = M[i]!;
      const nuc = nuclearNorm(X, m, n);
      return { X: X.slice(), nuc, lower: nuc, primal: 0, iters: 0, converged: true, G: new Float64Array(N) };
    }
    // ρ sets the shrinkage 1/ρ; start at a scale of the data's singular values
    let rho = Math.sqrt(m * n) / mNorm;
    let nextCheck = 10;
    let primal = Infinity, iters = 0, converged = false, nuc = 0, lower = 0;
    const G = new Float64Array(N);
    for (iters = 1; iters <= opts.maxIter; iters++) {
      for (let i = 0; i < N; i++) X[i] = hidden[i] ? Z[i]! - Y[i]! : M[i]!;
      Zp.set(Z);
      // over-relaxation: X̂ = αX + (1 − α)Z_prev
      for (let i = 0; i < N; i++) T[i] = ALPHA * X[i]! + (1 - ALPHA) * Zp[i]! + Y[i]!;
      sh.shrink(Z, T, 1 / rho);
      let r2 = 0, rh2 = 0, s2 = 0;
      for (let i = 0; i < N; i++) {
        const d = ALPHA * X[i]! + (1 - ALPHA) * Zp[i]! - Z[i]!;
        Y[i] = Y[i]! + d;
        rh2 += d * d;
        r2 += (X[i]! - Z[i]!) ** 2;
        s2 += (Z[i]! - Zp[i]!) ** 2;
      }
      primal = Math.sqrt(r2);
      const dual = rho * Math.sqrt(s2);
      if (iters >= nextCheck && primal <= opts.tolPrimal) {
        [nuc, lower] = this.bounds(M, hidden, rho, G);
        if (nuc - lower <= opts.tolGap * Math.max(1, nuc)) { converged = true; break; }
        nextCheck = iters + Math.max(10, Math.floor(iters / 20));
      }
      // residual balancing every 25 iterations (rescales the scaled dual with
      // ρ), then ρ stays fixed so that the ADMM convergence theory applies
      if (iters % 25 !== 0 || iters > 5000) continue;
      const rh = Math.sqrt(rh2);
      if (rh > 3 * dual) { rho *= 2; for (let i = 0; i < N; i++) Y[i] = Y[i]! / 2; }
      else if (dual > 3 * rh) { rho /= 2; for (let i = 0; i < N; i++) Y[i] = Y[i]! * 2; }
    }
    if (!converged) [nuc, lower] = this.bounds(M, hidden, rho, G);
    const out = new Float64Array(N);
    for (let i = 0; i < N; i++) out[i] = hidden[i] ? Z[i]! : M[i]!;
    return { X: out, nuc, lower, primal, iters: Math.min(iters, opts.maxIter), converged, G };
  }

  /** [‖X̂‖*, lower bound from the certificate]; writes G̃. X̂ = M on Ω, Z off Ω. */
  private bounds(M: ArrayLike<number>, hidden: ArrayLike<number>, rho: number, G: Float64Array): [number, number] {
    const { m, n, Z, Y } = this;
    const N = m * n;
    const Xh = new Float64Array(N);
    for (let i = 0; i < N; i++) {
      Xh[i] = hidden[i] ? Z[i]! : M[i]!;
      G[i] = hidden[i] ? 0 : rho * Y[i]!;
    }
    const g = spectralNorm(G, m, n);
    let dot = 0;
    for (let i = 0; i < N; i++) {
      G[i] = g > 0 ? G[i]! / g : 0;
      if (!hidden[i]) dot += G[i]! * M[i]!;
    }
    return [nuclearNorm(Xh, m, n), dot];
  }
}

export interface RegSolverOptions {
  /** stop when ‖X_k − X_{k−1}‖_F ≤ tolChange·max(1, ‖X_k‖_F) (default 1e-9) */
  tolChange: number;
  /** default 20000 */
  maxIter: number;
}

export const REG_SOLVER_DEFAULTS: RegSolverOptions = { tolChange: 1e-9, maxIter: 20000 };

export interface RegResult {
  X: Float64Array;
  nuc: number;
  /** ½ Σ_Ω (X − M)² + λ‖X‖* */
  objective: number;
  iters: number;
  converged: boolean;
}

/** min ½ Σ_Ω (X − M)² + λ‖X‖* by FISTA with adaptive restart. */
export class RegNnmSolver {
  private sh: Shrinker;
  private X: Float64Array;
  private Xp: Float64Array;
  private Yk: Float64Array;
  private T: Float64Array;

  constructor(readonly m: number, readonly n: number) {
    this.sh = new Shrinker(m, n);
    const f = () => new Float64Array(m * n);
    this.X = f(); this.Xp = f(); this.Yk = f(); this.T = f();
  }

  solve(M: ArrayLike<number>, hidden: ArrayLike<number>, lambda: number, opts: RegSolverOptions = REG_SOLVER_DEFAULTS): RegResult {
    const { m, n, X, Xp, Yk, T, sh } = this;
    const N = m * n;
    sh.reset();
    for (let i = 0; i < N; i++) X[i] = hidden[i] ? 0 : M[i]!;
    Yk.set(X);
    let t = 1, iters = 0, converged = false, nuc = 0;
    let obj = Infinity;
    for (iters = 1; iters <= opts.maxIter; iters++) {
      Xp.set(X);
      // gradient step on ½‖P_Ω(Y − M)‖² with step 1: observed cells jump to M
      for (let i = 0; i < N; i++) T[i] = hidden[i] ? Yk[i]! : M[i]!;
      nuc = sh.shrink(X, T, lambda);
      let fit = 0, d2 = 0, x2 = 0;
      for (let i = 0; i < N; i++) {
        if (!hidden[i]) fit += (X[i]! - M[i]!) ** 2;
        d2 += (X[i]! - Xp[i]!) ** 2;
        x2 += X[i]! ** 2;
      }
      const newObj = 0.5 * fit + lambda * nuc;
      if (Math.sqrt(d2) <= opts.tolChange * Math.max(1, Math.sqrt(x2))) { converged = true; obj = newObj; break; }
      if (newObj > obj) {
        // restart the momentum
        t = 1;
        Yk.set(X);
      } else {
        const tn = (1 + Math.sqrt(1 + 4 * t * t)) / 2;
        const beta = (t - 1) / tn;
        for (let i = 0; i < N; i++) Yk[i] = X[i]! + beta * (X[i]! - Xp[i]!);
        t = tn;
      }
      obj = newObj;
    }
    return { X: X.slice(), nuc, objective: obj, iters: Math.min(iters, opts.maxIter), converged };
  }
}
