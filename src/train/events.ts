// The one definition of a run's events, used by the trainer (to stop after
// the drop), summary.json, `analyze phases`, the dashboard and the sweeps.
//
// On the trailing moving average (window w, default 50 steps) of L_mask, with
// the copy level c = r/9 (SPEC §4):
// - the copy plateau is where the average lies within c ± 15%; it starts at
//   the first such step;
// - drop: the first step after the plateau's start where the average falls
//   below 0.2·c;
// - plateau_end: the last step on the plateau before the average leaves it
//   downwards for good: the last in-band step before the drop, or, with no
//   drop yet, the last in-band step if the average is below the band at the
//   end of the run. A run still on the plateau has no plateau_end yet
//   (censored).
// `left` is the first step after the plateau's start where the average is
// below the band: the trainer checkpoints there, near the plateau's end.

// A family may name another signal (src/family/: the GPT's greedy MSE at
// hidden cells of the evaluation set, logged at evaluation steps only, with a
// window of 5 evaluations, and a wider band); the drop threshold is the same.

import type { EventSignal } from "../family/types.js";
import type { MetricsLine } from "./metrics.js";

export const EVENT_WINDOW = 50;
/** half-width of the plateau band, as a fraction of r/9 */
export const PLATEAU_BAND = 0.15;
/** the drop threshold, as a fraction of r/9 */
export const DROP_LEVEL = 0.2;

export interface RunEvents {
  copyLevel: number;
  window: number;
  /** first step on the copy plateau (null: never on it) */
  plateau_start: number | null;
  /** last step of the copy plateau (null: never on it, or not left yet) */
  plateau_end: number | null;
  /** last in-band step so far (the plateau's extent, whether it ended or not) */
  last_on_plateau: number | null;
  /** first step below the band after the plateau's start (null: not yet) */
  left: number | null;
  /** first step after the plateau's start with the average below 0.2·r/9 */
  drop: number | null;
  /** seconds of training (sum of the steps' ms) up to the drop */
  drop_seconds: number | null;
  /** mean L_mask average over the in-band steps */
  plateau_mean: number | null;
  /** last step seen */
  steps: number;
  /** seconds of training (sum of the steps' ms) */
  seconds: number;
}

/** Feeds steps one at a time (the trainer) or all at once (`detectEvents`). */
export class EventTracker {
  private ring: number[];
  private sum = 0;
  private count = 0;
  private n = 0;
  private ms = 0;
  private inSum = 0;
  private inCount = 0;
  private ev: RunEvents;

  readonly window: number;
  private readonly field: EventSignal["field"];
  private readonly sparse: boolean;
  /** the plateau band in units of r/9 */
  private readonly band: readonly [number, number];
  /** time of steps not yet pushed (sparse signals) */
  private pendingMs = 0;

  /** `signal`: a window over L_mask (the BERT's, default 50 steps), or a family's signal. */
  constructor(rank: number, signal: number | EventSignal = EVENT_WINDOW) {
    const s: EventSignal = typeof signal === "number" ? { field: "loss_mask", window: signal, sparse: false, label: "L_mask" } : signal;
    this.window = s.window;
    this.field = s.field;
    this.sparse = s.sparse;
    this.band = s.band ?? [1 - PLATEAU_BAND, 1 + PLATEAU_BAND];
    const window = s.window;
    this.ring = new Array<number>(window).fill(NaN);
    this.ev = {
      copyLevel: rank / 9, window, plateau_start: null, plateau_end: null, last_on_plateau: null,
      left: null, drop: null, drop_seconds: null, plateau_mean: null, steps: 0, seconds: 0,
    };
  }

  /** The moving average after the last push (NaN before a full window). */
  average = NaN;

  /**
   * Adds one metrics line: its signal field, or (a sparse signal at a step
   * that did not log it) only its time. Returns the events that happened.
   */
  pushLine(l: MetricsLine): { left: boolean; drop: boolean } {
    const v = (l as unknown as Record<string, unknown>)[this.field];
    const ms = l.ms ?? 0;
    if (this.sparse && !(typeof v === "number" && Number.isFinite(v))) {
      this.pendingMs += ms;
      this.ev.steps = l.step;
      this.ev.seconds = (this.ms + this.pendingMs) / 1000;
      return { left: false, drop: false };
    }
    const all = ms + this.pendingMs;
    this.pendingMs = 0;
    return this.push(l.step, typeof v === "number" ? v : NaN, all);
  }

  /** Adds one step's value of the signal; returns the events that happened at it. */
  push(step: number, lossMask: number, ms = 0): { left: boolean; drop: boolean } {
    const slot = this.n % this.window;
    const old = this.ring[slot]!;
    if (Number.isFinite(old)) { this.sum -= old; this.count--; }
    const x = Number.isFinite(lossMask) ? lossMask : NaN;
    this.ring[slot] = x;
    if (Number.isFinite(x)) { this.sum += x; this.count++; }
    this.n++;
    this.ms += ms;
    const ev = this.ev;
    ev.steps = step;
    ev.seconds = this.ms / 1000;
    const out = { left: false, drop: false };
    if (this.n < this.window || this.count === 0) { this.average = NaN; return out; }
    const a = this.sum / this.count;
    this.average = a;
    const c = ev.copyLevel;
    const [lo, hi] = this.band;
    const inBand = a >= lo * c && a <= hi * c;
    if (ev.drop !== null) return out;
    if (inBand) {
      if (ev.plateau_start === null) ev.plateau_start = step;
      ev.last_on_plateau = step;
      this.inSum += a;
      this.inCount++;
      ev.plateau_mean = this.inSum / this.inCount;
      ev.left = null; // back on the plateau: it had not ended
    } else if (ev.plateau_start !== null && a < lo * c && ev.left === null) {
      ev.left = step;
      out.left = true;
    }
    if (ev.plateau_start !== null && a < DROP_LEVEL * c) {
      ev.drop = step;
      ev.drop_seconds = this.ms / 1000;
      out.drop = true;
    }
    return out;
  }

  result(): RunEvents {
    const ev = { ...this.ev };
    const below = Number.isFinite(this.average) && this.average < this.band[0] * ev.copyLevel;
    ev.plateau_end = ev.drop !== null || (ev.left !== null && below) ? ev.last_on_plateau : null;
    return ev;
  }
}

/** The events of a whole metrics log (steps in order); `signal` as for EventTracker. */
export function detectEvents(lines: MetricsLine[], rank: number, signal: number | EventSignal = EVENT_WINDOW): RunEvents {
  const t = new EventTracker(rank, signal);
  for (const l of lines) t.pushLine(l);
  return t.result();
}
