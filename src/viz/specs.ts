// Vega-Lite specs of the dashboard and of `abrupt report`, built from the
// analysis JSON that `abrupt analyze` writes (src/analysis/*: the schema is
// at the top of each file). Pure functions without Node or DOM imports: the
// page (web/, bundled by Vite, drawn by vega-embed) and the report (rendered
// to SVG in Node by vega, src/viz/plot.ts) use the same code.

import type { TopLevelSpec } from "vega-lite";

export type Spec = TopLevelSpec;
const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

// ------------------------------------------------------- analysis JSON types

export interface Scores { self: number; row: number; col: number; obsRow: number; obsCol: number; obsRowCol: number; entropy: number }
export interface AttentionCondition {
  mask: "random" | "structured";
  spec: { rows?: number[]; cols?: number[]; keep?: Array<[number, number]> } | null;
  hiddenFraction: number;
  queryCell: [number, number];
  heads: Array<{ layer: number; head: number; label: string; score: number; all: Scores; hidden: Scores | null }>;
  /** [L][H][T*T], query-major */
  meanPattern: number[][][];
  queryAttention: number[][][];
}
export interface AttentionJson { step: number; m: number; n: number; T: number; L: number; H: number; conditions: AttentionCondition[]; findings: string[] }
export interface SampleJson {
  step: number; seed: number; m: number; n: number; mask: string;
  input: Array<Array<number | null>>; target: number[][]; prediction: number[][]; error: number[][];
  loss: { loss: number; loss_mask: number | null; loss_obs: number | null };
  findings: string[];
}
export interface EmbeddingsJson {
  step: number;
  tokenPca: { explained: [number, number]; corr: { pc1: { abs: number; sign: number }; pc2: { abs: number; sign: number } }; points: Array<{ value: number; pc1: number; pc2: number }> };
  positions: { points: Array<{ pos: number; row: number; col: number; x: number; y: number }>; column: { nn2d: number; nnChance: number; silhouette2d: number }; row: { nn2d: number } };
  tokenNorm?: { symmetry: { all: number; zoom: number } };
  permutation?: { unpermuted: { loss: number; loss_mask: number }; mean: { loss: number; loss_mask: number } };
  findings: string[];
}
export interface ProbeJson {
  step: number;
  layers: string[];
  results: Array<{ model: "trained" | "control"; layer: number; hook: string; group: "hidden" | "observed"; target: string; mse: number; r2: number; cos: number | null }>;
  findings: string[];
}
export interface ProgressRow {
  step: number; attnProgress: number; attnMaxHead: number[]; attnUniform: number; collapse: number; repetition: number;
  loss: number; loss_mask: number; trainLoss: number | null; trainLossMask: number | null;
}
export interface ProgressJson { step: number; steps: ProgressRow[]; findings: string[] }

// ------------------------------------------------------------- helpers

const r3 = (x: number) => Math.round(x * 1000) / 1000;
const fmt2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");
export const cellLabel = (t: number, n: number) => `(${Math.floor(t / n)},${t % n})`;

interface Marks { plateau?: { onset: number; end: number } | null; drop?: number | null; selected?: number | null }

