// Throughput of a sweep on this machine, in runs per hour, measured in one
// run of the machine with its sgemm rate beside it:
//   A. `abrupt sweep` with W workers × 1 thread (the sweep's default);
//   B. `abrupt sweep` with 1 worker × T threads;
//   C. the same runs as B started one by one with `abrupt train` (the
//      sweep's overhead is B against C).
// Usage: node dist/tools/sweep-bench.js [--runs 4] [--steps 2000] [--preset cpu] [--json FILE]
// (on 2 cores: W = T = 2; the runs are seeds 0..runs-1 of the preset, cut at --steps).

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { measureSgemm } from "../src/train/bench.js";
import { repoRoot } from "../src/kernels/cpu.js";

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1]! : def;
};
const runs = Number(arg("--runs", "4"));
const steps = Number(arg("--steps", "2000"));
const preset = arg("--preset", "cpu");
const jsonOut = process.argv.includes("--json") ? arg("--json", "") : null;
const cores = cpus().length;
const bin = join(repoRoot(), "bin", "abrupt.js");
const work = mkdtempSync(join(tmpdir(), "abrupt-sweep-bench-"));

function timed(args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`abrupt ${args.join(" ")} failed: ${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

function sweepFile(threads: number): string {
  const f = join(work, `sweep-t${threads}.json`);
  writeFileSync(f, JSON.stringify({ base: { preset }, seeds: runs, stop: { max_steps: steps }, threads }));
  return f;
}

const sg = measureSgemm(cores);
console.log(`sgemm (cpu backend, ${cores} threads): ${sg.gflops.toFixed(1)} GFLOP/s; ${runs} runs of preset ${preset}, ${steps} steps each`);
const res: Record<string, { seconds: number; runsPerHour: number }> = {};
const report = (name: string, s: number) => {
  res[name] = { seconds: Math.round(s * 10) / 10, runsPerHour: Math.round(((runs * 3600) / s) * 10) / 10 };
  console.log(`${name}: ${s.toFixed(1)} s, ${res[name]!.runsPerHour} runs/hour`);
};
try {
  report(`sweep ${cores} workers × 1 thread`, timed(["sweep", sweepFile(1), "--out", join(work, "a"), "--workers", String(cores), "--quiet"]));
  report(`sweep 1 worker × ${cores} threads`, timed(["sweep", sweepFile(cores), "--out", join(work, "b"), "--workers", "1", "--quiet"]));
  let one = 0;
  for (let s = 0; s < runs; s++) {
    one += timed(["train", "--preset", preset, "--seed", String(s), "--max-steps", String(steps), "--threads", String(cores), "--ckpt-every", "0", "--ckpt-log", "8", "--quiet", "--out", join(work, `c${s}`)]);
  }
  report(`train one by one × ${cores} threads`, one);
  const b = res[`sweep 1 worker × ${cores} threads`]!.seconds;
  console.log(`sweep overhead (1 worker × ${cores} threads against one by one): ${(((b - one) / one) * 100).toFixed(1)}%`);
  if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ date: new Date().toISOString(), sgemmGflops: sg.gflops, runs, steps, preset, results: res }, null, 2) + "\n");
} finally {
  rmSync(work, { recursive: true, force: true });
}
