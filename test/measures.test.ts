// The progress measures logged during training (src/analysis/measures.ts):
// against a straightforward computation on a small model, against the
// checkpoint analysis (progress.ts) on the same batch; the trainer logs them
// at the multiples of --progress-every and nowhere else (none with 0); the
// intervention is on from its step and a resumed run keeps it.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DataConfig, sampleBatch } from "../src/data/matrix.js";
import { Rng } from "../src/data/rng.js";
import { loadCpuKernels } from "../src/kernels/cpu.js";
import { refKernels } from "../src/kernels/ref.js";
import type { AttnBias } from "../src/model/attn-bias.js";
import { Bert } from "../src/model/bert.js";
import type { ModelConfig } from "../src/model/params.js";
import { COLLAPSE_SITES, stepMeasures } from "../src/analysis/measures.js";
import { progressAt } from "../src/analysis/progress.js";
import { AbruptError } from "../src/errors.js";
import { attnBiasOn, parseAttnBias, resolveConfig } from "../src/train/config.js";
import { type MetricsLine, readMetrics } from "../src/train/metrics.js";
import { train } from "../src/train/train.js";

const m = 3, n = 4, T = m * n;
const data: DataConfig = { m, n, rank: 2, pMask: 0.4, prec: 2, factor: "uniform", clamp: false };
const cfg: ModelConfig = { vocab: 2002, positions: T, L: 3, H: 2, d: 8, ff: 16, lnEps: 1e-12 };

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), "abrupt-measures-")); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });

/** The measures written out loop by loop, from the definitions (no shared code). */
function naive(model: Bert, hidden: Uint8Array, B: number, out: Float32Array, prec: number) {
  const { L, H, d: C } = model.cfg;
  const coords = (c: number) => [Math.floor(c / n), c % n] as const;
  // attention progress per layer and head
  const perHead: number[][] = [];
  for (let l = 0; l < L; l++) {
    const att = model.act(`blocks.${l}.attn.pattern`);
    const row: number[] = [];
    for (let h = 0; h < H; h++) {
      let sum = 0, count = 0;
      for (let b = 0; b < B; b++) {
        for (let q = 0; q < T; q++) {
          if (!hidden[b * T + q]) continue;
          const [qi, qj] = coords(q);
          let on = 0, all = 0, targets = 0;
          for (let k = 0; k < T; k++) {
            const [ki, kj] = coords(k);
            const a = Math.abs(att[((b * H + h) * T + q) * T + k]!);
            all += a;
            if (!hidden[b * T + k] && (ki === qi || kj === qj)) { on += a; targets++; }
          }
          if (targets === 0) continue;
          sum += on / all;
          count++;
        }
      }
      row.push(sum / count);
    }
    perHead.push(row);
  }
  // collapse: every pair t < t' of every sample
  const cosMean = (x: Float32Array) => {
    let total = 0;
    for (let b = 0; b < B; b++) {
      let s = 0, pairs = 0;
      for (let t = 0; t < T; t++) {
        for (let u = t + 1; u < T; u++) {
          let dot = 0, nt = 0, nu = 0;
          for (let c = 0; c < C; c++) {
            const a = x[(b * T + t) * C + c]!, e = x[(b * T + u) * C + c]!;
            dot += a * e; nt += a * a; nu += e * e;
          }
          s += dot / Math.sqrt(nt * nu);
          pairs++;
        }
      }
      total += s / pairs;
    }
    return total / B;
  };
  const l = L - 1;
  const sites = {
    before_attn: cosMean(model.act(`blocks.${l - 1}.ln2.out`)),
    attn_out: cosMean(model.act(`blocks.${l}.attn.out`)),
    after_attn: cosMean(model.act(`blocks.${l}.ln1.out`)),
    after_mlp: cosMean(model.act(`blocks.${l}.mlp.out`)),
    before_head: cosMean(model.act(`blocks.${l}.ln2.out`)),
  };
  // repetition: neighbours printed with `prec` decimals
  let rep = 0;
  for (let b = 0; b < B; b++) {
    let same = 0;
    for (let t = 0; t + 1 < T; t++) if (out[b * T + t]!.toFixed(prec) === out[b * T + t + 1]!.toFixed(prec)) same++;
    rep += same / (T - 1);
  }
  return { perHead, sites, repetition: rep / B };
}

const close = (a: number, b: number, what: string, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol * (1 + Math.abs(b)), `${what}: ${a} vs ${b}`);

