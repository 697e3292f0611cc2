// A sweep folder (`abrupt sweep FILE --out DIR`, marked by DIR/sweep-spec.json)
// as the dashboard serves it: its runs are DIR/runs/*, so every run view
// works on them, and
//
//   GET /api/sweep    { sweep: SweepResults } (what `abrupt analyze sweep` writes
//                     to sweep.json), or { sweep: null } for a plain runs folder
//
// The results are recomputed only when something changed: the spec, or a
// run's metrics.jsonl or status.json (size or mtime). A changed run's events
// come from the server's own incremental metrics cache (the lines appended
// since the last read), the others are reused.

import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { type SweepResults, type SweepRun, readSpecFile, runResult, sweepResults } from "../sweep/results.js";
import { runDirOf } from "../sweep/runs.js";
import type { MetricsCache } from "./runs.js";

export const isSweepDir = (dir: string): boolean => existsSync(join(dir, "sweep-spec.json"));

const stamp = (file: string): string => {
  try {
    const s = statSync(file);
    return `${s.size}:${s.mtimeMs}`;
  } catch {
    return "-";
  }
};

export class SweepResultsCache {
  private specStamp = "";
  private names: string[] = [];
  private key = "";
  private value: SweepResults | null = null;
  private runs = new Map<string, { key: string; run: SweepRun }>();

  /** `metricsOf(name)`: the metrics cache of run `name` (a folder under DIR/runs); it may throw for a folder not there yet. */
  constructor(readonly dir: string, private metricsOf: (name: string) => MetricsCache) {}

  results(): SweepResults {
    const spec = stamp(join(this.dir, "sweep-spec.json"));
    if (spec !== this.specStamp) {
      this.names = readSpecFile(this.dir).cells.flatMap((c) => c.runs);
      this.specStamp = spec;
      this.runs.clear();
      this.value = null;
    }
    // stamps first, files read after: a change in between shows at the next call
    const keys = new Map(this.names.map((n) => {
      const rd = runDirOf(this.dir, n);
      return [n, `${stamp(join(rd, "metrics.jsonl"))}|${stamp(join(rd, "status.json"))}`];
    }));
    const key = [...keys.values()].join("\n");
    if (this.value && key === this.key) return this.value;
    this.value = sweepResults(this.dir, (dir, name, seed, rank, _lines, signal) => {
      const k = keys.get(name) ?? "";
      const hit = this.runs.get(name);
      if (hit && hit.key === k) return hit.run;
      let lines;
      try {
        const m = this.metricsOf(name);
        m.update();
        lines = m.lines;
      } catch {
        lines = undefined; // no folder yet: runResult says "queued"
      }
      const run = runResult(dir, name, seed, rank, lines, signal);
      this.runs.set(name, { key: k, run });
      return run;
    });
    this.key = key;
    return this.value;
  }
}
