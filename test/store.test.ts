import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { AbruptError } from "../src/errors.js";
import { type ModelConfig, paramCount, paramViews } from "../src/model/params.js";
import { type TensorIn, getFloat32, getInt32, parseSafetensors, readSafetensors, writeSafetensors } from "../src/store/safetensors.js";
import {
  loadCheckpoint, loadOptimizerState, pytorchLayout, saveCheckpoint, saveOptimizerState,
} from "../src/store/checkpoint.js";

const FIXTURES = fileURLToPath(new URL("../../test/fixtures/", import.meta.url));
const FIXTURE = path.join(FIXTURES, "bert_tiny.safetensors");
const FIXTURE_NOCONFIG = path.join(FIXTURES, "bert_tiny_noconfig.safetensors");
const TINY: ModelConfig = { vocab: 2002, positions: 64, L: 2, H: 2, d: 16, ff: 32, lnEps: 1e-12 };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "abrupt-store-"));
process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const tmpFile = (stem = "t") => path.join(dir, `${stem}${fileNo++}.safetensors`);

/** An AbruptError whose one-line message names `file` and matches `re`. */
function throwsAbrupt(fn: () => unknown, file: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof AbruptError, `expected AbruptError, got ${String(e)}`);
    assert.ok(!e.message.includes("\n"), `message is not one line: ${e.message}`);
    assert.ok(e.message.includes(file), `message does not name ${file}: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

/** A raw safetensors file from a header object (serialised as is) and data bytes. */
function rawFile(header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const json = Buffer.from(headerText ?? JSON.stringify(header), "utf-8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.byteLength));
  return new Uint8Array(Buffer.concat([len, json, data]));
}

function randomParams(n: number, seed: number): Float32Array {
  const p = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    p[i] = (s / 2 ** 32 - 0.5) * 0.1;
  }
  return p;
}

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

// ---------------------------------------------------------------- safetensors

test("round trip of every written dtype, metadata, empty and scalar tensors", () => {
  const f = tmpFile();
  const f32 = new Float32Array([1.5, -0, NaN, Infinity, -Infinity, 1e-45, 3.4028234663852886e38, -2.5]);
  const f64 = new Float64Array([0.1, -1e300, 1e-50, 2 ** -149, 1 / 3, -0]);
  const i32 = new Int32Array([0, 1, -1, 2147483647, -2147483648, 2001]);
  const i64 = new BigInt64Array([0n, 5n, -7n, 2147483647n, -2147483648n, 2001n]);
  // F16 bits: 1, -2, smallest subnormal, max, inf, -inf, -0, 1/3 (rounded), NaN
  const f16 = new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00, 0xfc00, 0x8000, 0x3555, 0x7e00]);
  const f16Want = [1, -2, 2 ** -24, 65504, Infinity, -Infinity, -0, 0.333251953125, NaN];
  // BF16 bits: 1, -3, inf, 0.1 (truncated bits 0x3dcc), -0
  const bf16 = new Uint16Array([0x3f80, 0xc040, 0x7f80, 0x3dcc, 0x8000]);
  const bf16Want = [1, -3, Infinity, 0.099609375, -0];
  const tensors: [string, TensorIn][] = [
    ["a.f32", { dtype: "F32", shape: [2, 4], data: f32 }],
    ["b.f16", { dtype: "F16", shape: [9], data: f16 }],
    ["c.f64", { dtype: "F64", shape: [3, 2], data: f64 }],
    ["d.i32", { dtype: "I32", shape: [6], data: i32 }],
    ["e.bf16", { dtype: "BF16", shape: [5, 1], data: bf16 }],
    ["f.i64", { dtype: "I64", shape: [2, 3], data: i64 }],
    ["g.empty", { dtype: "F32", shape: [0, 3], data: new Float32Array(0) }],
    ["h.scalar", { dtype: "F32", shape: [], data: new Float32Array([7]) }],
  ];
  writeSafetensors(f, tensors, { step: "12", "run.config": JSON.stringify({ a: [1, "é"] }) });

  const buf = fs.readFileSync(f);
  const n = Number(buf.readBigUInt64LE(0));
  assert.equal(n % 8, 0, "header padded to 8 bytes");
  assert.match(buf.subarray(8, 8 + n).toString("utf-8"), /^\{.*\} *$/);

  const st = readSafetensors(f);
  assert.deepEqual(st.meta, { step: "12", "run.config": JSON.stringify({ a: [1, "é"] }) });
  assert.deepEqual([...st.tensors.keys()], tensors.map(([k]) => k), "header keeps the given order");
  for (const [name, t] of tensors) {
    const got = st.tensors.get(name)!;
    assert.equal(got.dtype, t.dtype);
    assert.deepEqual(got.shape, t.shape);
    assert.deepEqual(Buffer.from(got.bytes), Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength), name);
  }
  assert.deepEqual(bits(getFloat32(st, "a.f32")), bits(f32), "F32 bit for bit (NaN, -0 included)");
  assert.deepEqual(getFloat32(st, "c.f64"), Float32Array.from(f64));
  assert.deepEqual([...getFloat32(st, "b.f16")], f16Want);
  assert.deepEqual([...getFloat32(st, "e.bf16")], bf16Want);
  assert.deepEqual(getInt32(st, "d.i32"), i32);
  assert.deepEqual(getInt32(st, "f.i64"), new Int32Array([0, 5, -7, 2147483647, -2147483648, 2001]));
  assert.equal(getFloat32(st, "g.empty").length, 0);
  assert.deepEqual([...getFloat32(st, "h.scalar")], [7]);
});

test("conversions refuse the wrong kind of dtype and out-of-range I64", () => {
  const f = tmpFile();
  writeSafetensors(f, [
    ["i", { dtype: "I32", shape: [1], data: new Int32Array([1]) }],
    ["x", { dtype: "F32", shape: [1], data: new Float32Array([1]) }],
    ["big", { dtype: "I64", shape: [2], data: new BigInt64Array([1n, 2n ** 40n]) }],
  ]);
  const st = readSafetensors(f);
  throwsAbrupt(() => getFloat32(st, "i"), f, /tensor "i": dtype I32 is not a float type/);
  throwsAbrupt(() => getInt32(st, "x"), f, /tensor "x": dtype F32 is not an integer type/);
  throwsAbrupt(() => getInt32(st, "big"), f, /I64 value 1099511627776 at index 1 does not fit in int32/);
  throwsAbrupt(() => getFloat32(st, "nope"), f, /missing tensor "nope"/);
});

test("reads a file written by the Python fixture generator, and unknown-but-valid dtypes", () => {
  const st = readSafetensors(FIXTURE_NOCONFIG);
  assert.equal(st.tensors.get("_backbone.embeddings.position_ids")!.dtype, "I64");
  assert.deepEqual(getInt32(st, "_backbone.embeddings.position_ids"), Int32Array.from({ length: 64 }, (_, i) => i));
  // A BOOL/U8 buffer can be present and skipped.
  const f = tmpFile();
  fs.writeFileSync(f, rawFile({ m: { dtype: "BOOL", shape: [3], data_offsets: [0, 3] } }, new Uint8Array([1, 0, 1])));
  assert.equal(readSafetensors(f).tensors.get("m")!.dtype, "BOOL");
  throwsAbrupt(() => getFloat32(readSafetensors(f), "m"), f, /dtype BOOL is not a float type/);
});

test("malformed files fail with one line naming the file and the problem", () => {
  const good = { __metadata__: { k: "v" }, w: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] } };
  const data16 = new Uint8Array(16);
  const cases: [string, Uint8Array, RegExp][] = [
    ["shorter than 8 bytes", new Uint8Array(5), /truncated: 5 bytes/],
    ["header length past the end", rawFile(good, data16).subarray(0, 30), /header length \d+ exceeds the 22 bytes after it/],
    ["data cut short", rawFile(good, data16).subarray(0, 8 + JSON.stringify(good).length + 10), /data_offsets \[0,16\] out of range \(data is 10 bytes\)/],
    ["bad JSON", rawFile(null, data16, '{"w": {"dtype": "F32",'), /bad header JSON/],
    ["invalid UTF-8", rawFile(null, data16, "{}"), /bad header JSON/],
    ["JSON array", rawFile([1, 2], new Uint8Array(0)), /not a JSON object/],
    ["offsets out of range", rawFile({ w: { dtype: "F32", shape: [2, 2], data_offsets: [8, 24] } }, data16), /tensor "w": data_offsets \[8,24\] out of range/],
    ["offsets reversed", rawFile({ w: { dtype: "F32", shape: [0], data_offsets: [8, 4] } }, data16), /out of range/],
    ["offsets not integers", rawFile({ w: { dtype: "F32", shape: [1], data_offsets: [0, "4"] } }, data16), /data_offsets \[0,"4"\] is not \[begin, end\]/],
    ["wrong shape for the bytes", rawFile({ w: { dtype: "F32", shape: [3, 2], data_offsets: [0, 16] } }, data16), /tensor "w": F32 \[3,2\] needs 24 bytes, data_offsets give 16/],
    ["bad shape", rawFile({ w: { dtype: "F32", shape: [-4], data_offsets: [0, 16] } }, data16), /shape \[-4\] is not a list of non-negative integers/],
    ["unknown dtype", rawFile({ w: { dtype: "F128", shape: [1], data_offsets: [0, 16] } }, data16), /unknown dtype "F128"/],
    ["overlap", rawFile({
      a: { dtype: "F32", shape: [3], data_offsets: [0, 12] },
      b: { dtype: "F32", shape: [2], data_offsets: [8, 16] },
    }, data16), /tensor "b": data_offsets \[8,16\] overlap the previous tensor/],
    ["hole", rawFile({ a: { dtype: "F32", shape: [2], data_offsets: [8, 16] } }, data16), /hole of 8 bytes/],
    ["trailing data", rawFile({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, data16), /8 bytes of data after the last tensor/],
    ["metadata not strings", rawFile({ __metadata__: { step: 3 } }, new Uint8Array(0)), /__metadata__ value of "step" is not a string/],
  ];
  // invalid UTF-8: patch a byte of the header
  const bad = cases.find(([what]) => what === "invalid UTF-8")![1];
  bad[9] = 0xff;
  for (const [what, bytes, re] of cases) {
    const f = tmpFile(what.replace(/\W+/g, "_"));
    fs.writeFileSync(f, bytes);
    throwsAbrupt(() => readSafetensors(f), f, re);
  }
  assert.deepEqual(parseSafetensors(rawFile(good, data16), "mem").meta, { k: "v" });
  throwsAbrupt(() => readSafetensors(path.join(dir, "missing.safetensors")), "missing.safetensors", /cannot read: ENOENT/);
});

test("writes are validated before touching the disk and are atomic", () => {
  const f = tmpFile("atomic");
  writeSafetensors(f, [["w", { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }]], { v: "1" });
  const before = fs.readFileSync(f);
  const tmpLeft = () => fs.readdirSync(dir).filter((n) => n.includes(".tmp-"));

  const bad: [[string, TensorIn][], RegExp][] = [
    [[["w", { dtype: "F32", shape: [3], data: new Float32Array([1, 2]) }]], /tensor "w": shape \[3\] has 3 elements, data has 2/],
    [[["w", { dtype: "F32", shape: [2], data: new Float64Array([1, 2]) }]], /dtype F32 needs a Float32Array, got Float64Array/],
    [[["w", { dtype: "F32", shape: [1.5], data: new Float32Array(1) }]], /bad shape \[1.5\]/],
    [[["w", { dtype: "F32", shape: [1], data: new Float32Array(1) }], ["w", { dtype: "F32", shape: [1], data: new Float32Array(1) }]], /duplicate tensor "w"/],
    [[["__metadata__", { dtype: "F32", shape: [1], data: new Float32Array(1) }]], /invalid tensor name "__metadata__"/],
  ];
  for (const [tensors, re] of bad) {
    throwsAbrupt(() => writeSafetensors(f, tensors, { v: "2" }), f, re);
    assert.deepEqual(fs.readFileSync(f), before, "old file untouched");
    assert.deepEqual(tmpLeft(), []);
  }
  // A failure at the rename (the target is a non-empty directory) leaves no tmp file behind.
  const d = path.join(dir, "adir.safetensors");
  fs.mkdirSync(d);
  fs.writeFileSync(path.join(d, "x"), "x");
  throwsAbrupt(() => writeSafetensors(d, [["w", { dtype: "F32", shape: [1], data: new Float32Array(1) }]]), d, /cannot write/);
  assert.deepEqual(tmpLeft(), []);
  assert.deepEqual(fs.readdirSync(d), ["x"]);
  // A successful overwrite replaces the file and leaves no tmp file.
  writeSafetensors(f, [["w", { dtype: "F32", shape: [1], data: new Float32Array([9]) }]]);
  assert.deepEqual([...getFloat32(readSafetensors(f), "w")], [9]);
  assert.deepEqual(tmpLeft(), []);
});

// ---------------------------------------------------------------- checkpoints

test("pytorchLayout covers every parameter exactly once", () => {
  const cfg: ModelConfig = { ...TINY, L: 3, vocab: 11, positions: 7 };
  const hits = new Uint8Array(paramCount(cfg));
  for (const s of pytorchLayout(cfg)) {
    const size = s.shape.reduce((a, b) => a * b, 1);
    for (let i = s.offset; i < s.offset + size; i++) hits[i] += 1;
  }
  assert.ok(hits.every((h) => h === 1));
});

test("checkpoint save -> load is bit for bit, in PyTorch names, with no token-type table (as the paper's code)", () => {
  const cfg: ModelConfig = { vocab: 13, positions: 9, L: 2, H: 4, d: 8, ff: 12, lnEps: 1e-12 };
  const params = randomParams(paramCount(cfg), 7);
  params[3] = -0;
  params[paramViews(cfg, params).wpe.byteOffset / 4 + 2] = -0; // a -0 in the position table survives the fold
  const f = tmpFile("ckpt");
  saveCheckpoint(f, cfg, params, { step: "100", seed: "3" });

  const st = readSafetensors(f);
  assert.equal(st.meta.format, "pt");
  assert.deepEqual(JSON.parse(st.meta["abrupt.config"]!), cfg);
  assert.equal(st.tensors.has("_backbone.embeddings.token_type_embeddings.weight"), false);
  assert.deepEqual(st.tensors.get("_backbone.encoder.layer.1.attention.self.value.weight")!.shape, [8, 8]);
  assert.deepEqual(st.tensors.get("read_out.weight")!.shape, [1, 8]);
  assert.equal(st.tensors.size, pytorchLayout(cfg).length);

  const back = loadCheckpoint(f);
  assert.deepEqual(back.cfg, cfg);
  assert.deepEqual(back.meta, { step: "100", seed: "3" });
  assert.deepEqual(bits(back.params), bits(params));

  throwsAbrupt(() => saveCheckpoint(f, cfg, params.subarray(1), {}), f, /params has \d+ values, the config needs \d+/);
  throwsAbrupt(() => saveCheckpoint(f, { ...cfg, H: 3 }, params, {}), f, /H must divide d/);
  throwsAbrupt(() => saveCheckpoint(f, cfg, params, { format: "x" }), f, /metadata key "format" is reserved/);
  throwsAbrupt(() => loadCheckpoint(f, { heads: 2 }), f, /heads 2 requested, the checkpoint's config has H=4/);
});

test("the PyTorch fixture loads with its config, folded positions and q/k/v in place", () => {
  const { cfg, params, meta } = loadCheckpoint(FIXTURE);
  assert.deepEqual(cfg, TINY);
  assert.equal(meta["fixture.T"], "25");
  const st = readSafetensors(FIXTURE);
  const w = (n: string) => getFloat32(st, n);
  const v = paramViews(cfg, params);
  const C = cfg.d;

  const tt = w("_backbone.embeddings.token_type_embeddings.weight");
  assert.ok(tt.subarray(0, C).some((x) => x !== 0), "fixture has a non-zero token-type row 0");
  const pos = w("_backbone.embeddings.position_embeddings.weight");
  for (let p = 0; p < cfg.positions; p++) {
    for (let c = 0; c < C; c++) assert.equal(v.wpe[p * C + c], Math.fround(pos[p * C + c]! + tt[c]!));
  }
  assert.deepEqual(v.wte, w("_backbone.embeddings.word_embeddings.weight"));
  assert.ok(v.wte.subarray(0, C).every((x) => x === 0), "MASK row is zero");
  for (let l = 0; l < cfg.L; l++) {
    const h = `_backbone.encoder.layer.${l}.`;
    const lay = v.layers[l]!;
    ["query", "key", "value"].forEach((name, k) => {
      assert.deepEqual(lay.qkvW.subarray(k * C * C, (k + 1) * C * C), w(`${h}attention.self.${name}.weight`), `${name} weight rows`);
      assert.deepEqual(lay.qkvB.subarray(k * C, (k + 1) * C), w(`${h}attention.self.${name}.bias`), `${name} bias`);
    });
    assert.deepEqual(lay.projW, w(`${h}attention.output.dense.weight`));
    assert.deepEqual(lay.ln1W, w(`${h}attention.output.LayerNorm.weight`));
    assert.deepEqual(lay.fc1W, w(`${h}intermediate.dense.weight`));
    assert.deepEqual(lay.fc2B, w(`${h}output.dense.bias`));
    assert.deepEqual(lay.ln2B, w(`${h}output.LayerNorm.bias`));
  }
  assert.deepEqual(v.outW, w("read_out.weight"));
  assert.deepEqual(v.outB, w("read_out.bias"));
  // The fixture batch itself is readable.
  assert.equal(getInt32(st, "fixture.tokens").length, 75);
  assert.ok(getInt32(st, "fixture.tokens").some((t) => t === 0));
  assert.deepEqual(st.tensors.get("fixture.outputs")!.shape, [3, 25]);
  assert.ok(getFloat32(st, "grad._backbone.embeddings.word_embeddings.weight").subarray(0, C).every((x) => x === 0));
});

test("without abrupt.config the config is inferred from shapes (heads given or 8)", () => {
  const a = loadCheckpoint(FIXTURE);
  const b = loadCheckpoint(FIXTURE_NOCONFIG, { heads: 2 });
  assert.deepEqual(b.cfg, TINY);
  assert.deepEqual(bits(b.params), bits(a.params));
  assert.deepEqual(b.meta, {});
  assert.deepEqual(loadCheckpoint(FIXTURE_NOCONFIG).cfg, { ...TINY, H: 8 });
  throwsAbrupt(() => loadCheckpoint(FIXTURE_NOCONFIG, { heads: 3 }), FIXTURE_NOCONFIG, /heads 3 does not divide d=16/);
});

/** The fixture's tensors as writable inputs, with edits. */
function fixtureTensors(edit: (name: string, t: TensorIn) => TensorIn | null): [string, TensorIn][] {
  const st = readSafetensors(FIXTURE);
  const out: [string, TensorIn][] = [];
  for (const [name, t] of st.tensors) {
    if (!name.startsWith("_backbone.") && !name.startsWith("read_out.")) continue;
    const e = edit(name, { dtype: "F32", shape: [...t.shape], data: getFloat32(st, name) });
    if (e) out.push([name, e]);
  }
  return out;
}

test("a missing, misshapen or unexpected tensor is named with expected and found shapes", () => {
  const cfgMeta = { "abrupt.config": JSON.stringify(TINY) };
  const f = tmpFile("broken");
  writeSafetensors(f, fixtureTensors((n, t) => (n === "_backbone.encoder.layer.1.attention.self.key.bias" ? null : t)), cfgMeta);
  throwsAbrupt(() => loadCheckpoint(f), f, /missing tensor "_backbone\.encoder\.layer\.1\.attention\.self\.key\.bias" \(expected shape \[16\]\)/);

  writeSafetensors(f, fixtureTensors((n, t) =>
    n === "_backbone.encoder.layer.0.intermediate.dense.weight" ? { ...t, shape: [16, 32] } : t), cfgMeta);
  throwsAbrupt(() => loadCheckpoint(f), f, /tensor "_backbone\.encoder\.layer\.0\.intermediate\.dense\.weight": expected shape \[32,16\], found \[16,32\]/);

  writeSafetensors(f, fixtureTensors((n, t) => (n === "read_out.bias" ? null : t)));
  throwsAbrupt(() => loadCheckpoint(f, { heads: 2 }), f, /missing tensor "read_out\.bias" \(expected shape \[1\]\)/);

  // without a token-type table (the paper's checkpoints) nothing is folded
  writeSafetensors(f, fixtureTensors((n, t) => (n === "_backbone.embeddings.token_type_embeddings.weight" ? null : t)), cfgMeta);
  const noTT = loadCheckpoint(f);
  const withTT = loadCheckpoint(FIXTURE);
  const pv = (p: Float32Array) => paramViews(noTT.cfg, p).wpe;
  const tt = getFloat32(readSafetensors(FIXTURE), "_backbone.embeddings.token_type_embeddings.weight");
  pv(noTT.params).forEach((x, i) => assert.ok(Math.abs(x + tt[i % noTT.cfg.d]! - pv(withTT.params)[i]!) < 1e-6));

  // Config says L=1 but the file has layer 1: unexpected.
  writeSafetensors(f, fixtureTensors((_, t) => t), { "abrupt.config": JSON.stringify({ ...TINY, L: 1 }) });
  throwsAbrupt(() => loadCheckpoint(f), f, /unexpected tensor "_backbone\.encoder\.layer\.1\./);

  // A hole in the layers when inferring: layer 0 missing entirely.
  writeSafetensors(f, fixtureTensors((n, t) => (n.startsWith("_backbone.encoder.layer.0.") ? null : t)));
  throwsAbrupt(() => loadCheckpoint(f, { heads: 2 }), f, /missing tensor "_backbone\.encoder\.layer\.0\.intermediate\.dense\.weight"/);

  writeSafetensors(f, fixtureTensors((_, t) => t), { "abrupt.config": "{not json" });
  throwsAbrupt(() => loadCheckpoint(f), f, /metadata "abrupt\.config" is not JSON/);
  writeSafetensors(f, fixtureTensors((_, t) => t), { "abrupt.config": JSON.stringify({ ...TINY, ff: 0 }) });
  throwsAbrupt(() => loadCheckpoint(f), f, /bad model config .*ff/);

  writeSafetensors(f, [["x", { dtype: "F32", shape: [1], data: new Float32Array(1) }]]);
  throwsAbrupt(() => loadCheckpoint(f), f, /missing tensor "_backbone\.embeddings\.word_embeddings\.weight"/);
});

test("a bare BertModel state dict (no _backbone. prefix) with F64 tensors also loads", () => {
  const f = tmpFile("bare");
  writeSafetensors(f, fixtureTensors((n, t) => {
    const data = t.data as Float32Array;
    return n.endsWith(".bias") ? { dtype: "F64", shape: t.shape, data: Float64Array.from(data) } : t;
  }).map(([n, t]): [string, TensorIn] => [n.replace(/^_backbone\./, ""), t]));
  const { cfg, params } = loadCheckpoint(f, { heads: 2 });
  assert.deepEqual(cfg, TINY);
  assert.deepEqual(bits(params), bits(loadCheckpoint(FIXTURE).params));
});

test("Adam state round trip and validation", () => {
  const f = tmpFile("adam");
  const m = randomParams(1000, 1);
  const v = randomParams(1000, 2).map(Math.abs);
  saveOptimizerState(f, m, v, 4321, { rng: JSON.stringify([1, 2, 3, 4]) });
  const s = loadOptimizerState(f, 1000);
  assert.equal(s.step, 4321);
  assert.deepEqual(s.meta, { rng: "[1,2,3,4]" });
  assert.deepEqual(bits(s.m), bits(m));
  assert.deepEqual(bits(s.v), bits(v));
  throwsAbrupt(() => loadOptimizerState(f, 999), f, /tensor "adam\.m": expected F32 \[999\], found F32 \[1000\]/);
  throwsAbrupt(() => saveOptimizerState(f, m, v.subarray(1), 1, {}), f, /adam\.m has 1000 values, adam\.v 999/);
  throwsAbrupt(() => saveOptimizerState(f, m, v, -1, {}), f, /step -1 is not a non-negative integer/);
  throwsAbrupt(() => loadOptimizerState(FIXTURE, 10), FIXTURE, /missing tensor "adam\.m"/);
  const g = tmpFile("adam");
  writeSafetensors(g, [["adam.m", { dtype: "F32", shape: [1], data: new Float32Array(1) }], ["adam.v", { dtype: "F32", shape: [1], data: new Float32Array(1) }]], { "adam.step": "1e3" });
  throwsAbrupt(() => loadOptimizerState(g, 1), g, /metadata "adam\.step" is "1e3", not a step count/);
});
