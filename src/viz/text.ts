// The explanations shown on the dashboard and in `abrupt report`: what the
// plateau is, what changes at the drop, and what each panel shows. Plain
// HTML strings, no DOM or Node imports (shared by web/ and src/server/report.ts).

export interface RunFacts {
  m: number; n: number; rank: number; pMask: number; factor: string;
  plateau: { onset: number; end: number; level: number; levelMask: number } | null;
  drop: { step: number; lossBefore: number; lossAfter: number } | null;
  final: { step: number; loss: number } | null;
  /** the model family (src/family/): "gpt" tells the GPT's story; absent = the BERT */
  family?: string | null;
}

const f3 = (x: number) => (Number.isFinite(x) ? x.toPrecision(3) : "n/a");

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** The story of the run in a few sentences, with its own numbers. */
export function storyHtml(r: RunFacts, interactive = true): string {
  if (r.family === "gpt") return gptStoryHtml(r);
  const copyMask = r.rank / 9, copyAll = (r.pMask * r.rank) / 9;
  const parts: string[] = [];
  parts.push(
    `<p><b>The task.</b> Each example is a random ${r.m}×${r.n} matrix of rank ${r.rank}, read row by row as ${r.m * r.n} tokens. ` +
      `Each cell is hidden (replaced by a MASK token) with probability p_mask = ${r.pMask}; the BERT must output every cell, hidden ones included. ` +
      `The loss is the mean squared error: <b>L</b> over all cells, <b>L_mask</b> over hidden cells, <b>L_obs</b> over observed cells.</p>`,
  );
  parts.push(
    `<p><b>The plateau (copying).</b> Early on the model learns a shortcut: it copies the observed cells (L_obs ≈ 0) and predicts ≈ 0 at hidden cells. ` +
      `A hidden cell's value has mean 0 and variance E[X²] = r/9 = ${f3(copyMask)} (for factors uniform on [−1, 1]), so copying gives L_mask ≈ r/9 and ` +
      `L ≈ p_mask·r/9 = ${f3(copyAll)}: the dashed <i>copy levels</i> on the loss chart. ` +
      (r.plateau
        ? `Here the loss stays there from step ${r.plateau.onset} to ${r.plateau.end} (L ≈ ${f3(r.plateau.level)}, L_mask ≈ ${f3(r.plateau.levelMask)}), with no change of learning rate or data.`
        : `No plateau was detected in this run (yet).`) + `</p>`,
  );
  parts.push(
    `<p><b>The drop (completing).</b> ` +
      (r.drop
        ? `At step ${r.drop.step} the loss falls abruptly (L ${f3(r.drop.lossBefore)} → ${f3(r.drop.lossAfter)}): the model starts to <i>infer</i> hidden cells from the low-rank structure. `
        : `This run shows no drop (yet). When it comes, the model starts to infer hidden cells from the low-rank structure. `) +
      `What changes inside, panel by panel below: attention heads that looked diffuse start to attend to the query cell's <b>row</b> and <b>column</b> ` +
      `(the cells that determine it in a rank-${r.rank} matrix); the hidden cells' predictions move away from 0 towards the target (matrix view); ` +
      `probes find the masked row of a hidden cell in later layers; the attention progress measure rises while hidden states stop collapsing. ` +
      (interactive ? `Move the checkpoint slider across the drop (buttons <i>pre</i> / <i>post</i>) to compare.` : `The figures below show the checkpoint before the drop next to the one after it.`) + `</p>`,
  );
  return parts.join("\n");
}

/** The GPT's story (src/family/gpt.ts): the same matrices as a causal sequence, scored by greedy generation. */
function gptStoryHtml(r: RunFacts): string {
  const c = r.rank / 9;
  return [
    `<p><b>The task.</b> Each example is a random ${r.m}×${r.n} matrix of rank ${r.rank} written as one sequence: the matrix with hidden cells (probability p_mask = ${r.pMask}) replaced by MASK, a separator, then the whole matrix, ${2 * r.m * r.n + 1} tokens, each value a token of step 0.01. ` +
      `The GPT learns to predict every next token (cross-entropy <b>L</b>; <b>L_mask</b> and <b>L_obs</b> at the positions that write hidden and observed cells). ` +
      `Every evaluation it writes the second half greedily from the masked half, and its values are scored: token accuracy and the MSE of the decoded values.</p>`,
    `<p><b>The plateau.</b> Copying the observed cells is learned first (L_obs and the observed cells' MSE fall to about 0). At hidden cells a model that does not use the low-rank structure scores an MSE between r/9 = ${f3(c)} (writing 0) and about 2·r/9 (writing an unrelated value). ` +
      (r.plateau
        ? `Here the eval MSE at hidden cells stays at or above 0.5·r/9 from step ${r.plateau.onset} to ${r.plateau.end} (L ≈ ${f3(r.plateau.level)}, L_mask ≈ ${f3(r.plateau.levelMask)} nats).`
        : `No plateau was detected in this run (yet).`) + `</p>`,
    `<p><b>The drop.</b> ` +
      (r.drop
        ? `At step ${r.drop.step} the eval MSE at hidden cells, averaged over 5 evaluations, falls below 0.2·r/9 = ${f3(0.2 * c)}: the GPT completes the matrix from its structure.`
        : `This run shows no drop (yet): the eval MSE at hidden cells has not fallen below 0.2·r/9 = ${f3(0.2 * c)}.`) +
      ` <code>abrupt analyze all RUN</code> writes the analyses that apply to GPT runs.</p>`,
  ].join("\n");
}

