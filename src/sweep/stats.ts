// Statistics over seeds with censoring: Kaplan–Meier survival with
// Greenwood's variance and log-log intervals, the median with the
// Brookmeyer–Crowley interval (where the pointwise band crosses 1/2, as R's
// survfit reports it), and the Wilson interval of a proportion.

export interface Observation {
  /** time of the event, or of the end of observation when censored */
  t: number;
  /** true: the event happened at t; false: censored at t (it had not happened by then) */
  event: boolean;
}

export interface KmPoint {
  t: number;
  /** S(t): the fraction still without the event just after t */
  s: number;
  lo: number;
  hi: number;
  atRisk: number;
  events: number;
}

export interface KaplanMeier {
  n: number;
  events: number;
  /** the step function: S = 1 before the first point */
  points: KmPoint[];
  median: number | null;
  medianCi: [number | null, number | null];
}

const Z95 = 1.959963984540054;

/** Kaplan–Meier estimate over the observations' event times. */
export function kaplanMeier(obs: Observation[], z = Z95): KaplanMeier {
  const times = [...new Set(obs.filter((o) => o.event).map((o) => o.t))].sort((a, b) => a - b);
  let s = 1;
  let v = 0; // Greenwood sum
  const points: KmPoint[] = [];
  for (const t of times) {
    const atRisk = obs.filter((o) => o.t >= t).length;
    const d = obs.filter((o) => o.event && o.t === t).length;
    s *= 1 - d / atRisk;
    v += atRisk > d ? d / (atRisk * (atRisk - d)) : Infinity;
    let lo: number, hi: number;
    if (s <= 0) {
      // every remaining run had the event: the band cannot narrow further
      lo = 0;
      hi = points.length ? points[points.length - 1]!.hi : 1;
    } else {
      // log-log interval: S^exp(±z·se), se = sqrt(v)/|log S|
      const se = Math.sqrt(v) / Math.abs(Math.log(s));
      lo = Math.pow(s, Math.exp(z * se));
      hi = Math.pow(s, Math.exp(-z * se));
    }
    points.push({ t, s, lo, hi, atRisk, events: d });
  }
  const firstBelow = (key: "s" | "lo" | "hi") => points.find((p) => p[key] <= 0.5)?.t ?? null;
  return {
    n: obs.length,
    events: obs.filter((o) => o.event).length,
    points,
    median: firstBelow("s"),
    medianCi: [firstBelow("lo"), firstBelow("hi")],
  };
}

/** S(t) of a Kaplan–Meier estimate (right-continuous step function). */
export function survivalAt(km: KaplanMeier, t: number): number {
  let s = 1;
  for (const p of km.points) {
    if (p.t > t) break;
    s = p.s;
  }
  return s;
}

/** Wilson score interval of k successes in n trials. */
export function wilson(k: number, n: number, z = Z95): [number, number] {
  if (n === 0) return [0, 1];
  const p = k / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}
