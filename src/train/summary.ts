// summary.json of a run: its events (src/train/events.ts, the one definition
// of plateau and drop) in the shape the CLI prints and the dashboard reads,
// written with the loss figure when training ends.

import { join } from "node:path";
import { writeJsonAtomic } from "../store/files.js";
import { lossCurveSpec, writeFigure } from "../viz/plot.js";
import { type RunConfig, decayStartOf } from "./config.js";
import { EVENT_WINDOW, type RunEvents, detectEvents } from "./events.js";
import { type EventSignal, familyOf } from "../family/index.js";
import { type MetricsLine, readMetrics } from "./metrics.js";

export interface DropSummary {
  copyLevel: number;
  window: number;
  plateau: { start: number; end: number; length: number; meanLossMask: number } | null;
  drop: { step: number; seconds: number } | null;
  /** plateau of >= minPlateau steps followed by a drop */
  phenomenon: boolean;
  final: { step: number; loss: number; loss_mask: number; loss_obs: number } | null;
  seconds: number;
  /** the run's events (src/train/events.ts): plateau_end and drop are null when they did not happen */
  events: RunEvents;
}

export function summarizeDrop(lines: MetricsLine[], rank: number, opts: { window?: number; signal?: EventSignal; minPlateau?: number } = {}): DropSummary {
  const minPlateau = opts.minPlateau ?? 200;
  const ev = detectEvents(lines, rank, opts.signal ?? opts.window ?? EVENT_WINDOW);
  const end = ev.plateau_end ?? ev.last_on_plateau;
  const plateau = ev.plateau_start !== null && end !== null
    ? { start: ev.plateau_start, end, length: end - ev.plateau_start + 1, meanLossMask: ev.plateau_mean ?? NaN }
    : null;
  const drop = ev.drop !== null ? { step: ev.drop, seconds: Math.round(ev.drop_seconds ?? 0) } : null;
  const f = lines[lines.length - 1];
  return {
    copyLevel: ev.copyLevel,
    window: ev.window,
    plateau,
    drop,
    phenomenon: !!plateau && plateau.length >= minPlateau && !!drop,
    final: f ? { step: f.step, loss: f.loss, loss_mask: f.loss_mask, loss_obs: f.loss_obs } : null,
    seconds: Math.round(ev.seconds),
    events: ev,
  };
}

/** After training: the run's summary.json and its loss figure (loss.svg, loss.png). */
export async function finishRun(outDir: string, cfg: RunConfig): Promise<DropSummary> {
  const { lines } = readMetrics(join(outDir, "metrics.jsonl"));
  const fam = familyOf(cfg);
  const summary = summarizeDrop(lines, cfg.data.rank, { signal: fam.events });
  writeJsonAtomic(join(outDir, "summary.json"), summary);
  if (lines.length > 1) {
    const t = cfg.train;
    const decayFrom = decayStartOf(t);
    const marks: Array<{ step: number; label: string }> = [];
    if (t.lr_decay === "cosine" && decayFrom > 0) marks.push({ step: decayFrom, label: `lr decay starts (${decayFrom})` });
    if (summary.drop) marks.push({ step: summary.drop.step, label: `${fam.events.label} < 0.2·r/9 (${summary.drop.step})` });
    await writeFigure(fam.curveSpec(lines, cfg, marks), join(outDir, "loss"));
  }
  return summary;
}
