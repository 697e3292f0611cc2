// The dashboard page: runs table, live loss curves (server-sent events), a
// checkpoint scrubber driving the attention, matrix, embedding, probe and
// progress panels; for a sweep folder, the sweep's cells, Kaplan–Meier
// curves and phase diagram above them. Charts are Vega-Lite (vega-embed); the
// specs are shared with `abrupt report` (src/viz/specs.ts) and `abrupt
// analyze sweep` (src/viz/sweep.ts).

import embed, { type Result, vega } from "vega-embed";
import * as S from "../../src/viz/specs.js";
import * as SW from "../../src/viz/sweep.js";
import { PANEL_TEXT, changeTableHtml, esc, headsOf, storyHtml } from "../../src/viz/text.js";
import type * as W from "../../src/server/wire.js";
import { applyItems } from "../../src/server/apply-items.js";
import "./style.css";

// ------------------------------------------------------------------ types

type RunSummary = W.WireRunSummary;
type SweepCell = W.WireSweepCell;
type Sweep = NonNullable<W.SweepResponse["sweep"]>;
type Row = W.MetricsRow;
interface Live { rows: Row[]; offset: number; es: EventSource | null }

// ------------------------------------------------------------------ state

const st = {
  runs: new Map<string, RunSummary>(),
  focus: null as string | null,
  compare: new Set<string>(),
  live: new Map<string, Live>(),
  log: true,
  smoothing: 0,
  series: new Set<string>(S.SERIES),
  step: null as number | null,
  mask: "random" as "random" | "structured",
  head: { layer: 0, head: 0 },
  query: null as number | null,
  sampleSeed: 0,
  att: null as S.AttentionJson | null,
  lossView: null as Result | null,
  lossKey: "",
  sweep: null as Sweep | null,
  /** the sweep cell whose runs the runs table lists (null: all) */
  cell: null as string | null,
  kmX: "step" as "step" | "seconds",
  phase: { x: "", y: "", metric: "p_drop" as SW.PhaseMetric, fixed: {} as Record<string, string> },
};

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const fmt = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toPrecision(3));

async function getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
  const r = await fetch(url, signal ? { signal } : {});
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error((body as { error?: string }).error ?? `HTTP ${r.status}`);
  return body as T;
}

const api = (run: string, path = "") => `api/runs/${encodeURIComponent(run)}${path}`;

async function draw(el: HTMLElement, spec: S.Spec, renderer: "svg" | "canvas" = "svg"): Promise<Result> {
  const old = (el as HTMLElement & { _vega?: Result })._vega;
  const res = await embed(el, spec as never, { actions: false, renderer, tooltip: { theme: "light" } });
  old?.finalize();
  (el as HTMLElement & { _vega?: Result })._vega = res;
  return res;
}

function status(id: string, text: string, kind: "" | "busy" | "error" = ""): void {
  const el = $(id);
  el.textContent = text;
  el.className = `status ${kind}`;
}

// ------------------------------------------------------------ runs table

function statusBadge(s: RunSummary): string {
  return `<span class="badge st-${esc(s.status)}">${esc(s.status)}</span>`;
}

function renderTable(): void {
  const only = st.cell ? new Set(cellRuns(st.cell)) : null;
  const runs = [...st.runs.values()].filter((r) => !only || only.has(r.name));
  renderCellFilter(runs.length);
  $("live").hidden = ![...st.compare].some((n) => st.runs.get(n)?.status === "running");
  if (runs.length === 0 && only) {
    $("runs-table").innerHTML = `<p class="muted">No run of this cell has started yet.</p>`;
    return;
  }
  if (runs.length === 0) {
    $("runs-table").innerHTML = `<p class="muted">No runs in this folder yet. Start one with <code>abrupt train --out &lt;folder&gt;/NAME</code>; it appears here.</p>`;
    return;
  }
  const rows = runs.map((r) => {
    const c = r.config;
    const cfg = c ? `${c.data.m}×${c.data.n} r${c.data.rank} p<sub>mask</sub> ${c.data.p_mask} · L${c.model.L} H${c.model.H} d${c.model.d} · b${c.train.batch} lr ${c.train.lr}` : "–";
    const pct = r.steps ? Math.min(100, (100 * r.stepsDone) / r.steps) : 0;
    const ph = r.phases;
    return `<tr data-run="${esc(r.name)}" class="${r.name === st.focus ? "focus" : ""}">
      <td><input type="checkbox" class="cmp" ${st.compare.has(r.name) ? "checked" : ""} aria-label="compare ${esc(r.name)}"></td>
      <td><button class="linkish run-name" type="button">${esc(r.name)}</button></td>
      <td>${statusBadge(r)}</td>
      <td class="cfg">${cfg}</td>
      <td><div class="bar"><div style="width:${pct}%"></div></div>${r.stepsDone}${r.steps ? ` / ${r.steps}` : ""}</td>
      <td>${fmt(r.last?.loss)}</td><td>${fmt(r.last?.loss_mask)}</td><td>${fmt(r.last?.loss_obs)}</td><td>${fmt(r.lastEval?.eval_loss)}</td>
      <td>${ph?.plateau ? `${ph.plateau.onset}–${ph.plateau.end}` : "–"}</td>
      <td>${ph?.drop ? ph.drop.step : "–"}</td>
      <td>${r.checkpoints.length}</td>
      <td class="problems">${r.problems.map((p) => `<div>⚠ ${esc(p)}</div>`).join("")}${r.error ? `<div>✖ ${esc(r.error)}</div>` : ""}</td>
    </tr>`;
  });
  $("runs-table").innerHTML = `<table>
    <thead><tr><th title="compare">cmp</th><th>run</th><th>status</th><th>config</th><th>steps</th><th>L</th><th>L_mask</th><th>L_obs</th><th>eval L</th><th>plateau</th><th>drop</th><th>ckpts</th><th>problems</th></tr></thead>
    <tbody>${rows.join("")}</tbody></table>`;
  for (const tr of $("runs-table").querySelectorAll<HTMLTableRowElement>("tbody tr")) {
    const name = tr.dataset["run"]!;
    tr.querySelector(".run-name")!.addEventListener("click", () => setFocus(name));
    tr.querySelector<HTMLInputElement>(".cmp")!.addEventListener("change", (e) => {
      const on = (e.target as HTMLInputElement).checked;
      if (on) st.compare.add(name);
      else if (name !== st.focus) st.compare.delete(name);
      else (e.target as HTMLInputElement).checked = true;
      void syncLive().then(() => renderLoss(true));
    });
  }
}

