// `abrupt predict`: masked matrices in (JSON, null = hidden), every cell as
// the model outputs it out, with the same nesting.

import { readFileSync } from "node:fs";
import { z } from "zod";
import { batchFromMatrices } from "../data/matrix.js";
import { AbruptError } from "../errors.js";
import type { Kernels } from "../kernels/types.js";
import { Bert } from "../model/bert.js";
import { checkMemory, inferenceBytes } from "../model/memory.js";
import { paramSpecs } from "../model/params.js";
import { loadCheckpoint } from "../store/checkpoint.js";

const InputSchema = z.object({
  matrices: z.array(z.array(z.array(z.number().nullable()))),
}).strict();

export function readPredictInput(file: string): Array<Array<Array<number | null>>> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new AbruptError(`cannot read input ${file}: ${(e as Error).message.split("\n")[0]}`);
  }
  const r = InputSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new AbruptError(`input ${file}: expected {"matrices": [[[number or null, ...], ...], ...]}; at ${i.path.join(".") || "top level"}: ${i.message}`);
  }
  return r.data.matrices;
}

export async function predict<Buf>(
  model: Bert<Buf>,
  matrices: Array<Array<Array<number | null>>>,
  clamp = false,
): Promise<number[][][]> {
  const batch = batchFromMatrices(matrices, clamp);
  checkMemory(inferenceBytes(model.cfg, batch.T, { samples: batch.B, chunk: batch.B }, !model.kernels.host), `${batch.B} ${batch.m}×${batch.n} matrices with BERT L${model.cfg.L} d${model.cfg.d} ff${model.cfg.ff}`);
  const out = await model.run(batch.tokens, batch.B, batch.T);
  const bad = out.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) throw new AbruptError(`the model's output is ${out[bad]} at matrix ${Math.floor(bad / batch.T)}, cell (${Math.floor((bad % batch.T) / batch.n)}, ${bad % batch.n})`);
  const res: number[][][] = [];
  for (let b = 0; b < batch.B; b++) {
    const M: number[][] = [];
    for (let i = 0; i < batch.m; i++) {
      const row: number[] = [];
      for (let j = 0; j < batch.n; j++) row.push(out[b * batch.T + i * batch.n + j]!);
      M.push(row);
    }
    res.push(M);
  }
  return res;
}

export function loadModel<Buf>(file: string, kernels: Kernels<Buf>, heads?: number): Bert<Buf> {
  return loadPredictor(file, kernels, heads).model;
}

/**
 * The model of a checkpoint, refused if a weight is NaN or infinite (the
 * checkpoint of a run that diverged), and the matrix size it was trained on
 * (from its run config; null for a checkpoint without one).
 */
export function loadPredictor<Buf>(file: string, kernels: Kernels<Buf>, heads?: number): { model: Bert<Buf>; trainedOn: { m: number; n: number } | null } {
  const ck = loadCheckpoint(file, heads !== undefined ? { heads } : {});
  refuseNonFinite(file, ck.params, paramSpecs(ck.cfg));
  const model = new Bert(ck.cfg, kernels);
  model.setParams(ck.params);
  return { model, trainedOn: trainedOnOf(ck.meta) };
}

/** Refuses a checkpoint that holds a NaN or infinite weight (a run that diverged), naming the tensor. */
export function refuseNonFinite(file: string, params: Float32Array, specs: Array<{ name: string; offset: number; size: number }>): void {
  const bad = params.findIndex((x) => !Number.isFinite(x));
  if (bad < 0) return;
  const spec = specs.find((s) => bad >= s.offset && bad < s.offset + s.size)!;
  throw new AbruptError(`checkpoint ${file} holds ${params[bad]} in ${spec.name} (a run that diverged?); it cannot predict`);
}

/** The matrix size a checkpoint was trained on, from the run config in its metadata; null without one. */
export function trainedOnOf(meta: Record<string, string>): { m: number; n: number } | null {
  try {
    const d = (JSON.parse(meta["run_config"] ?? "null") as { data?: { m?: unknown; n?: unknown } } | null)?.data;
    if (typeof d?.m === "number" && typeof d.n === "number") return { m: d.m, n: d.n };
  } catch {
    /* no run config: nothing to compare with */
  }
  return null;
}

/** A warning when the input's matrices are not the size the checkpoint was trained on, else null. */
export function sizeWarning(trainedOn: { m: number; n: number } | null, matrices: Array<Array<Array<number | null>>>): string | null {
  const m = matrices[0]?.length ?? 0, n = matrices[0]?.[0]?.length ?? 0;
  if (!trainedOn || (trainedOn.m === m && trainedOn.n === n)) return null;
  return `warning: the checkpoint was trained on ${trainedOn.m}×${trainedOn.n} matrices, the input's are ${m}×${n}; the predictions may mean little`;
}
