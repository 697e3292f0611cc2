// Small dense linear algebra in double precision for the analyses: ridge
// least squares through the normal equations (Cholesky), symmetric
// eigen-decomposition (cyclic Jacobi) and PCA on top of it, Pearson
// correlation. Matrices are row-major Float64Arrays; sizes are small
// (normal equations of a probe: (C+1)² with C ≤ ~1024; PCA of a few hundred
// rows), so plain loops suffice.

/**
 * Cholesky factor of a symmetric positive-definite A [n,n]: returns lower
 * triangular Lf with A = Lf Lfᵀ, or null when a pivot is not positive.
 */
export function cholesky(A: Float64Array, n: number): Float64Array | null {
  const Lf = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = A[j * n + j]!;
    for (let k = 0; k < j; k++) d -= Lf[j * n + k]! ** 2;
    if (!(d > 0)) return null;
    const ljj = Math.sqrt(d);
    Lf[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = A[i * n + j]!;
      for (let k = 0; k < j; k++) s -= Lf[i * n + k]! * Lf[j * n + k]!;
      Lf[i * n + j] = s / ljj;
    }
  }
  return Lf;
}

/** Solves Lf Lfᵀ X = Bm for X [n,k] given the Cholesky factor Lf [n,n]; Bm [n,k]. */
export function choleskySolve(Lf: Float64Array, n: number, Bm: Float64Array, k: number): Float64Array {
  const X = Float64Array.from(Bm);
  for (let c = 0; c < k; c++) {
    for (let i = 0; i < n; i++) { // forward: Lf y = b
      let s = X[i * k + c]!;
      for (let j = 0; j < i; j++) s -= Lf[i * n + j]! * X[j * k + c]!;
      X[i * k + c] = s / Lf[i * n + i]!;
    }
    for (let i = n - 1; i >= 0; i--) { // backward: Lfᵀ x = y
      let s = X[i * k + c]!;
      for (let j = i + 1; j < n; j++) s -= Lf[j * n + i]! * X[j * k + c]!;
      X[i * k + c] = s / Lf[i * n + i]!;
    }
  }
  return X;
}

/**
 * Ridge least squares from the normal equations: W [p,k] minimising
 * ‖F W − Y‖² + λ‖W‖², given FᵀF [p,p] and FᵀY [p,k]. λ = relLambda ·
 * tr(FᵀF)/p (the mean diagonal); if FᵀF + λI is not numerically positive
 * definite, λ is raised tenfold until it is. Returns W and the λ used.
 */
export function ridgeSolve(
  ftf: Float64Array, fty: Float64Array, p: number, k: number, relLambda = 1e-6,
): { W: Float64Array; lambda: number } {
  let tr = 0;
  for (let i = 0; i < p; i++) tr += ftf[i * p + i]!;
  let lambda = relLambda * (tr > 0 ? tr / p : 1);
  for (let tries = 0; tries < 12; tries++, lambda *= 10) {
    const A = Float64Array.from(ftf);
    for (let i = 0; i < p; i++) A[i * p + i]! += lambda;
    const Lf = cholesky(A, p);
    if (Lf) return { W: choleskySolve(Lf, p, fty, k), lambda };
  }
  throw new Error("ridgeSolve: normal equations are not positive definite even with a large ridge");
}

/**
 * Eigen-decomposition of a symmetric A [n,n] by cyclic Jacobi rotations.
 * Returns eigenvalues in descending order and the eigenvectors as the ROWS
 * of `vectors` [n,n]; each vector's largest-|.| component is made positive.
 */
export function symEigen(A: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(A);
  const V = new Float64Array(n * n); // columns are eigenvectors while rotating
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  let total = 0;
  for (let i = 0; i < n * n; i++) total += a[i]! ** 2;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        const app = a[p * n + p]!, aqq = a[q * n + q]!;
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) { // columns p, q
          const akp = a[k * n + p]!, akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) { // rows p, q
          const apk = a[p * n + k]!, aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p]!, vkq = V[k * n + q]!;
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[j * n + j]! - a[i * n + i]!);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, r) => {
    values[r] = a[src * n + src]!;
    let big = 0;
    for (let k = 0; k < n; k++) if (Math.abs(V[k * n + src]!) > Math.abs(big)) big = V[k * n + src]!;
    const sg = big < 0 ? -1 : 1;
    for (let k = 0; k < n; k++) vectors[r * n + k] = sg * V[k * n + src]!;
  });
  return { values, vectors };
}