async function refreshRuns(): Promise<void> {
  try {
    const res = await getJson<W.RunsResponse>("api/runs");
    $("root-dir").textContent = `${st.sweep ? `sweep ${st.sweep.id} · ` : ""}runs folder: ${res.root}`;
    const seen = new Set<string>();
    for (const r of res.runs) {
      seen.add(r.name);
      // a watched run's summary comes by its event stream; keep the freshest
      if (!st.live.get(r.name)?.es) st.runs.set(r.name, r);
      else if (!st.runs.has(r.name)) st.runs.set(r.name, r);
    }
    for (const k of [...st.runs.keys()]) if (!seen.has(k)) st.runs.delete(k);
    renderTable();
  } catch (e) {
    $("runs-table").innerHTML = `<p class="error">cannot list runs: ${esc((e as Error).message)}</p>`;
  }
}

// ------------------------------------------------------------------ sweep

/** Run folder names of a cell (those of its runs that have started are in st.runs). */
function cellRuns(key: string): string[] {
  const c = st.sweep?.cells.find((x) => x.key === key);
  return c ? c.runs.map((r) => r.dir.split(/[\\/]/).pop()!) : [];
}

let sweepPoll = true;
/** Polled with the runs list; redraws only when the server's results changed. */
async function refreshSweep(): Promise<void> {
  if (!sweepPoll) return;
  try {
    const { sweep } = await getJson<W.SweepResponse>("api/sweep");
    if (!sweep) { sweepPoll = false; return; } // a plain runs folder
    const changed = sweep.updated !== st.sweep?.updated;
    const axesChanged = sweep.axes.join("\n") !== st.sweep?.axes.join("\n");
    st.sweep = sweep;
    $("sweep-section").hidden = false;
    if (st.cell && !sweep.cells.some((c) => c.key === st.cell)) st.cell = null;
    if (axesChanged) initPhaseControls();
    if (changed) {
      renderSweepTable();
      renderTable();
      await Promise.all([renderKm(), renderPhase()]);
    }
  } catch (e) {
    status("sweep-id", `cannot read the sweep: ${(e as Error).message}`, "error");
  }
}

const int = (x: number | null) => (x === null ? "–" : String(Math.round(x)));
const secs = (x: number | null) => (x === null ? "–" : x < 10 ? x.toFixed(1) : String(Math.round(x)));
/** A median with its interval; a null end of the interval is ∞ (it does not close within the steps run). */
function median(m: number | null, ci: [number | null, number | null], f: (x: number | null) => string): string {
  if (m === null && ci[0] === null) return `<span class="muted">not reached</span>`;
  return `${m === null ? "not reached" : f(m)} <span class="muted">[${f(ci[0])}, ${ci[1] === null ? "∞" : f(ci[1])}]</span>`;
}
function pDropText(c: Pick<SweepCell, "p_drop" | "p_drop_ci">): string {
  return c.p_drop === null ? "–" : `${c.p_drop.toFixed(2)} [${c.p_drop_ci![0].toFixed(2)}, ${c.p_drop_ci![1].toFixed(2)}]`;
}

