// summary.json of a run: its events (src/train/events.ts, the one definition
// of plateau and drop) in the shape the CLI prints and the dashboard reads.

import { EVENT_WINDOW, type RunEvents, detectEvents } from "./events.js";
import type { MetricsLine } from "./metrics.js";

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

export function summarizeDrop(lines: MetricsLine[], rank: number, opts: { window?: number; minPlateau?: number } = {}): DropSummary {
  const minPlateau = opts.minPlateau ?? 200;
  const ev = detectEvents(lines, rank, opts.window ?? EVENT_WINDOW);
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