/** Layers marking the plateau (band), the drop (red rule) and the selected checkpoint (blue rule). */
function markLayers(mk: Marks, height: number): object[] {
  const out: object[] = [];
  if (mk.plateau) {
    out.push({
      data: { values: [{ a: mk.plateau.onset, b: mk.plateau.end, what: `plateau: steps ${mk.plateau.onset}–${mk.plateau.end}` }] },
      mark: { type: "rect", color: "#f2b134", opacity: 0.13 },
      encoding: { x: { field: "a", type: "quantitative" }, x2: { field: "b" }, tooltip: { field: "what" } },
    });
    out.push({
      data: { values: [{ a: (mk.plateau.onset + mk.plateau.end) / 2, what: "plateau (copying)" }] },
      mark: { type: "text", color: "#a66f00", fontSize: 11, dy: 0, baseline: "top" },
      encoding: { x: { field: "a", type: "quantitative" }, y: { value: 4 }, text: { field: "what" } },
    });
  }
  if (mk.drop !== null && mk.drop !== undefined) {
    out.push({
      data: { values: [{ s: mk.drop, what: `drop at step ${mk.drop}` }] },
      mark: { type: "rule", color: "#d62728", strokeWidth: 2 },
      encoding: { x: { field: "s", type: "quantitative" }, tooltip: { field: "what" } },
    });
    out.push({
      data: { values: [{ s: mk.drop, what: "drop" }] },
      mark: { type: "text", color: "#d62728", fontSize: 11, align: "left", dx: 3, baseline: "top" },
      encoding: { x: { field: "s", type: "quantitative" }, y: { value: 18 }, text: { field: "what" } },
    });
  }
  if (mk.selected !== null && mk.selected !== undefined) {
    out.push({
      data: { values: [{ s: mk.selected, what: `checkpoint ${mk.selected}` }] },
      mark: { type: "rule", color: "#1f77b4", strokeDash: [3, 3], strokeWidth: 1.5 },
      encoding: { x: { field: "s", type: "quantitative" }, tooltip: { field: "what" } },
    });
    out.push({
      data: { values: [{ s: mk.selected, what: `checkpoint ${mk.selected}` }] },
      mark: { type: "text", color: "#1f77b4", fontSize: 10, align: "left", dx: 3, baseline: "bottom" },
      encoding: { x: { field: "s", type: "quantitative" }, y: { value: height - 2 }, text: { field: "what" } },
    });
  }
  return out;
}

// ----------------------------------------------------------- loss curves

export interface LossRow { run: string; series: string; step: number; value: number }
export const SERIES = ["L (all cells)", "L_mask (hidden cells)", "L_obs (observed cells)", "eval L"] as const;
const SERIES_COLORS = ["#4c78a8", "#e45756", "#54a24b", "#b279a2"];
/**
 * The progress measures logged with --progress-every (src/analysis/measures.ts),
 * metrics-row columns 5..7, drawn in a strip under the losses (axis up to 1).
 */
export const MEASURES = ["attention progress", "collapse (final hidden states)", "repetition"] as const;
const MEASURE_COLORS = ["#f58518", "#72b7b2", "#9d755d"];
/** What the measure columns hold for a GPT run (src/server/wire.ts MetricsRow). */
export const GPT_MEASURES = ["eval greedy accuracy, hidden cells", "eval greedy MSE, hidden cells", "eval non-value tokens"] as const;
/** The vega label expression showing the GPT's names for the series. */
const GPT_LABELS = `{${[...MEASURES.map((m, i) => [m, GPT_MEASURES[i]!]), ["L (all cells)", "L (all positions)"]].map(([a, b]) => `${JSON.stringify(a)}: ${JSON.stringify(b)}`).join(", ")}}[datum.label] || datum.label`;

export interface LossOptions extends Marks {
  log: boolean;
  width: number;
  height: number;
  /** several runs: colour by run, dash by series */
  multiRun: boolean;
  copy: { loss: number; loss_mask: number } | null;
  title?: string;
  /** the focused run's family: a GPT's losses are cross-entropies, its measure columns eval scores */
  family?: string | null;
}