function renderSweepTable(): void {
  const sw = st.sweep!;
  const running = (c: SweepCell) => c.runs.filter((r) => r.status === "running").length;
  status("sweep-id", `${sw.id} · ${sw.cells.length} cells · ${sw.cells.reduce((a, c) => a + c.runs.length, 0)} runs${sw.axes.length ? ` over ${sw.axes.join(" × ")}` : ""}`);
  const rows = sw.cells.map((c) => `<tr data-cell="${esc(c.key)}" class="${c.key === st.cell ? "selected" : ""}">
      <td><button class="linkish cell-name" type="button">${esc(c.key)}</button></td>
      <td class="num ended">${c.n_ended} / ${c.runs.length}${running(c) ? ` <span class="badge st-running">${running(c)} running</span>` : ""}</td>
      <td class="num">${c.n_drop}</td>
      <td class="num p-drop">${pDropText(c)}</td>
      <td class="num">${median(c.median_plateau_end, c.median_plateau_end_ci, int)}</td>
      <td class="num">${median(c.median_drop, c.median_drop_ci, int)}</td>
      <td class="num">${median(c.median_drop_seconds, c.median_drop_seconds_ci, secs)}</td>
    </tr>`);
  $("sweep-table").innerHTML = `<table>
    <thead><tr><th>cell</th><th title="runs ended (finished, or stopped at the step limit) / runs">ended / runs</th><th>dropped</th><th>P(drop) [95%]</th><th>median plateau end [95%]</th><th>median drop, steps [95%]</th><th>median drop, seconds [95%]</th></tr></thead>
    <tbody>${rows.join("")}</tbody></table>`;
  for (const tr of $("sweep-table").querySelectorAll<HTMLTableRowElement>("tbody tr")) {
    tr.addEventListener("click", () => void selectCell(tr.dataset["cell"]!));
  }
}

function renderCellFilter(shown: number): void {
  const el = $("cell-filter");
  el.hidden = !st.cell;
  if (!st.cell) return;
  el.innerHTML = `<span>the ${shown} run${shown === 1 ? "" : "s"} of cell <b>${esc(st.cell)}</b></span> <button id="btn-all-runs" type="button">show all runs</button>`;
  $("btn-all-runs").addEventListener("click", () => void selectCell(null));
}

async function renderKm(): Promise<void> {
  const sw = st.sweep;
  if (!sw) return;
  const el = $("sweep-km");
  const res = await draw(el, SW.kmSpec(sw.cells, st.kmX, { width: 520, height: 260, selected: st.cell }));
  el.dataset["cells"] = String(sw.cells.length);
  el.dataset["x"] = st.kmX;
  res.view.addEventListener("click", (_e, item) => {
    const cell = (item as { datum?: { cell?: string } } | null)?.datum?.cell;
    if (typeof cell === "string") void selectCell(cell);
  });
}

/** Axis pickers of the phase diagram; the axes not drawn are held at one value each. */
function initPhaseControls(): void {
  const axes = st.sweep!.axes;
  $("phase-wrap").hidden = axes.length < 2;
  if (axes.length < 2) return;
  if (!axes.includes(st.phase.x)) st.phase.x = axes[0]!;
  if (!axes.includes(st.phase.y) || st.phase.y === st.phase.x) st.phase.y = axes.find((a) => a !== st.phase.x)!;
  for (const [id, which] of [["phase-x", "x"], ["phase-y", "y"]] as const) {
    const sel = $<HTMLSelectElement>(id);
    sel.innerHTML = axes.map((a) => `<option value="${esc(a)}">${esc(a)}</option>`).join("");
    sel.value = st.phase[which];
  }
  renderPhaseFixed();
}

function axisValues(axis: string): string[] {
  return [...new Set(st.sweep!.cells.map((c) => String(c.overrides[axis])))];
}

function renderPhaseFixed(): void {
  const others = st.sweep!.axes.filter((a) => a !== st.phase.x && a !== st.phase.y);
  for (const k of Object.keys(st.phase.fixed)) if (!others.includes(k)) delete st.phase.fixed[k];
  for (const a of others) {
    const vals = axisValues(a);
    if (!vals.includes(st.phase.fixed[a] ?? "")) st.phase.fixed[a] = vals[0]!;
  }
  const el = $("phase-fixed");
  el.innerHTML = others.map((a) => `<label>${esc(a)} <select data-axis="${esc(a)}">${axisValues(a).map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("")}</select></label>`).join("");
  for (const sel of el.querySelectorAll<HTMLSelectElement>("select")) {
    sel.value = st.phase.fixed[sel.dataset["axis"]!]!;
    sel.addEventListener("change", () => { st.phase.fixed[sel.dataset["axis"]!] = sel.value; void renderPhase(); });
  }
}

async function renderPhase(): Promise<void> {
  const sw = st.sweep;
  if (!sw || sw.axes.length < 2) return;
  const { x, y, metric, fixed } = st.phase;
  const cells = sw.cells.filter((c) => Object.entries(fixed).every(([a, v]) => String(c.overrides[a]) === v));
  const el = $("sweep-phase");
  const res = await draw(el, SW.phaseSpec(cells, x, y, metric, { selected: st.cell }));
  el.dataset["cells"] = String(cells.length);
  el.dataset["metric"] = metric;
  res.view.addEventListener("click", (_e, item) => {
    const cell = (item as { datum?: { cell?: string } } | null)?.datum?.cell;
    if (typeof cell === "string") void selectCell(cell);
  });
}