const cases: Array<[string, AttnBias | null]> = [["plain", null], ["with the intervention on layer 1", { c: 3, layers: [1], m, n }]];
for (const [name, bias] of cases) {
  test(`stepMeasures of a training step's forward equal the definitions computed loop by loop (${name})`, async () => {
    const model = new Bert(cfg, refKernels);
    model.init(5, 0.4);
    model.setAttnBias(bias);
    const batch = sampleBatch(new Rng(6), data, 5);
    const { B } = batch;
    // a training step's forward and backward (the backward must leave the activations alone)
    model.zeroGrad();
    const out = model.forward(batch.tokens, B, T).slice();
    const dpred = new Float32Array(B * T);
    refKernels.mse(dpred, out, batch.targets, B * T, 1 / (B * T));
    model.backward(dpred);
    // outputs near-constant at one decimal, so repetition is neither 0 nor 1
    const got = await stepMeasures(model, batch, out, 1);
    const want = naive(model, batch.hidden, B, out, 1);
    const layerMeans = want.perHead.map((hs) => hs.reduce((a, b) => a + b, 0) / hs.length);
    got.attn_progress_layers.forEach((v, l) => close(v, layerMeans[l]!, `layer ${l}`));
    close(got.attn_progress, Math.max(...layerMeans), "attn_progress");
    const flat = want.perHead.flatMap((hs, l) => hs.map((v, h) => ({ layer: l, head: h, value: v })));
    const top = flat.reduce((a, b) => (b.value > a.value ? b : a));
    assert.deepEqual([got.attn_progress_best_head.layer, got.attn_progress_best_head.head], [top.layer, top.head]);
    close(got.attn_progress_best_head.value, top.value, "best head");
    for (const s of COLLAPSE_SITES) close(got.collapse_sites[s], want.sites[s], `collapse at ${s}`);
    assert.equal(got.collapse, got.collapse_sites.before_head);
    close(got.repetition, want.repetition, "repetition", 0);
    assert.ok(got.repetition > 0 && got.repetition < 1, `repetition ${got.repetition} is a weak test`);
    // the checkpoint analysis (a new forward pass) agrees
    const p = await progressAt(model, batch, 1);
    p.attnByHead.forEach((hs, l) => hs.forEach((v, h) => close(v, want.perHead[l]![h]!, `progressAt layer ${l} head ${h}`)));
    close(p.collapse, got.collapse, "progressAt collapse");
    close(p.repetition, got.repetition, "progressAt repetition", 0);
  });
}

test("cpu: stepMeasures match ref on the same model and batch", async () => {
  const batch = sampleBatch(new Rng(7), data, 6);
  const res = [];
  for (const k of [refKernels, loadCpuKernels()]) {
    const model = new Bert(cfg, k);
    model.init(8, 0.3);
    const out = model.forward(batch.tokens, batch.B, T).slice();
    res.push(await stepMeasures(model, batch, out, 2));
  }
  const [r, c] = res as [Awaited<ReturnType<typeof stepMeasures>>, Awaited<ReturnType<typeof stepMeasures>>];
  r.attn_progress_layers.forEach((v, l) => close(c.attn_progress_layers[l]!, v, `layer ${l}`, 1e-5));
  for (const s of COLLAPSE_SITES) close(c.collapse_sites[s], r.collapse_sites[s], s, 1e-5);
});

const tiny = (extra: Record<string, unknown> = {}) =>
  resolveConfig("cpu", undefined, {
    model: { L: 2, H: 2, d: 16, ff: 32, positions: 16 },
    data: { m: 3, n: 4, rank: 1, p_mask: 0.3 },
    train: { steps: 12, batch: 8, lr: 3e-3, warmup: 2, seed: 3, eval_every: 4, eval_batch: 8, ckpt_every: 0, ckpt_log: 0, backend: "cpu", ...extra },
  });
const FIELDS = ["attn_progress", "attn_progress_layers", "attn_progress_best_head", "collapse", "collapse_sites", "repetition"];
const rawLines = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);

test("metrics.jsonl: the measures at the multiples of --progress-every, and only there; none with 0", async () => {
  const dir = tmp();
  await train(tiny({ progress_every: 5 }), { outDir: dir, quiet: true });
  const lines = rawLines(dir);
  assert.equal(lines.length, 12);
  for (const l of lines) {
    const at = (l["step"] as number) % 5 === 0;
    for (const f of FIELDS) assert.equal(f in l, at, `step ${l["step"]}: ${f}`);
    if (!at) continue;
    assert.equal(typeof l["attn_progress"], "number");
    const layers = l["attn_progress_layers"] as number[];
    assert.equal(layers.length, 2);
    assert.equal(l["attn_progress"], Math.max(...layers));
    const best = l["attn_progress_best_head"] as { layer: number; head: number; value: number };
    assert.ok(best.layer >= 0 && best.layer < 2 && best.head >= 0 && best.head < 2 && best.value >= (layers[best.layer] as number) - 1e-12);
    assert.deepEqual(Object.keys(l["collapse_sites"] as object), [...COLLAPSE_SITES]);
    assert.equal(l["collapse"], (l["collapse_sites"] as Record<string, number>)["before_head"]);
    const rep = l["repetition"] as number;
    assert.ok(rep >= 0 && rep <= 1);
  }
  // eval steps (4, 8, 12) still have their eval fields, the measure steps (5, 10) are unchanged otherwise
  assert.ok("eval_loss" in lines[3]! && !("eval_loss" in lines[4]!));
  const off = tmp();
  await train(tiny({ progress_every: 0 }), { outDir: off, quiet: true });
  const none = rawLines(off);
  assert.equal(none.length, 12);
  for (const l of none) for (const f of FIELDS) assert.ok(!(f in l), `K=0, step ${l["step"]}: ${f}`);
  // the measures read the step's activations only: the losses are the same with and without them
  const strip = (ls: Record<string, unknown>[]) => ls.map((l) => [l["step"], l["loss"], l["eval_loss"]]);
  assert.deepEqual(strip(lines), strip(none));
});

