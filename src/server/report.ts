// `abrupt report RUN`: one self-contained HTML file with the dashboard's
// figures for the checkpoint before the drop (pre) and after it (post):
// loss curve, progress measures, attention grid and one head's view of the
// matrix, one sample, token PCA, position t-SNE, probes. Figures are the
// dashboard's Vega-Lite specs (src/viz/specs.ts) rendered to inline SVG in
// Node, so the file has no scripts and loads nothing from the network.
// Analyses come from the run's cache (<run>/analysis/, as the dashboard and
// `abrupt analyze` write it) or are computed and cached.

import { familyOf } from "../family/index.js";
import { basename, join, resolve } from "node:path";
import { openRun } from "../store/run.js";
import { detectPhases, pickSteps } from "../analysis/phases.js";
import { AbruptError } from "../errors.js";
import { type ComputeRequest, type Kind, compute } from "./compute.js";
import { checkWritableFile, writeFileAtomic } from "../store/files.js";
import { MetricsCache, metricsRow, summarizeRun } from "./runs.js";
import { renderSvg } from "../viz/plot.js";
import * as S from "../viz/specs.js";
import { PANEL_TEXT, changeTableHtml, esc, headsOf, storyHtml } from "../viz/text.js";
import { optionNames, parseOpts } from "../analysis/experiment.js";
import { findExperiment } from "../analysis/index.js";

export interface ReportFlags { out?: string; pre?: number; post?: number; seed: number; opt: string[] }

const CSS = `
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1d232b; max-width: 1250px; margin: 20px auto; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 2px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #dde2e8; padding-bottom: 3px; }
h3 { font-size: 15px; margin: 10px 0 4px; }
.muted, .help { color: #6a7380; font-size: 13px; } p { line-height: 1.45; }
table.cfg td { padding: 2px 10px 2px 0; font-size: 13px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; align-items: start; }
.pair.one { grid-template-columns: 1fr; }
.fig svg { max-width: 100%; height: auto; }
ul.findings { font-size: 12px; color: #39414b; padding-left: 18px; }
table.change { border-collapse: collapse; font-size: 13px; } table.change td, table.change th { border-bottom: 1px solid #dde2e8; padding: 3px 8px; text-align: left; }
table.change td.what { color: #6a7380; font-size: 12px; max-width: 460px; } .where { color: #6a7380; font-size: 11px; }
.tag { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; background: #dbe8f7; }
`;

function pickOr(run: ReturnType<typeof openRun>, spec: "pre" | "post"): number | null {
  try {
    return pickSteps(run, spec)[0] ?? null;
  } catch {
    return null;
  }
}

async function svg(spec: S.Spec): Promise<string> {
  // the SVG's own XML prologue is dropped: it is inlined in HTML
  return (await renderSvg(spec)).replace(/^<\?xml[^>]*>\s*/, "");
}

