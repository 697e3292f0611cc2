// A tiny sweep made by the real `abrupt sweep` for the dashboard's tests:
// a 2 × 2 grid (train.lr × model.d), 2 seeds, 200 steps each; and metrics
// lines that put a run on the copy plateau and then through the drop.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "./cli.js";

export const TINY_SWEEP = `base: { preset: S, model: { L: 1, H: 2, d: 16, ff: 32, positions: 16 }, data: { m: 3, n: 3, rank: 1 }, train: { batch: 8, eval_every: 50, eval_batch: 16, ckpt_every: 100 } }
grid: { train.lr: [0.001, 0.003], model.d: [16, 32] }
seeds: 2
stop: { max_steps: 200 }
`;

/** Runs the tiny sweep into `top`/sweep; returns that folder. */
export function makeTinySweep(top: string): string {
  const file = join(top, "tiny.yaml");
  writeFileSync(file, TINY_SWEEP);
  const dir = join(top, "sweep");
  const r = runCli("sweep", file, "--out", dir, "--workers", "2", "--quiet");
  assert.equal(r.status, 0, r.stderr);
  return dir;
}

/** Metrics lines for steps from+1 … from+n: L_mask at the copy level r/9 (rank 1) for the first half, then near 0 (a drop). */
export function dropLines(from: number, n: number): string {
  let out = "";
  for (let i = 1; i <= n; i++) {
    const lm = i <= n / 2 ? 1 / 9 : 0.001;
    out += JSON.stringify({ step: from + i, loss: lm * 0.3, loss_mask: lm, loss_obs: 0.001, mask_abs: 0.01, lr: 0.001, ms: 2 }) + "\n";
  }
  return out;
}
