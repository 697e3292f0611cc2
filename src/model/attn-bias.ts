// The attention intervention of SPEC §5 ("What Happens During the Loss
// Plateau?"): the attention of each query cell on its TARGET keys is
// multiplied by a constant c and the row renormalised. With softmax
// attention that is an additive logit bias log c on those (query, key)
// entries, which is what the model hands to `attentionPattern`.
//
// Target keys of a query cell q = (i, j) of an m×n matrix (read row by row,
// T = m·n tokens): the OBSERVED cells of row i and of column j, the cells an
// optimal completion reads. "Observed" is read from the input: a cell is
// observed when its token is not MASK (0), which for every sampled batch is
// exactly the batch's mask. Every query gets the bias, hidden or observed.
// The query's own cell counts when it is observed (it lies in its own row
// and column, and copying it is what the optimal solution does there); a
// hidden query's own cell is hidden, so it never counts, which makes the
// targets of hidden queries the "optimal positions" of the attention
// progress measure (src/analysis/progress.ts).

import { MASK_ID } from "../data/matrix.js";

/** The intervention as the model applies it (the trainer turns it on from its step). */
export interface AttnBias {
  /** attention multiplier c > 0 on the target keys */
  c: number;
  /** layers that get it; null = all */
  layers: number[] | null;
  /** matrix shape, m·n = T */
  m: number;
  n: number;
}

/**
 * out[b,q,k] = logC where key k is a target of query q in sample b, else 0;
 * out [B,T,T], tokens [B,T] with T = m·n.
 */
export function fillAttnBias(out: Float32Array, tokens: Int32Array, B: number, m: number, n: number, logC: number): void {
  const T = m * n;
  out.fill(0, 0, B * T * T);
  for (let b = 0; b < B; b++) {
    const tok = tokens.subarray(b * T, (b + 1) * T);
    for (let q = 0; q < T; q++) {
      const i = Math.floor(q / n), j = q % n;
      const row = out.subarray((b * T + q) * T, (b * T + q + 1) * T);
      for (let c = 0; c < n; c++) if (tok[i * n + c] !== MASK_ID) row[i * n + c] = logC;
      for (let r = 0; r < m; r++) if (tok[r * n + j] !== MASK_ID) row[r * n + j] = logC;
    }
  }
}
