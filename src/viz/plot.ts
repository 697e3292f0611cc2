// Figures: Vega-Lite specs rendered to SVG by Vega (headless, no browser) and
// to PNG by resvg. Written atomically next to each other (NAME.svg, NAME.png).

import { Resvg } from "@resvg/resvg-js";
import * as vega from "vega";
import * as vl from "vega-lite";
import { writeFileAtomic } from "../store/files.js";
import type { MetricsLine } from "../train/metrics.js";

export type VlSpec = vl.TopLevelSpec;

export async function renderSvg(spec: VlSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

export function svgToPng(svg: string, scale = 2): Buffer {
  const r = new Resvg(svg, {
    fitTo: { mode: "zoom", value: scale },
    background: "white",
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
  });
  return r.render().asPng();
}

/** Writes BASE.svg and BASE.png; returns the two paths. */
export async function writeFigure(spec: VlSpec, base: string): Promise<[string, string]> {
  const svg = await renderSvg(spec);
  const png = svgToPng(svg);
  writeFileAtomic(base + ".svg", svg);
  writeFileAtomic(base + ".png", png);
  return [base + ".svg", base + ".png"];
}

/** Thins a long series to at most `max` points (keeps every k-th and the last). */
function thin<T>(xs: T[], max: number): T[] {
  if (xs.length <= max) return xs;
  const k = Math.ceil(xs.length / max);
  const out = xs.filter((_, i) => i % k === 0);
  if (out[out.length - 1] !== xs[xs.length - 1]) out.push(xs[xs.length - 1]!);
  return out;
}

/**
 * The loss curve: L, L_mask, L_obs (per step) and eval L on a log axis, with
 * the copy levels r/9 (L_mask) and p_mask·r/9 (L) as dashed rules.
 */
export function lossCurveSpec(
  lines: MetricsLine[],
  info: { rank: number; pMask: number; title: string; marks?: Array<{ step: number; label: string }> },
): VlSpec {
  const rows: Array<{ step: number; series: string; value: number }> = [];
  const pts = thin(lines, 1500);
  for (const l of pts) {
    const add = (series: string, v: number | undefined) => {
      if (v !== undefined && v !== null && Number.isFinite(v) && v > 0) rows.push({ step: l.step, series, value: v });
    };
    add("L (all)", l.loss);
    add("L_mask (hidden)", l.loss_mask);
    add("L_obs (observed)", l.loss_obs);
  }
  for (const l of lines) {
    if (l.eval_loss !== undefined && l.eval_loss !== null && l.eval_loss > 0) rows.push({ step: l.step, series: "eval L", value: l.eval_loss });
  }
  const copyMask = info.rank / 9;
  const copyAll = (info.pMask * info.rank) / 9;
  const rules = [
    { value: copyMask, label: `copy level of L_mask: r/9 = ${copyMask.toFixed(3)}` },
    { value: copyAll, label: `copy level of L: p_mask·r/9 = ${copyAll.toFixed(3)}` },
  ];
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: info.title,
    width: 640,
    height: 360,
    layer: [
      {
        data: { values: rows },
        mark: { type: "line", strokeWidth: 1.2, clip: true },
        encoding: {
          x: { field: "step", type: "quantitative", title: "step" },
          y: { field: "value", type: "quantitative", scale: { type: "log" }, title: "MSE" },
          color: { field: "series", type: "nominal", title: null, legend: { orient: "top-right" } },
        },
      },
      {
        data: { values: rules },
        mark: { type: "rule", strokeDash: [5, 4], color: "#666" },
        encoding: { y: { field: "value", type: "quantitative" } },
      },
      {
        data: { values: rules },
        mark: { type: "text", align: "left", dx: 4, dy: -6, fontSize: 10, color: "#444" },
        encoding: { y: { field: "value", type: "quantitative" }, x: { value: 0 }, text: { field: "label" } },
      },
      // vertical marks (e.g. where the lr decay starts, where L_mask falls below 0.2·r/9)
      ...(info.marks && info.marks.length > 0 ? [
        {
          data: { values: info.marks },
          mark: { type: "rule", strokeDash: [2, 3], color: "#333" },
          encoding: { x: { field: "step", type: "quantitative" } },
        },
        ...info.marks.map((m, i) => ({
          data: { values: [m] },
          mark: { type: "text", align: "right", dx: -4, fontSize: 10, color: "#222" },
          encoding: { x: { field: "step", type: "quantitative" }, y: { value: 350 - 14 * i }, text: { field: "label" } },
        })),
      ] : []),
    ],
  } as VlSpec;
}