export const PANEL_TEXT = {
  loss: "Training loss per step (L, L_mask, L_obs) and the eval loss on a fixed set. Shaded: the plateau; red: the drop; blue dashed: the checkpoint selected below. Dashed grey: the copy levels, the loss of a model that copies observed cells and predicts 0 at hidden ones. The boxes after the losses overlay the progress measures logged during training (--progress-every; right axis, 0 to 1): the attention progress of the best layer, the collapse of the final hidden states and the repetition.",
  attention: "Mean attention pattern of every head (query rows × key columns, tokens in row-major order), averaged over a batch. Header: the head's attention mass on the query's own row and column (excluding itself) and its label. After the drop some heads put most of their mass on the row or column: block or striped patterns.",
  attentionInteractive: "Click a thumbnail to enlarge it; hover a query (a row of the large pattern, or a cell of the matrix) to see where it looks on the matrix.",
  structured: "Random masks: each cell hidden with probability p_mask. Structured mask: whole rows hidden except one kept cell each, the same for every sample — heads that read the observed cells of the row/column then stand out.",
  sample: "One matrix at the selected checkpoint: hidden cells have an orange frame. On the plateau the prediction at hidden cells is ≈ 0 (copying); after the drop it approaches the target.",
  embeddings: "Left: token embeddings of the values −1.5…1.5 projected on their top two principal components; after training they order by magnitude and sign. Right: t-SNE of the position embeddings; clusters of one colour mean positions of the same column are embedded alike.",
  probe: "Linear probes: least squares from each layer's hidden state of a hidden cell to a target (its masked row, column, value, top singular vector). Lower test MSE means the information is linearly present at that layer.",
  progress: "Over all checkpoints: attention progress (attention mass of hidden cells on the observed cells of their row and column, the positions that determine them), hidden-state collapse (mean cosine similarity of the final hidden states across positions; near 1 = all positions look alike) and repetition (adjacent equal outputs).",
};

/** What one checkpoint looks like, for the before/after table. */
export interface CheckpointFacts {
  step: number;
  /** the attention analysis (random-mask condition is used) */
  heads: Array<{ layer: number; head: number; all: { row: number; col: number }; hidden: { obsRowCol: number } | null; obsRowColAll: number }>;
  /** the progress row of this step, if computed */
  progress: { attnProgress: number; attnMaxHead: number[]; attnUniform: number; collapse: number; loss: number; loss_mask: number } | null;
}

/** Heads of an attention JSON condition in the shape CheckpointFacts wants. */
export function headsOf(cond: { heads: Array<{ layer: number; head: number; all: { row: number; col: number; obsRowCol: number }; hidden: { obsRowCol: number } | null }> }): CheckpointFacts["heads"] {
  return cond.heads.map((h) => ({ layer: h.layer, head: h.head, all: { row: h.all.row, col: h.all.col }, hidden: h.hidden, obsRowColAll: h.all.obsRowCol }));
}

/** A before/after table: the numbers that change at the drop, with what each means. */
export function changeTableHtml(pre: CheckpointFacts, post: CheckpointFacts, uniform: { row: number; col: number }): string {
  const best = (c: CheckpointFacts, f: (h: CheckpointFacts["heads"][number]) => number) => {
    const b = c.heads.reduce((a, h) => (f(h) > f(a) ? h : a));
    return `${f3(f(b))} <span class="where">(layer ${b.layer} head ${b.head})</span>`;
  };
  const obs = (h: CheckpointFacts["heads"][number]) => h.hidden?.obsRowCol ?? h.obsRowColAll;
  const rows: Array<[string, string, string, string]> = [];
  const p0 = pre.progress, p1 = post.progress;
  if (p0 && p1) {
    rows.push(["L_mask (hidden cells)", f3(p0.loss_mask), f3(p1.loss_mask), "error at the hidden cells on a fixed batch; the copy level is r/9"]);
  }
  rows.push(["best row head", best(pre, (h) => h.all.row), best(post, (h) => h.all.row), `attention mass on the other cells of the query's row (uniform attention: ${f3(uniform.row)})`]);
  rows.push(["best column head", best(pre, (h) => h.all.col), best(post, (h) => h.all.col), `mass on the other cells of the query's column (uniform: ${f3(uniform.col)})`]);
  rows.push(["best head on observed row+column cells", best(pre, obs), best(post, obs), "for hidden queries: mass on the observed cells of their row and column, the cells that determine them"]);
  if (p0 && p1) {
    rows.push(["attention progress (mean over heads)", f3(p0.attnProgress), f3(p1.attnProgress), `the same measure averaged over all heads (uniform: ${f3(p0.attnUniform)})`]);
    rows.push(["hidden-state collapse", f3(p0.collapse), f3(p1.collapse), "mean cosine similarity of the final hidden states across positions (1 = all alike)"]);
  }
  return `<table class="change"><thead><tr><th></th><th>before: step ${pre.step}</th><th>after: step ${post.step}</th><th>what it measures</th></tr></thead><tbody>` +
    rows.map((r) => `<tr><td>${r[0]}</td><td>${r[1]}</td><td>${r[2]}</td><td class="what">${esc(r[3])}</td></tr>`).join("") + `</tbody></table>`;
}