/** Loss curves (data named "loss": LossRow[]), copy levels, plateau, drop and checkpoint markers. */
export function lossSpec(rows: LossRow[], o: LossOptions): Spec {
  const gpt = o.family === "gpt";
  const y = { field: "value", type: "quantitative", title: gpt ? "next-token cross-entropy" : "MSE", scale: o.log ? { type: "log" } : { zero: true } };
  const x = { field: "step", type: "quantitative", title: "training step" };
  const measures = rows.some((r) => (MEASURES as readonly string[]).includes(r.series));
  const color = o.multiRun
    ? { field: "run", type: "nominal", title: "run", legend: { orient: "top", labelLimit: 260 } }
    : { field: "series", type: "nominal", title: null, scale: { domain: [...SERIES, ...(measures ? MEASURES : [])], range: [...SERIES_COLORS, ...(measures ? MEASURE_COLORS : [])] }, legend: { orient: "top", labelLimit: 260, ...(gpt ? { labelExpr: GPT_LABELS } : {}) } };
  const dash = (domain: readonly string[]) => (o.multiRun ? { strokeDash: { field: "series", type: "nominal", title: "series", scale: { domain: [...domain] }, legend: { orient: "top" } }, detail: { field: "series" } } : {});
  const curve = {
    // without measures the layer holds the data itself (a live update replaces "loss")
    ...(measures ? { transform: [{ filter: { field: "series", oneOf: [...SERIES] } }] } : { data: { name: "loss", values: rows } }),
    mark: { type: "line", strokeWidth: 1.3, clip: true, interpolate: "linear" },
    encoding: { x, y, color, ...dash(SERIES) },
  };
  const layers: object[] = [...markLayers(o, o.height), curve];
  if (o.copy) {
    const rules = [
      { v: o.copy.loss, label: `copy level of L: p_mask·r/9 = ${o.copy.loss.toPrecision(3)}` },
      { v: o.copy.loss_mask, label: `copy level of L_mask: r/9 = ${o.copy.loss_mask.toPrecision(3)}` },
    ];
    layers.push(
      { data: { values: rules }, mark: { type: "rule", strokeDash: [6, 4], color: "#555" }, encoding: { y: { field: "v", type: "quantitative" }, tooltip: { field: "label" } } },
      { data: { values: rules }, mark: { type: "text", align: "right", dy: -6, fontSize: 10, color: "#333" }, encoding: { y: { field: "v", type: "quantitative" }, x: { value: o.width - 4 }, text: { field: "label" } } },
    );
  }
  if (!measures) return { $schema: SCHEMA, ...(o.title ? { title: o.title } : {}), width: o.width, height: o.height, layer: layers } as Spec;
  // the progress measures in a strip below, on the same steps (one data set
  // "loss" for both, so that a live update replaces all curves at once)
  const mh = Math.round(o.height * 0.4);
  const strip = {
    width: o.width, height: mh,
    layer: [
      // the plateau band and the rules, without their labels (the chart above has them)
      ...markLayers(o, mh).filter((l) => (l as { mark: { type: string } }).mark.type !== "text"),
      {
        transform: [{ filter: { field: "series", oneOf: [...MEASURES] } }],
        mark: { type: "line", strokeWidth: 1.6, clip: true, interpolate: "linear", point: { size: 14 } },
        encoding: { x, color, ...dash(MEASURES), y: { field: "value", type: "quantitative", title: gpt ? "eval set, hidden cells" : "progress measure", scale: { zero: true, domainMax: 1 } } },
      },
    ],
  };
  return {
    $schema: SCHEMA, ...(o.title ? { title: o.title } : {}), data: { name: "loss", values: rows },
    vconcat: [{ width: o.width, height: o.height, layer: layers }, strip], spacing: 8,
    resolve: { scale: { x: "shared", color: "shared" } },
  } as Spec;
}

/** Exponential moving average with a time constant of `w` steps (w ≤ 1: none). */
export function smooth(xs: Array<number | null>, w: number): Array<number | null> {
  if (w <= 1) return xs;
  const a = 1 / w;
  let s: number | null = null;
  return xs.map((x) => {
    if (x === null || !Number.isFinite(x)) return s;
    s = s === null ? x : s + a * (x - s);
    return s;
  });
}

/**
 * Metrics rows [step, L, L_mask, L_obs, eval L, attn progress, collapse,
 * repetition] → LossRow[], smoothed, at most `maxPoints` per series; the
 * measures (every --progress-every steps) are never smoothed.
 */
