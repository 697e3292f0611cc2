// The PyTorch peer of `abrupt bench --torch PYTHON`: tools/bench_torch.py
// run by PYTHON in a child process, one size at a time, timing the same
// training step in PyTorch. Its one JSON line is checked here (zod) and
// turned into ms/step; runBench (bench.ts) alternates it with our own child
// and reports the ratio ours/torch beside the sgemm rate.

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { z } from "zod";
import { AbruptError } from "../errors.js";
import { repoRoot } from "../kernels/cpu.js";
import type { BenchSize } from "./bench.js";

export const torchScript = (): string => join(repoRoot(), "tools", "bench_torch.py");

const Version = z.object({ torch: z.string(), python: z.string() });
export type TorchVersion = z.infer<typeof Version>;

const Result = z.object({
  size: z.string(),
  ms_per_step: z.number().positive(),
  ms_all: z.array(z.number()),
  steps: z.number().int(),
  threads: z.number().int(),
  torch: z.string(),
});

export interface TorchResult {
  size: string;
  msPerStep: number;
  msAll: number[];
  steps: number;
  threads: number;
  torch: string;
}

/** The last meaningful stderr line of a failed child (a Python traceback's last line names the error). */
function lastLine(text: string | null | undefined): string | undefined {
  return (text ?? "").trim().split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("Warning:")).pop();
}

/** Runs `python tools/bench_torch.py ARGS`; its last stdout line, or a one-line AbruptError naming what failed. */
function runScript(python: string, args: string[], what: string): unknown {
  const r = spawnSync(python, [torchScript(), ...args], { encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    throw new AbruptError(`--torch ${python}: cannot run it (${code === "ENOENT" ? "no such file" : code === "EACCES" ? "not executable" : r.error.message})`);
  }
  if (r.status !== 0) throw new AbruptError(`--torch ${python}: ${what} failed: ${lastLine(r.stderr) ?? (r.signal ? `killed by ${r.signal}` : `exit ${r.status}`)}`);
  const line = lastLine(r.stdout);
  try {
    return JSON.parse(line ?? "");
  } catch {
    throw new AbruptError(`--torch ${python}: ${what} printed no JSON line (last line: ${JSON.stringify(line ?? "")})`);
  }
}

/** Fails with one line unless PYTHON runs and imports torch; returns the versions. */
export function checkTorch(python: string): TorchVersion {
  const v = Version.safeParse(runScript(python, ["--check"], "import torch"));
  if (!v.success) throw new AbruptError(`--torch ${python}: bench_torch.py --check printed an unexpected line`);
  return v.data;
}

/** One PyTorch measurement of a size: one warm-up step, then `steps` timed steps in a fresh python process. */
export function torchBench(python: string, name: string, s: BenchSize, steps: number, threads: number): TorchResult {
  const shape = JSON.stringify({ L: s.L, H: s.H, d: s.d, ff: s.ff, B: s.B, m: s.m, n: s.n, ...(s.gpt ? { gpt: true } : {}) });
  const raw = runScript(python, ["--size", name, "--shape", shape, "--steps", String(steps), "--threads", String(threads)], `size ${name}`);
  const r = Result.safeParse(raw);
  if (!r.success) throw new AbruptError(`--torch ${python}: size ${name}: unexpected result ${JSON.stringify(raw).slice(0, 200)}`);
  return { size: r.data.size, msPerStep: r.data.ms_per_step, msAll: r.data.ms_all, steps: r.data.steps, threads: r.data.threads, torch: r.data.torch };
}

/** The median of a list (the upper one of the middle two, as the step medians). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