export async function writeReport(runDirArg: string, f: ReportFlags): Promise<string> {
  const run = openRun(runDirArg);
  const dir = run.dir;
  const out = resolve(f.out ?? join(dir, "report.html"));
  checkWritableFile(out, "report");
  const cfg = run.cfg;
  const opts = parseOpts(f.opt);
  const kinds: Kind[] = ["attention", "sample", "embeddings", "probe", "progress"];
  const optsFor = (kind: Kind): Record<string, string> => {
    if (kind === "sample") return {};
    const known = optionNames(findExperiment(kind));
    return Object.fromEntries(Object.entries(opts).filter(([k]) => known.includes(k)));
  };
  for (const k of Object.keys(opts)) {
    if (!kinds.some((kind) => kind !== "sample" && optionNames(findExperiment(kind)).includes(k))) {
      throw new AbruptError(`unknown option "${k}" (no experiment of the report takes it)`);
    }
  }
  for (const [flag, v] of [["--pre", f.pre], ["--post", f.post]] as const) {
    if (v !== undefined && !run.steps.includes(v)) throw new AbruptError(`${flag}: checkpoint step ${v} does not exist in ${dir} (available: ${run.steps.join(", ") || "none"})`);
  }
  const pre = f.pre ?? pickOr(run, "pre");
  const post = f.post ?? pickOr(run, "post") ?? (run.steps.length ? run.steps.at(-1)! : null);
  const steps = [...new Set([pre, post].filter((x): x is number => x !== null))].sort((a, b) => a - b);
  const get = async <T>(kind: Kind, step: number): Promise<T> => {
    const req: ComputeRequest = { dir, kind, step, seed: f.seed, opts: optsFor(kind) };
    return (await compute(req)).json as T;
  };

  const ph = detectPhases(run.metrics, cfg.data.rank, cfg.data.p_mask, familyOf(cfg).events);
  const mc = new MetricsCache(join(dir, "metrics.jsonl"));
  mc.update();
  const summary = summarizeRun(resolve(dir, ".."), basename(dir), mc);
  const marks = { plateau: ph.plateau ? { onset: ph.plateau.onset, end: ph.plateau.end } : null, drop: ph.drop?.step ?? null };
  const fam = familyOf(cfg);
  // the dashboard's rows (5 significant digits, the family's measure columns)
  const rows = run.metrics.map((l) => metricsRow(l, fam.measureColumns));
  const copy = { loss: (cfg.data.p_mask * cfg.data.rank) / 9, loss_mask: cfg.data.rank / 9 };
  const lossFig = rows.length > 1 && fam.name !== "bert"
    ? await svg(fam.curveSpec(run.metrics, cfg, [
      ...(ph.plateau ? [{ step: ph.plateau.end, label: `plateau ends (${ph.plateau.end})` }] : []),
      ...(ph.drop ? [{ step: ph.drop.step, label: `drop (${ph.drop.step})` }] : []),
    ]))
    : rows.length > 1
    ? await svg(S.lossSpec(S.lossRows(basename(dir), rows, { smoothing: 0, series: [...S.SERIES, ...S.MEASURES], log: true, maxPoints: 1500 }), { log: true, width: 900, height: 340, multiRun: false, copy, ...marks, selected: null }))
    : "<p class=muted>no metrics yet</p>";

  const parts: string[] = [];
  const c = cfg, d = c.data, m = c.model, t = c.train;
  parts.push(`<h1>abrupt report: ${esc(basename(dir))}</h1>`);
  parts.push(`<p class="muted">generated ${esc(new Date().toISOString())} by <code>abrupt report</code> · status: <span class="tag">${esc(summary.status)}</span> · ${summary.stepsDone} of ${t.steps} steps · checkpoints: ${run.steps.length}${summary.problems.length ? ` · problems: ${esc(summary.problems.join("; "))}` : ""}</p>`);
  parts.push(`<table class="cfg"><tr><td>data</td><td>${d.m}×${d.n} matrices, rank ${d.rank}, factors ${esc(d.factor)}, p_mask ${d.p_mask}</td></tr>
<tr><td>model</td><td>${esc(fam.describe(c))}</td></tr>
<tr><td>training</td><td>batch ${t.batch}, Adam lr ${t.lr}, warm-up ${t.warmup}, ${t.steps} steps, seed ${t.seed}</td></tr>
<tr><td>checkpoints shown</td><td>${pre !== null ? `pre = step ${pre} (last on the plateau)` : "no checkpoint on the plateau"}; ${post !== null ? `post = step ${post}${ph.drop && post > ph.drop.step ? " (after the drop)" : ""}` : "none"}</td></tr></table>`);
  const whatHappened = parts.length;
  parts.push(`<h2>What happened</h2>${storyHtml({ m: d.m, n: d.n, rank: d.rank, pMask: d.p_mask, factor: d.factor, plateau: ph.plateau, drop: ph.drop, final: ph.final, family: fam.name }, false)}`);
  parts.push(`<h2>Loss curves</h2><p class="help">${esc(fam.name === "bert" ? PANEL_TEXT.loss : `Next-token cross-entropies (above) and the eval set's greedy generation (below): the MSE of the decoded values at hidden and observed cells, with the copy level r/9 and the drop level 0.2·r/9 on which plateau and drop are found (${fam.events.label}), and the token accuracy at hidden cells (dashed).`)}</p><div class="fig">${lossFig}</div>`);

  if (fam.name !== "bert") {
    parts.push(`<p class="muted">The per-checkpoint panels of this report (attention grid, sample, embeddings, probes) are drawn for BERT runs; for this ${esc(fam.title)} run, <code>abrupt analyze all ${esc(dir)}</code> writes the analyses that apply to it.</p>`);
  } else if (steps.length === 0) {
    parts.push(`<p class="muted">This run has no checkpoints, so there is nothing more to show.</p>`);
  } else {
    const progress = await get<S.ProgressJson>("progress", -1);
    parts.push(`<h2>Progress measures over training</h2><p class="help">${esc(PANEL_TEXT.progress)}</p><div class="fig">${await svg(S.progressSpec(progress, 760, { ...marks, selected: null }))}</div>${list(progress.findings)}`);

    const att = new Map<number, S.AttentionJson>();
    for (const s of steps) att.set(s, await get<S.AttentionJson>("attention", s));
    if (steps.length === 2) {
      const cnd = (a: S.AttentionJson) => a.conditions.find((x) => x.mask === "random") ?? a.conditions[0]!;
      const prog = (x: number) => progress.steps.find((r) => r.step === x) ?? null;
      const [s0, s1] = steps as [number, number];
      const { m: mm, n: nn } = att.get(s1)!;
      parts.splice(whatHappened + 1, 0, `<h3>What changed between checkpoints ${s0} and ${s1}</h3>` + changeTableHtml(
        { step: s0, heads: headsOf(cnd(att.get(s0)!)), progress: prog(s0) }, { step: s1, heads: headsOf(cnd(att.get(s1)!)), progress: prog(s1) },
        { row: (nn - 1) / (mm * nn), col: (mm - 1) / (mm * nn) }));
    }
    // the head to zoom on: the strongest row/column/observed head after the drop
    const last = att.get(steps.at(-1)!)!;
    const rc = last.conditions.find((x) => x.mask === "random") ?? last.conditions[0]!;
    const best = rc.heads.reduce((a, h) => (Math.max(h.all.row, h.all.col, (h.hidden ?? h.all).obsRowCol) > Math.max(a.all.row, a.all.col, (a.hidden ?? a.all).obsRowCol) ? h : a));
    const head = (s: number) => `step ${s}${s === pre ? " (pre: on the plateau)" : s === post && ph.drop && s > ph.drop.step ? " (post: after the drop)" : ""}`;
    const pair = async (title: string, help: string, fig: (s: number) => Promise<string>) => {
      const cols: string[] = [];
      for (const s of steps) cols.push(`<div><h3>${esc(head(s))}</h3><div class="fig">${await fig(s)}</div></div>`);
      parts.push(`<h2>${esc(title)}</h2><p class="help">${esc(help)}</p><div class="pair${steps.length === 1 ? " one" : ""}">${cols.join("")}</div>`);
    };
    const thumb = Math.max(40, Math.min(90, Math.floor(520 / last.H) - 8));
    await pair("Attention: mean pattern of every head (random masks)", PANEL_TEXT.attention, async (s) => {
      const a = att.get(s)!;
      const cd = a.conditions.find((x) => x.mask === "random") ?? a.conditions[0]!;
      return (await svg(S.attentionGridSpec(a, cd, { thumb }))) + list(a.findings.filter((x) => x.startsWith(`${cd.mask} masks`)).slice(0, 6));
    });
    await pair(`Attention of one query cell on the matrix (layer ${best.layer} head ${best.head})`, "The head with the strongest row, column or observed-row/column score at the last checkpoint shown; left and right show the same head. Structured mask: whole rows hidden except one kept cell each (orange triangles mark hidden cells).", async (s) => {
      const a = att.get(s)!;
      const out: string[] = [];
      for (const cd of a.conditions) {
        const [qi, qj] = cd.queryCell;
        const q = qi * a.n + qj;
        const w = cd.meanPattern[best.layer]![best.head]!.slice(q * a.T, (q + 1) * a.T);
        const hidden = S.structuredHidden(cd, a.m, a.n);
        out.push(await svg(S.queryMatrixSpec(w, a.m, a.n, [qi, qj], { title: `${cd.mask} masks: query cell (${qi},${qj})`, hidden, cell: Math.max(22, Math.min(40, Math.floor(240 / Math.max(a.m, a.n)))) })));
      }
      return out.join(" ");
    });
    await pair("One matrix: input, target, prediction, error", PANEL_TEXT.sample, async (s) => {
      const sm = await get<S.SampleJson>("sample", s);
      return (await svg(S.sampleSpec(sm, Math.max(22, Math.min(36, Math.floor(200 / Math.max(sm.m, sm.n))))))) + list(sm.findings);
    });
    await pair("Embeddings", PANEL_TEXT.embeddings, async (s) => {
      const e = await get<S.EmbeddingsJson>("embeddings", s);
      return (await svg(S.tokenPcaSpec(e, 230))) + (await svg(S.positionTsneSpec(e, 230))) + list(e.findings.slice(0, 5));
    });
    await pair("Linear probes", PANEL_TEXT.probe, async (s) => {
      const p = await get<S.ProbeJson>("probe", s);
      return await svg(S.probeSpec(p, 430));
    });
  }
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>abrupt report: ${esc(basename(dir))}</title>
<style>${CSS}</style></head>
<body>
${parts.join("\n")}
<p class="muted">abrupt · Gopalani, Lubana &amp; Hu, "Abrupt Learning in Transformers: A Case Study on Matrix Completion" (NeurIPS 2024, arXiv 2410.22244). Numbers behind every figure: ${esc(join(dir, "analysis"))}/*.json.</p>
</body></html>
`;
  writeFileAtomic(out, html);
  return out;
}

function list(xs: string[]): string {
  return xs.length ? `<ul class="findings">${xs.map((x) => `<li>${esc(x)}</li>`).join("")}</ul>` : "";
}