export function lossRows(run: string, rows: Array<Array<number | null>>, o: { smoothing: number; series: readonly string[]; log: boolean; maxPoints: number }): LossRow[] {
  const out: LossRow[] = [];
  const k = Math.max(1, Math.ceil(rows.length / o.maxPoints));
  SERIES.forEach((name, si) => {
    if (!o.series.includes(name)) return;
    const col = si + 1;
    const pts = rows.filter((r) => r[col] !== null && r[col] !== undefined);
    const sm = smooth(pts.map((r) => r[col] as number), si === 3 ? Math.max(1, o.smoothing / Math.max(1, (pts.length > 1 ? (pts[1]![0]! - pts[0]![0]!) : 1))) : o.smoothing);
    const kk = si === 3 ? Math.max(1, Math.ceil(pts.length / o.maxPoints)) : k;
    pts.forEach((r, i) => {
      if (i % kk !== 0 && i !== pts.length - 1) return;
      const v = sm[i];
      if (v === null || v === undefined || !Number.isFinite(v) || (o.log && v <= 0)) return;
      out.push({ run, series: name, step: r[0]!, value: Number(v.toPrecision(5)) });
    });
  });
  MEASURES.forEach((name, mi) => {
    if (!o.series.includes(name)) return;
    const col = 5 + mi;
    const pts = rows.filter((r) => typeof r[col] === "number" && Number.isFinite(r[col]));
    const kk = Math.max(1, Math.ceil(pts.length / o.maxPoints));
    pts.forEach((r, i) => {
      if (i % kk !== 0 && i !== pts.length - 1) return;
      out.push({ run, series: name, step: r[0]!, value: Number((r[col] as number).toPrecision(5)) });
    });
  });
  return out;
}

// -------------------------------------------------------------- attention

export interface GridOptions { thumb: number; selected?: { layer: number; head: number } | null }

/**
 * Layer × head thumbnails of the mean T×T pattern, on one colour scale for
 * all heads and checkpoints; each header holds the head's row/column scores
 * and label.
 */
export function attentionGridSpec(att: AttentionJson, cond: AttentionCondition, o: GridOptions): Spec {
  const { T, L, H } = att;
  // whole pixels per cell, so that neighbouring cells leave no seams
  const thumb = Math.max(T, Math.floor(o.thumb / T) * T);
  const values: Array<Record<string, number | string>> = [];
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      const p = cond.meanPattern[l]![h]!;
      const hd = cond.heads.find((x) => x.layer === l && x.head === h)!;
      const sel = o.selected && o.selected.layer === l && o.selected.head === h ? " ◀" : "";
      const title = `layer ${l} head ${h}${sel}|row ${fmt2(hd.all.row)} · col ${fmt2(hd.all.col)}|${hd.label}`;
      for (let q = 0; q < T; q++) for (let k = 0; k < T; k++) values.push({ idx: l * H + h, title, layer: l, head: h, q, k, a: r3(p[q * T + k]!) });
    }
  }
  return {
    $schema: SCHEMA,
    data: { values },
    facet: { field: "title", type: "nominal", sort: { field: "idx", op: "min" }, title: null, header: { labelExpr: "split(datum.value, '|')", labelFontSize: 10, labelPadding: 2 } },
    columns: H,
    spacing: { row: 6, column: 8 },
    spec: {
      width: thumb, height: thumb,
      mark: { type: "rect", tooltip: false },
      encoding: {
        x: { field: "k", type: "ordinal", axis: null, scale: { paddingInner: 0 } },
        y: { field: "q", type: "ordinal", axis: null, scale: { paddingInner: 0 } },
        // one fixed scale for every head and checkpoint (√ so that uniform attention, 1/T, stays visible)
        color: { field: "a", type: "quantitative", scale: { scheme: "viridis", type: "sqrt", domain: [0, 1] }, legend: { title: "attention", orient: "right", gradientLength: 120 } },
      },
    },
    config: { view: { stroke: "#999" } },
  } as Spec;
}

/** One head's mean pattern, large, with cell names on the axes. */
export function attentionHeadSpec(att: AttentionJson, cond: AttentionCondition, layer: number, head: number, size: number): Spec {
  const { T, n } = att;
  const p = cond.meanPattern[layer]![head]!;
  const values: Array<Record<string, number | string>> = [];
  for (let q = 0; q < T; q++) for (let k = 0; k < T; k++) values.push({ q, k, a: p[q * T + k]!, qc: cellLabel(q, n), kc: cellLabel(k, n) });
  const lab = `'(' + floor(datum.value / ${n}) + ',' + (datum.value % ${n}) + ')'`;
  const axis = (title: string) => ({ title, labelExpr: lab, labelFontSize: T > 25 ? 6 : 9, labelAngle: 0 });
  return {
    $schema: SCHEMA,
    title: { text: `layer ${layer} head ${head}: mean attention (${cond.mask} masks)`, subtitle: "row = query cell, column = key cell; hover a row to draw it on the matrix" },
    width: size, height: size,
    data: { values },
    mark: { type: "rect" },
    encoding: {
      x: { field: "k", type: "ordinal", axis: { ...axis("key cell (row,col)"), labelAngle: -90 } },
      y: { field: "q", type: "ordinal", axis: axis("query cell (row,col)") },
      color: { field: "a", type: "quantitative", scale: { scheme: "viridis", domainMin: 0 }, title: "attention" },
      tooltip: [{ field: "qc", title: "query" }, { field: "kc", title: "key" }, { field: "a", title: "attention", format: ".3f" }],
    },
  } as Spec;
}