test("the intervention: off before its step, on from it (losses change from there); config.json records it; resume keeps it", async () => {
  const strip = (ls: MetricsLine[]) => ls.map((l) => ({ ...l, ms: 0 }));
  const plain = tmp();
  await train(tiny(), { outDir: plain, quiet: true });
  const biased = tmp();
  const bias = { c: 5, from: 7, layers: [0] };
  await train(tiny({ attn_bias: bias }), { outDir: biased, quiet: true });
  const a = readMetrics(join(plain, "metrics.jsonl")).lines, b = readMetrics(join(biased, "metrics.jsonl")).lines;
  assert.deepEqual(strip(b.slice(0, 6)), strip(a.slice(0, 6)), "steps 1..6 without the bias");
  assert.notEqual(b[6]!.loss, a[6]!.loss, "step 7 with it");
  assert.deepEqual(JSON.parse(readFileSync(join(biased, "config.json"), "utf8")).train.attn_bias, bias);
  // stopped before the bias starts, resumed (from config.json, as `train --resume` does): the same run
  const resumed = tmp();
  await train(tiny({ attn_bias: bias, ckpt_every: 5 }), { outDir: resumed, quiet: true, stopAfter: 5 });
  const saved = JSON.parse(readFileSync(join(resumed, "config.json"), "utf8"));
  await train(resolveConfig(saved.preset, saved, {}), { outDir: resumed, quiet: true, resume: true });
  assert.deepEqual(strip(readMetrics(join(resumed, "metrics.jsonl")).lines), strip(b));
});

test("the intervention switched off: the same run as one left on, until its end step; a different one after", async () => {
  const strip = (ls: MetricsLine[]) => ls.map((l) => ({ ...l, ms: 0 }));
  const on = tmp(), off = tmp();
  await train(tiny({ attn_bias: { c: 5, from: 3, layers: null } }), { outDir: on, quiet: true });
  await train(tiny({ attn_bias: parseAttnBias("5@3-9") }), { outDir: off, quiet: true });
  const a = readMetrics(join(on, "metrics.jsonl")).lines, b = readMetrics(join(off, "metrics.jsonl")).lines;
  assert.deepEqual(strip(b.slice(0, 8)), strip(a.slice(0, 8)), "steps 1..8 alike");
  assert.notEqual(b[8]!.loss, a[8]!.loss, "step 9 without the bias");
  assert.equal(JSON.parse(readFileSync(join(off, "config.json"), "utf8")).train.attn_bias.until, 9);
});

test("attnBiasOn: from its step, until its end step or through the drop step", () => {
  const ab = parseAttnBias("2@10-drop:0");
  assert.deepEqual(ab, { c: 2, from: 10, until: "drop", layers: [0] });
  assert.deepEqual([9, 10, 500].map((s) => attnBiasOn(ab, s, null)), [false, true, true], "no drop yet: on");
  assert.deepEqual([499, 500, 501].map((s) => attnBiasOn(ab, s, 500)), [true, true, false], "off from the step after the drop");
  const fixed = parseAttnBias("2@10-20");
  assert.deepEqual([9, 10, 19, 20].map((s) => attnBiasOn(fixed, s, 5)), [false, true, true, false]);
  assert.deepEqual([0, 1e9].map((s) => attnBiasOn(parseAttnBias("3"), s, 1)), [true, true], "no end: on throughout");
  for (const [spec, re] of [["2@10-5", /UNTIL must be "drop" or a step number after STEP/], ["2@10-", /UNTIL must be/], ["2@10-x", /UNTIL must be/], ["2@-drop", /STEP must be a step number/]] as const) {
    assert.throws(() => parseAttnBias(spec), (e: Error) => e instanceof AbruptError && re.test(e.message) && !e.message.includes("\n"), spec);
  }
});