/** Lists only the cell's runs, compares their loss curves and studies one of them, `prefer` if it is (null: every run again). */
async function selectCell(key: string | null, prefer = st.focus): Promise<void> {
  st.cell = key;
  renderSweepTable();
  renderTable();
  void renderKm();
  void renderPhase();
  if (!key) { if (st.focus) history.replaceState(null, "", `#run=${encodeURIComponent(st.focus)}`); return; }
  const names = cellRuns(key).filter((n) => st.runs.has(n));
  if (names.length === 0) { history.replaceState(null, "", `#cell=${encodeURIComponent(key)}`); return; }
  const first = prefer && names.includes(prefer) ? prefer : names[0]!;
  st.compare = new Set(names);
  st.focus = null; // setFocus keeps the compared runs
  await setFocus(first);
}

// --------------------------------------------------- metrics and live updates

let lossTimer: number | null = null;
function lossSoon(): void {
  if (lossTimer !== null) return;
  lossTimer = window.setTimeout(() => { lossTimer = null; void renderLoss(false); }, 300);
}

async function openLive(name: string): Promise<void> {
  if (st.live.has(name)) return;
  const lv: Live = { rows: [], offset: 0, es: null };
  st.live.set(name, lv);
  const m = await getJson<W.MetricsResponse>(api(name, "/metrics"));
  lv.rows = m.rows;
  lv.offset = m.offset;
  if (!st.live.has(name)) return;
  const es = new EventSource(api(name, `/events?offset=${m.offset}`));
  lv.es = es;
  es.addEventListener("metrics", (ev) => {
    const d = JSON.parse((ev as MessageEvent).data) as W.MetricsEvent;
    applyItems(lv.rows, d.items, (r) => r[0] as number);
    lv.offset = d.offset;
    lossSoon();
  });
  es.addEventListener("run", (ev) => {
    const s = JSON.parse((ev as MessageEvent).data) as RunSummary;
    const before = st.runs.get(name);
    st.runs.set(name, s);
    renderTable();
    if (name === st.focus) {
      const ckChanged = !before || before.checkpoints.join() !== s.checkpoints.join();
      const phChanged = JSON.stringify(before?.phases?.drop) !== JSON.stringify(s.phases?.drop) || JSON.stringify(before?.phases?.plateau) !== JSON.stringify(s.phases?.plateau);
      if (ckChanged) updateScrubber(false);
      if (phChanged) { renderStory(); lossSoon(); void renderChange(); }
      if (ckChanged) void loadProgress();
    }
  });
  es.addEventListener("reset", () => {
    es.close();
    st.live.delete(name);
    void openLive(name).then(() => renderLoss(true));
  });
}

async function syncLive(): Promise<void> {
  for (const [name, lv] of st.live) {
    if (!st.compare.has(name)) { lv.es?.close(); st.live.delete(name); }
  }
  await Promise.all([...st.compare].map((n) => openLive(n).catch((e: Error) => { $("loss-help").textContent = `cannot read metrics of ${n}: ${e.message}`; })));
}

function lossRowsAll(): S.LossRow[] {
  const out: S.LossRow[] = [];
  const multi = st.compare.size > 1;
  const maxPoints = multi ? 1200 : 2500;
  for (const name of st.compare) {
    const lv = st.live.get(name);
    if (lv) out.push(...S.lossRows(name, lv.rows, { smoothing: st.smoothing, series: [...st.series], log: st.log, maxPoints }));
  }
  return out;
}

async function renderLoss(full: boolean): Promise<void> {
  const el = $("loss-chart");
  const focus = st.focus ? st.runs.get(st.focus) : undefined;
  const rows = lossRowsAll();
  const ph = focus?.phases;
  // the measure strip is part of the spec: re-embed when it comes or goes
  const strip = rows.some((r) => (S.MEASURES as readonly string[]).includes(r.series));
  const key = JSON.stringify([st.log, [...st.compare], focus?.name, ph?.plateau?.onset, ph?.plateau?.end, ph?.drop?.step, st.step, el.clientWidth, strip]);
  if (full || key !== st.lossKey || !st.lossView) {
    st.lossKey = key;
    const width = Math.max(420, Math.min(1100, el.clientWidth - 40));
    st.lossView = await draw(el, S.lossSpec(rows, {
      log: st.log, width, height: 340, multiRun: st.compare.size > 1,
      copy: focus?.copyLevel ?? null, family: focus?.family ?? null,
      plateau: ph?.plateau ? { onset: ph.plateau.onset, end: ph.plateau.end } : null,
      drop: ph?.drop?.step ?? null,
      selected: st.step,
    }));
  } else {
    // live: replace the curve data in the running view, no re-embed
    const view = st.lossView.view;
    await view.change("loss", vega.changeset().remove(() => true).insert(rows)).runAsync();
  }
  el.dataset["points"] = String(rows.length);
  el.dataset["steps"] = String(Math.max(0, ...[...st.compare].map((n) => st.live.get(n)?.rows.length ?? 0)));
}

// ------------------------------------------------------------ scrubber