/** The attention of one query cell drawn on the m×n matrix (query outlined, hidden cells of a structured mask marked). */
export function queryMatrixSpec(weights: number[], m: number, n: number, query: [number, number], o: { title: string; subtitle?: string; hidden?: number[] | null; cell: number }): Spec {
  const values = [];
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const t = i * n + j;
      values.push({ i, j, t, w: r3(weights[t]!), query: i === query[0] && j === query[1] ? 1 : 0, hid: o.hidden ? o.hidden[t] ?? 0 : 0 });
    }
  }
  const enc = { x: { field: "j", type: "ordinal", title: "column", axis: { labelAngle: 0 } }, y: { field: "i", type: "ordinal", title: "row" } };
  const mx = Math.max(...weights.slice(0, m * n), 1e-9);
  return {
    $schema: SCHEMA,
    title: { text: o.title, ...(o.subtitle ? { subtitle: o.subtitle } : {}) },
    width: o.cell * n, height: o.cell * m,
    data: { values },
    layer: [
      { mark: { type: "rect", stroke: "#fff", strokeWidth: 1 }, encoding: { ...enc, color: { field: "w", type: "quantitative", scale: { scheme: "blues", domain: [0, mx] }, title: "attention" }, tooltip: [{ field: "i", title: "row" }, { field: "j", title: "column" }, { field: "w", title: "attention", format: ".3f" }] } },
      { mark: { type: "text", fontSize: Math.max(7, Math.min(11, o.cell / 4)) }, encoding: { ...enc, text: { field: "w", format: ".2f" }, color: { condition: { test: `datum.w > ${mx * 0.55}`, value: "white" }, value: "#222" } } },
      { transform: [{ filter: "datum.query == 1" }], mark: { type: "rect", fill: null, stroke: "#e45756", strokeWidth: 3 }, encoding: enc },
      ...(o.hidden ? [{ transform: [{ filter: "datum.hid == 1" }], mark: { type: "point", shape: "triangle-down", size: 20, color: "#f58518", filled: true, yOffset: -o.cell / 3 }, encoding: enc }] : []),
    ],
  } as Spec;
}

/** Hidden cells (1) of a condition's structured mask, or null for random masks. */
export function structuredHidden(cond: Pick<AttentionCondition, "spec">, m: number, n: number): number[] | null {
  if (!cond.spec) return null;
  const h = new Array<number>(m * n).fill(0);
  for (const i of cond.spec.rows ?? []) for (let j = 0; j < n; j++) h[i * n + j] = 1;
  for (const j of cond.spec.cols ?? []) for (let i = 0; i < m; i++) h[i * n + j] = 1;
  for (const [i, j] of cond.spec.keep ?? []) h[i * n + j] = 0;
  return h;
}

// ----------------------------------------------------------- matrix view

