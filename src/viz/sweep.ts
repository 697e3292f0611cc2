// Vega-Lite specs of a sweep's results (sweep.json, src/sweep/results.ts):
// Kaplan–Meier curves, P(drop) with its Wilson intervals, the phase diagram
// over two grid axes. Pure functions without Node or DOM imports: `abrupt
// analyze sweep` renders them to files, the dashboard draws them with
// vega-embed (with `selected`: that cell highlighted; every mark's datum
// carries its `cell` key, so a click names the cell).

import type { Spec } from "./specs.js";

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

type Curve = Array<[number, number]>;
/** The fields of a sweep.json cell these figures read. */
export interface SweepCellView {
  key: string;
  overrides: Record<string, unknown>;
  runs: Array<{ steps: number; seconds: number }>;
  n_ended: number;
  p_drop: number | null;
  p_drop_ci: [number, number] | null;
  median_plateau_end: number | null;
  survival: Curve;
  survival_drop: Curve;
  survival_seconds: Curve;
  survival_drop_seconds: Curve;
}

export type PhaseMetric = "p_drop" | "median_plateau_end";

export interface SweepFigureOptions {
  width?: number;
  height?: number;
  /** a cell key to highlight (the others fade) */
  selected?: string | null;
}

const isSelected = (key: string | null) => `datum.cell === ${JSON.stringify(key)}`;

/** Fraction of seeds still on the plateau / not yet dropped, against step or wall seconds (step functions). */
export function kmSpec(cells: SweepCellView[], x: "step" | "seconds", o: SweepFigureOptions = {}): Spec {
  const rows: Array<{ x: number; s: number; cell: string; event: string }> = [];
  for (const c of cells) {
    const plateau = x === "step" ? c.survival : c.survival_seconds;
    const drop = x === "step" ? c.survival_drop : c.survival_drop_seconds;
    for (const [t, s] of plateau) rows.push({ x: t, s, cell: c.key, event: "still on the plateau" });
    for (const [t, s] of drop) rows.push({ x: t, s, cell: c.key, event: "not yet dropped" });
    // carry each curve to the end of observation
    const end = Math.max(0, ...c.runs.map((r) => (x === "step" ? r.steps : r.seconds)));
    rows.push({ x: end, s: plateau[plateau.length - 1]![1], cell: c.key, event: "still on the plateau" });
    rows.push({ x: end, s: drop[drop.length - 1]![1], cell: c.key, event: "not yet dropped" });
  }
  const sel = o.selected !== undefined;
  return {
    $schema: SCHEMA,
    title: `Kaplan–Meier: fraction of seeds still on the plateau / not yet dropped, against ${x === "step" ? "step" : "wall seconds"}`,
    width: o.width ?? 560, height: o.height ?? 300,
    data: { values: rows },
    mark: { type: "line", interpolate: "step-after", strokeWidth: 1.5, ...(sel ? { cursor: "pointer" } : {}) },
    encoding: {
      x: { field: "x", type: "quantitative", title: x === "step" ? "step" : "seconds of training" },
      y: { field: "s", type: "quantitative", scale: { domain: [0, 1] }, title: "fraction of seeds" },
      color: { field: "cell", type: "nominal", title: "cell" },
      strokeDash: { field: "event", type: "nominal", title: null, legend: { labelLimit: 400 } },
      ...(sel ? {
        opacity: o.selected === null ? { value: 1 } : { condition: { test: isSelected(o.selected ?? null), value: 1 }, value: 0.2 },
        strokeWidth: { condition: { test: isSelected(o.selected ?? null), value: 3 }, value: 1.5 },
        tooltip: [{ field: "cell" }, { field: "event" }, { field: "x", title: x }, { field: "s", title: "fraction", format: ".2f" }],
      } : {}),
    },
  } as Spec;
}

/** P(drop by the end of the run) per cell with its 95% Wilson interval. */
export function pDropSpec(cells: SweepCellView[]): Spec {
  const rows = cells.filter((c) => c.p_drop !== null).map((c) => ({ cell: c.key, p: c.p_drop, lo: c.p_drop_ci![0], hi: c.p_drop_ci![1], n: c.n_ended }));
  return {
    $schema: SCHEMA,
    title: "P(drop by the end of the run), 95% Wilson intervals",
    width: 560, height: { step: 22 } as unknown as number,
    data: { values: rows },
    layer: [
      { mark: { type: "rule" }, encoding: { y: { field: "cell", type: "nominal", sort: null, title: null }, x: { field: "lo", type: "quantitative", scale: { domain: [0, 1] }, title: "P(drop)" }, x2: { field: "hi" } } },
      { mark: { type: "point", filled: true }, encoding: { y: { field: "cell", type: "nominal", sort: null }, x: { field: "p", type: "quantitative" }, tooltip: [{ field: "cell" }, { field: "p" }, { field: "n", title: "runs ended" }] } },
    ],
  } as Spec;
}