function phaseOf(step: number, ph: W.Phases | null | undefined): string {
  if (!ph) return "";
  if (ph.drop && step >= ph.drop.step) return "after the drop";
  if (ph.plateau && step >= ph.plateau.onset && step <= ph.plateau.end) return "on the plateau (copying)";
  if (ph.plateau && step < ph.plateau.onset) return "before the plateau";
  if (ph.plateau && step > ph.plateau.end) return ph.drop ? "leaving the plateau" : "after the plateau";
  return "";
}

/** The analyze CLI's pre/post choice (src/analysis/phases.ts pickSteps). */
function prePost(s: RunSummary): { pre: number | null; post: number | null } {
  const ph = s.phases;
  let pre: number | null = null, post: number | null = null;
  if (ph?.plateau) {
    const limit = ph.drop ? Math.min(ph.plateau.end, ph.drop.step - ph.window) : ph.plateau.end;
    const c = s.checkpoints.filter((x) => x >= ph.plateau!.onset && x <= limit);
    pre = c.at(-1) ?? null;
  }
  const last = s.checkpoints.at(-1);
  if (ph?.drop && last !== undefined && last > ph.drop.step) post = last;
  return { pre, post };
}

function updateScrubber(reset: boolean): void {
  const s = st.focus ? st.runs.get(st.focus) : undefined;
  const ck = s?.checkpoints ?? [];
  const sl = $<HTMLInputElement>("scrub");
  sl.max = String(Math.max(0, ck.length - 1));
  sl.disabled = ck.length === 0;
  const pp = s ? prePost(s) : { pre: null, post: null };
  $<HTMLButtonElement>("btn-pre").disabled = pp.pre === null;
  $<HTMLButtonElement>("btn-post").disabled = pp.post === null;
  if (ck.length === 0) {
    st.step = null;
    clearPanels();
    $("scrub-label").textContent = s ? "this run has no checkpoints yet" : "";
    return;
  }
  let step = st.step;
  if (reset || step === null || !ck.includes(step)) step = pp.post ?? ck.at(-1)!;
  sl.value = String(ck.indexOf(step));
  if (step !== st.step) selectStep(step);
  else labelStep();
}

function labelStep(): void {
  const s = st.focus ? st.runs.get(st.focus) : undefined;
  if (!s || st.step === null) return;
  const i = s.checkpoints.indexOf(st.step);
  const where = phaseOf(st.step, s.phases);
  $("scrub-label").innerHTML = `checkpoint <b>${st.step}</b> (${i + 1} of ${s.checkpoints.length})${where ? ` · <span class="phase">${where}</span>` : ""}`;
}

let stepTimer: number | null = null;
function selectStep(step: number): void {
  st.step = step;
  labelStep();
  if (stepTimer !== null) clearTimeout(stepTimer);
  stepTimer = window.setTimeout(() => {
    stepTimer = null;
    void renderLoss(true);
    // the checkpoint panels draw the BERT's analyses; a GPT run's are written by `abrupt analyze`
    const fam = st.focus ? st.runs.get(st.focus)?.family : null;
    if (fam && fam !== "bert") {
      for (const id of ["att-status", "sample-status", "emb-status", "probe-status", "progress-status"]) status(id, `drawn for BERT runs; for this ${fam.toUpperCase()} run: abrupt analyze all ${st.focus}`);
      for (const id of ["att-grid", "att-head", "att-query", "att-findings", "sample", "sample-findings", "emb-token", "emb-pos", "emb-findings", "probe", "progress", "change"]) $(id).innerHTML = "";
      return;
    }
    // requested in this order, computed in this order by the server's queue
    void loadAttention();
    void loadSample();
    void loadEmbeddings();
    void loadProbe();
    if (progressFor !== st.focus) void loadProgress();
    else void renderProgress();
  }, 120);
}

// -------------------------------------------------------------- panels

const aborts = new Map<string, AbortController>();
/** Fetches an analysis of the focused run at the selected step; a newer request of the same panel aborts the older one. */
async function analysis<T>(panel: string, kind: string, extra = ""): Promise<{ data: T; step: number; run: string } | null> {
  const run = st.focus, step = st.step;
  if (!run || step === null) return null;
  aborts.get(panel)?.abort();
  const ac = new AbortController();
  aborts.set(panel, ac);
  const data = await getJson<T>(api(run, `/analysis/${kind}?step=${step}${extra}`), ac.signal);
  if (ac.signal.aborted || run !== st.focus || step !== st.step) return null;
  return { data, step, run };
}

function isAbort(e: unknown): boolean {
  return (e as Error).name === "AbortError";
}

function findings(id: string, xs: string[], max = 8): void {
  $(id).innerHTML = xs.slice(0, max).map((x) => `<li>${esc(x)}</li>`).join("");
}

async function loadAttention(): Promise<void> {
  status("att-status", "computing attention…", "busy");
  try {
    const r = await analysis<S.AttentionJson>("attention", "attention");
    if (!r) return;
    st.att = r.data;
    status("att-status", `checkpoint ${r.step}`);
    await renderAttention(r.step);
  } catch (e) {
    if (!isAbort(e)) status("att-status", `attention: ${(e as Error).message}`, "error");
  }
}