/** Input (hidden cells marked), target, prediction and error of one sample. */
export function sampleSpec(s: SampleJson, cell: number): Spec {
  const { m, n } = s;
  const rows: Array<Record<string, number | string | null>> = [];
  let vmax = 0.1, emax = 0.05;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const hid = s.input[i]![j] === null ? 1 : 0;
      vmax = Math.max(vmax, Math.abs(s.target[i]![j]!), Math.abs(s.prediction[i]![j]!));
      emax = Math.max(emax, Math.abs(s.error[i]![j]!));
      rows.push({ panel: "input", i, j, v: hid ? null : s.input[i]![j]!, text: hid ? "?" : s.input[i]![j]!.toFixed(2), hid });
      rows.push({ panel: "target", i, j, v: s.target[i]![j]!, text: s.target[i]![j]!.toFixed(2), hid });
      rows.push({ panel: "prediction", i, j, v: s.prediction[i]![j]!, text: s.prediction[i]![j]!.toFixed(2), hid });
      rows.push({ panel: "error", i, j, v: s.error[i]![j]!, text: s.error[i]![j]!.toFixed(2), hid });
    }
  }
  const enc = { x: { field: "j", type: "ordinal", title: null, axis: { labelAngle: 0 } }, y: { field: "i", type: "ordinal", title: null } };
  const fs = Math.max(7, Math.min(11, cell / 4.2));
  const panel = (name: string, title: string, color: object) => ({
    title: { text: title, fontSize: 12 },
    width: cell * n, height: cell * m,
    transform: [{ filter: `datum.panel == '${name}'` }],
    layer: [
      { mark: { type: "rect", stroke: "#fff" }, encoding: { ...enc, color } },
      { transform: [{ filter: "datum.hid == 1" }], mark: { type: "rect", fill: null, stroke: "#f58518", strokeWidth: 2.5 }, encoding: enc },
      { mark: { type: "text", fontSize: fs }, encoding: { ...enc, text: { field: "text" }, color: { condition: { test: "datum.v != null && abs(datum.v) > " + (name === "error" ? emax : vmax) * 0.6, value: "white" }, value: "#222" } } },
    ],
  });
  const valueColor = { field: "v", type: "quantitative", scale: { scheme: "redblue", domain: [vmax, -vmax] }, title: "value", legend: null };
  return {
    $schema: SCHEMA,
    data: { values: rows },
    hconcat: [
      panel("input", "input (? = hidden)", valueColor),
      panel("target", "target X", valueColor),
      panel("prediction", "prediction", valueColor),
      panel("error", "error = prediction − target", { field: "v", type: "quantitative", scale: { scheme: "purpleorange", domain: [-emax, emax] }, legend: null }),
    ],
    spacing: 14,
    resolve: { scale: { color: "independent" } },
    config: { view: { stroke: null }, axis: { domain: false, ticks: false } },
  } as Spec;
}

// ------------------------------------------------- embeddings, probes, progress

export function tokenPcaSpec(e: EmbeddingsJson, size: number): Spec {
  const tp = e.tokenPca;
  return {
    $schema: SCHEMA,
    title: { text: "token embeddings of values −1.5…1.5: top 2 PCs", subtitle: `explained variance ${(tp.explained[0] * 100).toFixed(0)}% + ${(tp.explained[1] * 100).toFixed(0)}%; |corr| of PC1 with |v| ${fmt2(Math.abs(tp.corr.pc1.abs))}, with sign(v) ${fmt2(Math.abs(tp.corr.pc1.sign))}` },
    width: size, height: size,
    data: { values: tp.points },
    mark: { type: "circle", size: 22, opacity: 0.9 },
    encoding: {
      x: { field: "pc1", type: "quantitative", title: "PC 1", scale: { zero: false } },
      y: { field: "pc2", type: "quantitative", title: "PC 2", scale: { zero: false } },
      color: { field: "value", type: "quantitative", scale: { scheme: "redblue", domain: [1.5, -1.5] }, title: "value v" },
      tooltip: [{ field: "value", title: "value" }, { field: "pc1", format: ".3f" }, { field: "pc2", format: ".3f" }],
    },
  } as Spec;
}

export function positionTsneSpec(e: EmbeddingsJson, size: number): Spec {
  const p = e.positions;
  const values = p.points.map((x) => ({ ...x, label: `(${x.row},${x.col})` }));
  return {
    $schema: SCHEMA,
    title: { text: "position embeddings: t-SNE, coloured by column", subtitle: `same-column nearest neighbour ${fmt2(p.column.nn2d)} (chance ${fmt2(p.column.nnChance)}); same-row ${fmt2(p.row.nn2d)}` },
    width: size, height: size,
    data: { values },
    layer: [
      { mark: { type: "circle", size: 110, opacity: 0.85 }, encoding: { x: { field: "x", type: "quantitative", title: "t-SNE 1", axis: { labels: false } }, y: { field: "y", type: "quantitative", title: "t-SNE 2", axis: { labels: false } }, color: { field: "col", type: "nominal", title: "column" }, tooltip: [{ field: "label", title: "cell (row,col)" }] } },
      { mark: { type: "text", fontSize: 9, dy: -10 }, encoding: { x: { field: "x", type: "quantitative" }, y: { field: "y", type: "quantitative" }, text: { field: "label" } } },
    ],
  } as Spec;
}