/**
 * Heatmap of P(drop) or the median plateau end over two grid axes, one rect
 * per cell, its value written in it; a cell without a value (no run ended, the
 * median not reached) is grey. The axes keep the grid's order.
 */
export function phaseSpec(cells: SweepCellView[], xKey: string, yKey: string, metric: PhaseMetric, o: SweepFigureOptions = {}): Spec {
  const rows = cells.map((c) => ({
    cell: c.key,
    x: String(c.overrides[xKey]), y: String(c.overrides[yKey]),
    v: metric === "p_drop" ? c.p_drop : c.median_plateau_end,
    label: metric === "p_drop" ? (c.p_drop === null ? "–" : c.p_drop.toFixed(2)) : c.median_plateau_end === null ? "not reached" : String(c.median_plateau_end),
  }));
  const sel = o.selected !== undefined;
  const x = { field: "x", type: "ordinal", title: xKey, sort: [...new Set(rows.map((r) => r.x))] };
  const y = { field: "y", type: "ordinal", title: yKey, sort: [...new Set(rows.map((r) => r.y))] };
  return {
    $schema: SCHEMA,
    title: `${metric === "p_drop" ? "P(drop)" : "median plateau end (steps)"} over ${xKey} × ${yKey}`,
    width: { step: 70 } as unknown as number, height: { step: 40 } as unknown as number,
    data: { values: rows },
    layer: [
      { mark: { type: "rect", color: "#e6e9ee" }, encoding: { x, y } },
      {
        mark: sel ? { type: "rect", cursor: "pointer" } : "rect",
        encoding: {
          x, y,
          color: { field: "v", type: "quantitative", title: metric, ...(metric === "p_drop" ? { scale: { domain: [0, 1] } } : {}) },
          ...(sel ? {
            stroke: { condition: { test: isSelected(o.selected ?? null), value: "#111" }, value: null },
            strokeWidth: { value: 3 },
            tooltip: [{ field: "cell" }, { field: "label", title: metric }],
          } : {}),
        },
      },
      { mark: { type: "text", fontSize: 11, ...(sel ? { cursor: "pointer" } : {}) }, encoding: { x, y, text: { field: "label" } } },
    ],
  } as Spec;
}

/** The fields of an aligned curve (src/sweep/results.ts alignedAtDrop) this figure reads. */
export interface AlignedCellView { key: string; runs: number; points: Array<{ offset: number; mean: number; lo: number; hi: number; n: number }> }

/** A metrics field against steps since the drop: the mean over each cell's dropped runs with its 95% band; the drop at 0. */
export function alignedSpec(cells: AlignedCellView[], field: string, o: SweepFigureOptions = {}): Spec {
  const values = cells.flatMap((c) => c.points.map((p) => ({ ...p, cell: `${c.key} (${c.runs} runs)` })));
  const x = { field: "offset", type: "quantitative", title: "steps since the drop" };
  const color = { field: "cell", type: "nominal", title: "cell", legend: { orient: "top", labelLimit: 320, columns: 2 } };
  return {
    $schema: SCHEMA, width: o.width ?? 640, height: o.height ?? 300,
    title: `${field}, aligned at each run's drop (mean over runs, 95% band)`,
    layer: [
      { data: { values }, mark: { type: "area", opacity: 0.18 }, encoding: { x, y: { field: "lo", type: "quantitative" }, y2: { field: "hi" }, color } },
      {
        data: { values }, mark: { type: "line", strokeWidth: 1.6, point: { size: 10 } },
        encoding: { x, y: { field: "mean", type: "quantitative", title: field, scale: { zero: false } }, color, tooltip: [{ field: "cell" }, { field: "offset" }, { field: "mean" }, { field: "n", title: "runs" }] },
      },
      { data: { values: [{ x: 0 }] }, mark: { type: "rule", color: "#d62728", strokeDash: [4, 3] }, encoding: { x: { field: "x", type: "quantitative" } } },
    ],
  } as Spec;
}