function cond(): S.AttentionCondition | null {
  const a = st.att;
  if (!a) return null;
  return a.conditions.find((c) => c.mask === st.mask) ?? a.conditions[0] ?? null;
}

async function renderAttention(step: number): Promise<void> {
  const a = st.att, c = cond();
  if (!a || !c) return;
  if (st.head.layer >= a.L || st.head.head >= a.H) st.head = { layer: 0, head: 0 };
  const thumb = Math.max(56, Math.min(120, Math.floor(560 / a.H) - 10));
  const grid = $("att-grid");
  const res = await draw(grid, S.attentionGridSpec(a, c, { thumb, selected: st.head }), "canvas");
  grid.dataset["step"] = String(step);
  grid.dataset["mask"] = c.mask;
  res.view.addEventListener("click", (_e, item) => {
    const d = (item as { datum?: { layer?: number; head?: number } } | null)?.datum;
    if (d && typeof d.layer === "number" && typeof d.head === "number") {
      st.head = { layer: d.layer, head: d.head };
      void renderAttention(step);
    }
  });
  findings("att-findings", a.findings.filter((f) => f.startsWith(`${c.mask} masks`)));
  await renderHead();
}

async function renderHead(): Promise<void> {
  const a = st.att, c = cond();
  if (!a || !c) return;
  const { layer, head } = st.head;
  const el = $("att-head");
  const size = Math.max(240, Math.min(380, a.T * 9));
  const res = await draw(el, S.attentionHeadSpec(a, c, layer, head, size), "canvas");
  el.dataset["head"] = `${layer}.${head}`;
  res.view.addEventListener("mouseover", (_e, item) => {
    const d = (item as { datum?: { q?: number } } | null)?.datum;
    if (d && typeof d.q === "number" && d.q !== st.query) { st.query = d.q; void renderQuery(); }
  });
  await renderQuery();
}

async function renderQuery(): Promise<void> {
  const a = st.att, c = cond();
  if (!a || !c) return;
  const { layer, head } = st.head;
  const q = st.query ?? c.queryCell[0] * a.n + c.queryCell[1];
  const w = c.meanPattern[layer]![head]!.slice(q * a.T, (q + 1) * a.T);
  const qc: [number, number] = [Math.floor(q / a.n), q % a.n];
  const cell = Math.max(24, Math.min(48, Math.floor(300 / Math.max(a.m, a.n))));
  const el = $("att-query");
  const res = await draw(el, S.queryMatrixSpec(w, a.m, a.n, qc, {
    title: `where query cell (${qc[0]},${qc[1]}) looks · layer ${layer} head ${head}`,
    subtitle: "hover a cell (here or a row of the pattern) to make it the query",
    hidden: S.structuredHidden(c, a.m, a.n), cell,
  }));
  el.dataset["query"] = String(q);
  res.view.addEventListener("mouseover", (_e, item) => {
    const d = (item as { datum?: { t?: number } } | null)?.datum;
    if (d && typeof d.t === "number" && d.t !== st.query) { st.query = d.t; void renderQuery(); }
  });
}

async function loadSample(): Promise<void> {
  status("sample-status", "computing…", "busy");
  try {
    const r = await analysis<S.SampleJson>("sample", "sample", `&seed=${st.sampleSeed}&opt=mask=${st.mask}`);
    if (!r) return;
    const cell = Math.max(26, Math.min(46, Math.floor(260 / Math.max(r.data.m, r.data.n))));
    await draw($("sample"), S.sampleSpec(r.data, cell));
    $("sample").dataset["step"] = String(r.step);
    status("sample-status", `checkpoint ${r.step}, sample ${st.sampleSeed}`);
    findings("sample-findings", r.data.findings);
  } catch (e) {
    if (!isAbort(e)) status("sample-status", `sample: ${(e as Error).message}`, "error");
  }
}

async function loadEmbeddings(): Promise<void> {
  status("emb-status", "computing embeddings…", "busy");
  try {
    const r = await analysis<S.EmbeddingsJson>("embeddings", "embeddings");
    if (!r) return;
    await draw($("emb-token"), S.tokenPcaSpec(r.data, 300));
    await draw($("emb-pos"), S.positionTsneSpec(r.data, 300));
    $("emb-token").dataset["step"] = String(r.step);
    status("emb-status", `checkpoint ${r.step}`);
    findings("emb-findings", r.data.findings, 6);
  } catch (e) {
    if (!isAbort(e)) status("emb-status", `embeddings: ${(e as Error).message}`, "error");
  }
}

async function loadProbe(): Promise<void> {
  status("probe-status", "computing probes…", "busy");
  try {
    const r = await analysis<S.ProbeJson>("probe", "probe");
    if (!r) return;
    await draw($("probe"), S.probeSpec(r.data, 460));
    $("probe").dataset["step"] = String(r.step);
    status("probe-status", `probes at checkpoint ${r.step}`);
  } catch (e) {
    if (!isAbort(e)) status("probe-status", `probes: ${(e as Error).message}`, "error");
  }
}