const TARGETS: Record<string, string> = { value: "cell value", row: "masked row of the cell", col: "masked column of the cell", sv: "top singular vector" };

export function probeSpec(p: ProbeJson, width: number, group: "hidden" | "observed" = "hidden"): Spec {
  const values = p.results
    .filter((r) => r.group === group)
    .map((r) => ({ layer: r.layer, target: TARGETS[r.target] ?? r.target, model: r.model === "trained" ? "trained model" : "random-init control", mse: r.mse }))
    .filter((r) => Number.isFinite(r.mse) && r.mse > 0);
  return {
    $schema: SCHEMA,
    title: { text: `linear probes on ${group} cells: test MSE per layer`, subtitle: "lower = the layer's hidden state holds the target linearly; dashed = same probe on a random-init model" },
    width, height: Math.round(width * 0.55),
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "layer", type: "ordinal", title: "layer (0 = embeddings)", axis: { labelAngle: 0 } },
      y: { field: "mse", type: "quantitative", title: "test MSE (mean over components)", scale: { type: "log" } },
      color: { field: "target", type: "nominal", title: "probed target", sort: Object.values(TARGETS) },
      strokeDash: { field: "model", type: "nominal", title: null, sort: ["trained model", "random-init control"] },
      tooltip: [{ field: "target" }, { field: "model" }, { field: "layer" }, { field: "mse", format: ".3g" }],
    },
  } as Spec;
}

export function progressSpec(p: ProgressJson, width: number, mk: Marks): Spec {
  const meas: Array<Record<string, number | string>> = [];
  const loss: Array<Record<string, number | string>> = [];
  for (const r of p.steps) {
    const add = (series: string, v: number) => { if (Number.isFinite(v)) meas.push({ step: r.step, series, value: v }); };
    add("attention progress (mean over heads)", r.attnProgress);
    add("attention progress (best head)", Math.max(...r.attnMaxHead));
    add("uniform-attention reference", r.attnUniform);
    add("hidden-state collapse (mean cosine)", r.collapse);
    add("repetition of adjacent outputs", r.repetition);
    if (Number.isFinite(r.loss_mask) && r.loss_mask > 0) loss.push({ step: r.step, series: "L_mask", value: r.loss_mask });
    if (Number.isFinite(r.loss) && r.loss > 0) loss.push({ step: r.step, series: "L", value: r.loss });
  }
  const x = { field: "step", type: "quantitative", title: "checkpoint step" };
  return {
    $schema: SCHEMA,
    vconcat: [
      {
        title: { text: "progress measures over training", subtitle: "attention progress = attention mass of hidden cells on the observed cells of their row and column" },
        width, height: 200,
        layer: [
          ...markLayers(mk, 200),
          { data: { values: meas }, mark: { type: "line", point: { size: 18 } }, encoding: { x, y: { field: "value", type: "quantitative", title: "measure", scale: { domain: [0, 1] } }, color: { field: "series", type: "nominal", title: null, legend: { orient: "bottom", columns: 2, labelLimit: 300 } }, tooltip: [{ field: "series" }, { field: "step" }, { field: "value", format: ".3f" }] } },
        ],
      },
      {
        width, height: 110,
        layer: [
          ...markLayers({ ...mk, plateau: null }, 110),
          { data: { values: loss }, mark: { type: "line", point: { size: 18 } }, encoding: { x, y: { field: "value", type: "quantitative", title: "MSE (probe batch)", scale: { type: "log" } }, color: { field: "series", type: "nominal", title: null, scale: { range: ["#4c78a8", "#e45756"] }, legend: { orient: "right" } } } },
        ],
      },
    ],
    resolve: { scale: { color: "independent" } },
  } as Spec;
}
