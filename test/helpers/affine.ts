// A hand-built one-layer model whose output is exactly a·v + b at a cell
// holding value v, and b at MASK cells: token embedding (v, −v, s, −s) with
// s = √(200 − v²) is invariant under LayerNorm, attention and MLP add nothing,
// and the read-out picks v. Used by the copy, nnm and ood tests.
import { MASK_ID, VOCAB, valueOf } from "../../src/data/matrix.js";
import { refKernels } from "../../src/kernels/ref.js";
import { Bert } from "../../src/model/bert.js";
import type { ModelConfig } from "../../src/model/params.js";

export function affineModel(a: number, b: number, positions = 64): Bert {
  const cfg: ModelConfig = { vocab: VOCAB, positions, L: 1, H: 1, d: 4, ff: 4, lnEps: 1e-12 };
  const model = new Bert(cfg, refKernels);
  model.init(1, 0.3);
  const c = 200;
  for (let id = 0; id < VOCAB; id++) {
    const v = valueOf(id), s = Math.sqrt(c - v * v);
    model.paramViews.wte.set(id === MASK_ID ? [0, 0, 0, 0] : [v, -v, s, -s], id * 4);
  }
  model.paramViews.wpe.fill(0);
  const l0 = model.paramViews.layers[0]!;
  l0.projW.fill(0); l0.projB.fill(0); l0.fc2W.fill(0); l0.fc2B.fill(0);
  model.paramViews.outW.set([a * Math.sqrt(c / 2), 0, 0, 0]);
  model.paramViews.outB[0] = b;
  return model;
}
