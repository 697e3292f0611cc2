// `abrupt predict`: masked matrices in (JSON, null = hidden), every cell as
// the model outputs it out, with the same nesting.

import { readFileSync } from "node:fs";
import { z } from "zod";
import { batchFromMatrices } from "../data/matrix.js";
import { AbruptError } from "../errors.js";
import type { Kernels } from "../kernels/types.js";
import { Bert } from "../model/bert.js";
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
  const out = await model.run(batch.tokens, batch.B, batch.T);
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
  const ck = loadCheckpoint(file, heads !== undefined ? { heads } : {});
  const model = new Bert(ck.cfg, kernels);
  model.setParams(ck.params);
  return model;
}
