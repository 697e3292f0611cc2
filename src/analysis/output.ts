// What `abrupt analyze` writes: each result as <out>/<experiment><suffix>.json
// with its figures beside it (.svg and .png), and for `analyze all` the run's
// report.md, which lists every result's findings, figures and numbers.

import { basename, join, relative } from "node:path";
import { familyOf } from "../family/index.js";
import { ensureDir, writeFileAtomic } from "../store/files.js";
import type { RunHandle } from "../store/run.js";
import { writeFigure } from "../viz/plot.js";
import type { AnalysisContext, AnalysisOutput, Source } from "./context.js";

/** One result of `abrupt analyze`: an experiment at a checkpoint (step -1: none), its files and findings. */
export interface AnalyzeResult {
  experiment: string;
  step: number;
  files: string[];
  findings: string[];
}

/**
 * Writes <outDir>/<experiment>.json (with experiment, step, seed and the
 * resolved options added) and each figure as <outDir>/<experiment>-<figure>.svg/.png.
 * Returns the written paths.
 */
export async function writeOutput(
  ctx: AnalysisContext, experiment: string, out: AnalysisOutput, suffix = "", options?: Record<string, unknown>,
): Promise<string[]> {
  ensureDir(ctx.outDir, "output folder");
  const base = join(ctx.outDir, experiment + suffix);
  const json = { experiment, step: ctx.step, seed: ctx.seed, ...(options ? { options } : {}), ...out.json, findings: out.findings };
  writeFileAtomic(`${base}.json`, JSON.stringify(json, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 1) + "\n");
  const files = [`${base}.json`];
  for (const f of out.figures) files.push(...(await writeFigure(f.spec, `${base}-${f.name}`)));
  return files;
}

/** Writes report.md into the run folder (or, for a lone checkpoint, the output folder): every result's findings, figures and numbers. */
export function writeReportMd(run: RunHandle | null, source: Source, outDir: string, results: AnalyzeResult[]): void {
  const root = run ? run.dir : outDir;
  const lines: string[] = [];
  const title = run ? basename(run.dir) : basename(source.kind === "checkpoint" ? source.file : outDir);
  lines.push(`# abrupt report: ${title}`, "");
  if (run) {
    const c = run.cfg;
    lines.push(`Run: ${c.data.m}×${c.data.n} rank ${c.data.rank}, p_mask ${c.data.p_mask}; ${familyOf(c).describe(c)}; batch ${c.train.batch}, lr ${c.train.lr}; ${run.metrics.length} steps logged; checkpoints ${run.steps.join(", ")}.`, "");
  }
  for (const r of results) {
    lines.push(`## ${r.experiment}${r.step >= 0 ? ` (checkpoint step ${r.step})` : ""}`, "");
    for (const f of r.findings) lines.push(`- ${f}`);
    lines.push("");
    for (const file of r.files) {
      const rel = relative(root, file);
      if (file.endsWith(".png")) lines.push(`![${r.experiment}](${rel})`, "");
      else if (file.endsWith(".json")) lines.push(`Numbers: [${rel}](${rel})`, "");
    }
  }
  writeFileAtomic(join(root, "report.md"), lines.join("\n") + "\n");
}