let progressData: S.ProgressJson | null = null;
let progressRun: string | null = null;
/** the run whose progress measures were last requested */
let progressFor: string | null = null;
async function loadProgress(): Promise<void> {
  const run = st.focus;
  if (!run) return;
  progressFor = run;
  const s = st.runs.get(run);
  if (!s || s.checkpoints.length === 0) { $("progress").innerHTML = ""; status("progress-status", "no checkpoints yet"); void renderChange(); return; }
  status("progress-status", "computing progress measures over all checkpoints…", "busy");
  aborts.get("progress")?.abort();
  const ac = new AbortController();
  aborts.set("progress", ac);
  try {
    const d = await getJson<S.ProgressJson>(api(run, "/analysis/progress"), ac.signal);
    if (run !== st.focus) return;
    progressData = d;
    progressRun = run;
    status("progress-status", `${d.steps.length} checkpoints`);
    await renderProgress();
    void renderChange();
  } catch (e) {
    if (!isAbort(e)) status("progress-status", `progress: ${(e as Error).message}`, "error");
  }
}

async function renderProgress(): Promise<void> {
  if (!progressData || progressRun !== st.focus) return;
  const s = st.runs.get(st.focus!);
  const ph = s?.phases;
  await draw($("progress"), S.progressSpec(progressData, 560, { plateau: ph?.plateau ? { onset: ph.plateau.onset, end: ph.plateau.end } : null, drop: ph?.drop?.step ?? null, selected: st.step }));
}

function clearPanels(): void {
  for (const a of aborts.values()) a.abort();
  for (const id of ["att-grid", "att-head", "att-query", "sample", "emb-token", "emb-pos", "probe", "progress"]) {
    const el = $(id);
    (el as HTMLElement & { _vega?: Result })._vega?.finalize();
    (el as HTMLElement & { _vega?: Result })._vega = undefined;
    el.innerHTML = "";
    delete el.dataset["step"];
  }
  for (const id of ["att-findings", "sample-findings", "emb-findings"]) $(id).innerHTML = "";
  for (const id of ["att-status", "sample-status", "emb-status", "probe-status", "progress-status"]) status(id, "no checkpoint selected");
}

let changeKey = "";
/** The before/after table: attention scores and progress measures at the pre and post checkpoints. */
async function renderChange(): Promise<void> {
  const s = st.focus ? st.runs.get(st.focus) : undefined;
  const el = $("change");
  if (!s || !s.config) { el.innerHTML = ""; changeKey = ""; return; }
  const { pre, post } = prePost(s);
  if (pre === null || post === null || pre === post) {
    changeKey = "";
    el.innerHTML = `<p class="muted">${s.phases?.drop ? "No checkpoint on both sides of the drop, so no before/after comparison." : "No drop yet: a before/after table appears here once the run has a checkpoint after the drop."}</p>`;
    return;
  }
  const key = `${s.name}:${pre}:${post}:${progressRun === s.name ? progressData?.steps.length : -1}`;
  if (key === changeKey) return;
  changeKey = key;
  try {
    const [a0, a1] = await Promise.all([pre, post].map((x) => getJson<S.AttentionJson>(api(s.name, `/analysis/attention?step=${x}`))));
    if (st.focus !== s.name || changeKey !== key) return;
    const cnd = (a: S.AttentionJson) => a.conditions.find((c) => c.mask === "random") ?? a.conditions[0]!;
    const prog = (x: number) => (progressRun === s.name ? progressData?.steps.find((r) => r.step === x) ?? null : null);
    const { m, n } = a1!;
    el.innerHTML = `<h3>What changed at the drop (checkpoints ${pre} → ${post})</h3>` +
      changeTableHtml({ step: pre, heads: headsOf(cnd(a0!)), progress: prog(pre) }, { step: post, heads: headsOf(cnd(a1!)), progress: prog(post) }, { row: (n - 1) / (m * n), col: (m - 1) / (m * n) });
  } catch (e) {
    el.innerHTML = `<p class="error">before/after comparison: ${esc((e as Error).message)}</p>`;
  }
}

// ------------------------------------------------------------ focus, story

function renderStory(): void {
  const s = st.focus ? st.runs.get(st.focus) : undefined;
  if (!s?.config) {
    $("story").innerHTML = s ? `<p class="error">Run ${esc(s.name)} cannot be studied: ${esc(s.problems.join("; ") || s.status)}.</p>` : "";
    return;
  }
  const d = s.config.data;
  $("story").innerHTML = storyHtml({
    m: d.m, n: d.n, rank: d.rank, pMask: d.p_mask, factor: d.factor,
    plateau: s.phases?.plateau ?? null, drop: s.phases?.drop ?? null, final: s.phases?.final ?? null, family: s.family,
  });
}

async function setFocus(name: string): Promise<void> {
  if (st.focus && st.focus !== name) st.compare.delete(st.focus);
  st.focus = name;
  st.compare.add(name);
  st.att = null;
  st.query = null;
  progressData = null;
  progressRun = null;
  progressFor = null;
  history.replaceState(null, "", `#${st.cell ? `cell=${encodeURIComponent(st.cell)}&` : ""}run=${encodeURIComponent(name)}`);
  renderTable();
  renderStory();
  await syncLive();
  const s = st.runs.get(name);
  if (s) renderStory();
  st.step = null;
  updateScrubber(true);
  await renderLoss(true);
  changeKey = "";
  if (!s || s.checkpoints.length === 0) void loadProgress(); // else: after the panels (selectStep)
}