/**
 * The GPT's learning curve: the next-token cross-entropies (all positions,
 * the answer half, hidden and observed cells, the eval set) above, and the
 * greedy generation of the eval set below (MSE of the decoded values at
 * hidden and observed cells, log scale, with the copy level r/9 and the drop
 * level 0.2·r/9; and the exact-token accuracy at hidden cells, right axis).
 */
export function gptCurveSpec(
  lines: MetricsLine[],
  info: { rank: number; title: string; marks?: Array<{ step: number; label: string }> },
): VlSpec {
  const ce: Array<{ step: number; series: string; value: number }> = [];
  const gen: Array<{ step: number; series: string; value: number }> = [];
  const acc: Array<{ step: number; series: string; value: number }> = [];
  const get = (l: MetricsLine, k: string) => (l as unknown as Record<string, number | undefined>)[k];
  const pos = (v: number | undefined): v is number => typeof v === "number" && Number.isFinite(v) && v > 0;
  const floor = 1e-4; // greedy MSEs of exact copies are 0 or ~1e-16: drawn at the axis' floor
  const clip = (v: number) => Math.max(v, floor);
  for (const l of thin(lines, 1500)) {
    for (const [series, k] of [["L (all positions)", "loss"], ["L_mask (hidden cells)", "loss_mask"], ["L_obs (observed cells)", "loss_obs"]] as const) {
      const v = get(l, k);
      if (pos(v)) ce.push({ step: l.step, series, value: v });
    }
  }
  for (const l of lines) {
    const e = get(l, "eval_loss");
    if (pos(e)) ce.push({ step: l.step, series: "eval L", value: e });
    for (const [series, k] of [["greedy MSE, hidden cells", "eval_mse_mask"], ["greedy MSE, observed cells", "eval_mse_obs"]] as const) {
      const v = get(l, k);
      if (typeof v === "number" && Number.isFinite(v)) gen.push({ step: l.step, series, value: clip(v) });
    }
    const a = get(l, "eval_acc_mask");
    if (typeof a === "number" && Number.isFinite(a)) acc.push({ step: l.step, series: "accuracy, hidden cells", value: a });
  }
  const c = info.rank / 9;
  const rules = [
    { value: c, label: `copy level r/9 = ${c.toFixed(3)}` },
    { value: 0.2 * c, label: `drop level 0.2·r/9 = ${(0.2 * c).toFixed(3)}` },
  ];
  const marks = info.marks && info.marks.length > 0 ? [
    { data: { values: info.marks }, mark: { type: "rule", strokeDash: [2, 3], color: "#333" }, encoding: { x: { field: "step", type: "quantitative" } } },
  ] : [];
  const x = { field: "step", type: "quantitative", title: "step" };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: info.title,
    resolve: { scale: { color: "independent" }, legend: { color: "independent" } },
    vconcat: [
      {
        width: 640, height: 240,
        layer: [
          {
            data: { values: ce }, mark: { type: "line", strokeWidth: 1.2, clip: true },
            encoding: { x, y: { field: "value", type: "quantitative", scale: { type: "log" }, title: "next-token cross-entropy" }, color: { field: "series", type: "nominal", title: null, legend: { orient: "top-right", labelLimit: 300 } } },
          },
          ...marks,
        ],
      },
      {
        width: 640, height: 200,
        layer: [
          {
            layer: [
              {
                data: { values: gen }, mark: { type: "line", strokeWidth: 1.2, clip: true },
                encoding: { x, y: { field: "value", type: "quantitative", scale: { type: "log", domain: [floor, 1] }, title: "greedy MSE (eval set)" }, color: { field: "series", type: "nominal", title: null, scale: { range: ["#d62728", "#1f77b4"] }, legend: { orient: "bottom-left", labelLimit: 300 } } },
              },
              { data: { values: rules }, mark: { type: "rule", strokeDash: [5, 4], color: "#666" }, encoding: { y: { field: "value", type: "quantitative" } } },
              { data: { values: rules }, mark: { type: "text", align: "left", dx: 4, dy: -6, fontSize: 10, color: "#444" }, encoding: { y: { field: "value", type: "quantitative" }, x: { value: 0 }, text: { field: "label" } } },
              ...marks,
            ],
          },
          {
            data: { values: acc }, mark: { type: "line", strokeWidth: 1, strokeDash: [4, 2], color: "#2a7", clip: true },
            encoding: { x, y: { field: "value", type: "quantitative", scale: { domain: [0, 1] }, title: "token accuracy, hidden cells (dashed)", axis: { orient: "right" } } },
          },
        ],
        resolve: { scale: { y: "independent" } },
      },
    ],
  } as VlSpec;
}