export interface Pca {
  /** column means [cols] */
  mean: Float64Array;
  /** principal directions as rows [k, cols], unit norm, largest-|.| loading positive */
  components: Float64Array;
  /** coordinates of the rows [rows, k] */
  scores: Float64Array;
  /** variance along each component / total variance [k] */
  explained: Float64Array;
}

/** G = X Xᵀ [rows,rows] of X [rows,cols] (row-major), in double. */
export function gramRows(X: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const G = new Float64Array(rows * rows);
  for (let a = 0; a < rows; a++) {
    for (let b = a; b < rows; b++) {
      let s = 0;
      for (let j = 0; j < cols; j++) s += X[a * cols + j]! * X[b * cols + j]!;
      G[a * rows + b] = s;
      G[b * rows + a] = s;
    }
  }
  return G;
}

/**
 * PCA of X [rows, cols] (centred per column). Works on the smaller Gram
 * matrix: XcᵀXc when cols ≤ rows, else XcXcᵀ (directions = Xcᵀu/‖Xcᵀu‖).
 */
export function pca(X: ArrayLike<number>, rows: number, cols: number, k: number): Pca {
  k = Math.min(k, rows, cols);
  const mean = new Float64Array(cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) mean[j]! += X[i * cols + j]! / rows;
  const Xc = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) Xc[i * cols + j] = X[i * cols + j]! - mean[j]!;
  const components = new Float64Array(k * cols);
  let eig: { values: Float64Array; vectors: Float64Array };
  if (cols <= rows) {
    const G = new Float64Array(cols * cols);
    for (let i = 0; i < rows; i++) {
      for (let a = 0; a < cols; a++) {
        const xa = Xc[i * cols + a]!;
        if (xa === 0) continue;
        for (let b = a; b < cols; b++) G[a * cols + b]! += xa * Xc[i * cols + b]!;
      }
    }
    for (let a = 0; a < cols; a++) for (let b = 0; b < a; b++) G[a * cols + b] = G[b * cols + a]!;
    eig = symEigen(G, cols);
    components.set(eig.vectors.subarray(0, k * cols));
  } else {
    const G = gramRows(Xc, rows, cols);
    eig = symEigen(G, rows);
    for (let c = 0; c < k; c++) {
      const v = components.subarray(c * cols, (c + 1) * cols);
      for (let i = 0; i < rows; i++) {
        const u = eig.vectors[c * rows + i]!;
        for (let j = 0; j < cols; j++) v[j]! += u * Xc[i * cols + j]!;
      }
      let nrm = 0, big = 0;
      for (let j = 0; j < cols; j++) { nrm += v[j]! ** 2; if (Math.abs(v[j]!) > Math.abs(big)) big = v[j]!; }
      const f = (big < 0 ? -1 : 1) / (Math.sqrt(nrm) || 1);
      for (let j = 0; j < cols; j++) v[j]! *= f;
    }
  }
  let total = 0;
  for (const x of eig.values) total += Math.max(0, x);
  const explained = new Float64Array(k);
  for (let c = 0; c < k; c++) explained[c] = total > 0 ? Math.max(0, eig.values[c]!) / total : 0;
  const scores = project(X, rows, cols, { mean, components });
  return { mean, components, scores, explained };
}

/** Coordinates [rows, k] of the rows of X in a basis: (x − mean)·component. */
export function project(X: ArrayLike<number>, rows: number, cols: number, basis: { mean: Float64Array; components: Float64Array }): Float64Array {
  const k = basis.components.length / cols;
  const out = new Float64Array(rows * k);
  for (let i = 0; i < rows; i++) {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let j = 0; j < cols; j++) s += (X[i * cols + j]! - basis.mean[j]!) * basis.components[c * cols + j]!;
      out[i * k + c] = s;
    }
  }
  return out;
}

/** Pearson correlation (NaN when either side is constant). */
export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) { ma += a[i]!; mb += b[i]!; }
  ma /= n; mb /= n;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i]! - ma, y = b[i]! - mb;
    sab += x * y; saa += x * x; sbb += y * y;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : NaN;
}