// ------------------------------------------------------------------- init

function initControls(): void {
  $("loss-help").textContent = PANEL_TEXT.loss;
  $("att-help").textContent = `${PANEL_TEXT.attention} ${PANEL_TEXT.attentionInteractive} ${PANEL_TEXT.structured}`;
  $("sample-help").textContent = PANEL_TEXT.sample;
  $("emb-help").textContent = PANEL_TEXT.embeddings;
  $("probe-help").textContent = PANEL_TEXT.probe;
  $("progress-help").textContent = PANEL_TEXT.progress;
  $<HTMLSelectElement>("yscale").addEventListener("change", (e) => { st.log = (e.target as HTMLSelectElement).value === "log"; void renderLoss(true); });
  const sm = $<HTMLInputElement>("smoothing");
  sm.addEventListener("input", () => {
    st.smoothing = Number(sm.value);
    $("smoothing-val").textContent = st.smoothing <= 1 ? "off" : `EMA ${st.smoothing} steps`;
    void renderLoss(false);
  });
  // the losses, on by default, and the progress measures (--progress-every), off
  const names: string[] = [...S.SERIES, ...S.MEASURES];
  // a GPT run's measure columns hold its eval scores (S.GPT_MEASURES), named in the box's tooltip
  const gptName = (i: number) => (i >= S.SERIES.length ? ` title="GPT runs: ${esc(S.GPT_MEASURES[i - S.SERIES.length]!)}"` : "");
  $("series-boxes").innerHTML = names.map((s, i) => `<label${i === S.SERIES.length ? ' class="sep"' : ""}${gptName(i)}><input type="checkbox" data-series="${i}"${st.series.has(s) ? " checked" : ""}> ${esc(s)}</label>`).join(" ");
  for (const cb of $("series-boxes").querySelectorAll<HTMLInputElement>("input")) {
    cb.addEventListener("change", () => {
      const name = names[Number(cb.dataset["series"])]!;
      if (cb.checked) st.series.add(name); else st.series.delete(name);
      void renderLoss(false);
    });
  }
  const sl = $<HTMLInputElement>("scrub");
  sl.addEventListener("input", () => {
    const s = st.focus ? st.runs.get(st.focus) : undefined;
    const step = s?.checkpoints[Number(sl.value)];
    if (step !== undefined) selectStep(step);
  });
  const jump = (which: "pre" | "post") => {
    const s = st.focus ? st.runs.get(st.focus) : undefined;
    const step = s ? prePost(s)[which] : null;
    if (s && step !== null) { sl.value = String(s.checkpoints.indexOf(step)); selectStep(step); }
  };
  $("btn-pre").addEventListener("click", () => jump("pre"));
  $("btn-post").addEventListener("click", () => jump("post"));
  for (const r of document.querySelectorAll<HTMLInputElement>("input[name=mask]")) {
    r.addEventListener("change", () => {
      st.mask = r.value as "random" | "structured";
      st.query = null;
      if (st.step !== null) void renderAttention(st.step);
      void loadSample();
    });
  }
  $("btn-sample").addEventListener("click", () => { st.sampleSeed++; void loadSample(); });
  $<HTMLSelectElement>("km-x").addEventListener("change", (e) => { st.kmX = (e.target as HTMLSelectElement).value as "step" | "seconds"; void renderKm(); });
  for (const [id, which] of [["phase-x", "x"], ["phase-y", "y"]] as const) {
    const sel = $<HTMLSelectElement>(id);
    sel.addEventListener("change", () => {
      const other = which === "x" ? "y" : "x";
      if (sel.value === st.phase[other]) st.phase[other] = st.phase[which]; // swap
      st.phase[which] = sel.value;
      initPhaseControls();
      void renderPhase();
    });
  }
  $<HTMLSelectElement>("phase-metric").addEventListener("change", (e) => { st.phase.metric = (e.target as HTMLSelectElement).value as SW.PhaseMetric; void renderPhase(); });
}

async function init(): Promise<void> {
  initControls();
  await refreshSweep();
  await refreshRuns();
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = hash.get("run"), cell = hash.get("cell");
  if (cell && st.sweep?.cells.some((c) => c.key === cell)) st.cell = cell;
  const runs = [...st.runs.values()];
  const first = (fromHash && st.runs.has(fromHash) ? fromHash : null)
    ?? runs.find((r) => r.status === "running")?.name ?? runs.find((r) => r.config && r.checkpoints.length > 0)?.name ?? runs[0]?.name;
  if (st.cell) await selectCell(st.cell, fromHash);
  else if (first) await setFocus(first);
  window.setInterval(() => { void refreshSweep(); void refreshRuns(); }, 5000);
  document.body.dataset["ready"] = "1";
}

void init();
