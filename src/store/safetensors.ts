// The safetensors format: u64 little-endian header length N, N bytes of JSON
// header ({ name: { dtype, shape, data_offsets: [begin, end] }, and an
// optional "__metadata__": { string: string } }), padded with spaces to a
// multiple of 8, then the raw little-endian tensor data. Offsets are relative
// to the start of the data. As in the reference implementation, tensors must
// tile the data exactly: no overlap, no holes, nothing after the last one.
//
// Reading keeps the raw bytes; getFloat32 / getInt32 convert on demand.
// Writing is atomic: FILE.tmp-<pid>, fsync, rename (writeFileAtomic, src/store/files.ts).

import * as fs from "node:fs";
import * as os from "node:os";
import { AbruptError } from "../errors.js";
import { writeFileAtomic } from "./files.js";

/** Bytes per element of every dtype the format defines (all can be read and skipped). */
const DTYPE_SIZE = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
} as const;

export type DType = keyof typeof DTYPE_SIZE;

/** One tensor as stored: dtype, shape and its little-endian bytes. */
export interface StTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

export interface StFile {
  /** path, for error messages */
  readonly file: string;
  /** tensors in header order */
  readonly tensors: ReadonlyMap<string, StTensor>;
  /** the "__metadata__" map ({} when absent) */
  readonly meta: Readonly<Record<string, string>>;
}

/**
 * A tensor to write. The array type must match the dtype: F32 Float32Array,
 * F64 Float64Array, I32 Int32Array, I64 BigInt64Array, F16 and BF16
 * Uint16Array (raw bits).
 */
export interface TensorIn {
  dtype: "F32" | "F64" | "I32" | "I64" | "F16" | "BF16";
  shape: readonly number[];
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint16Array;
}

const MAX_HEADER = 100 * 1024 * 1024; // the reference implementation's limit

function fail(file: string, problem: string): never {
  throw new AbruptError(`${file}: ${problem}`);
}

function requireLittleEndian(file: string): void {
  if (os.endianness() !== "LE") fail(file, "safetensors needs a little-endian machine");
}

function errText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
}

function isDType(s: unknown): s is DType {
  return typeof s === "string" && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

// ---------------------------------------------------------------- reading

export function readSafetensors(file: string): StFile {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    fail(file, `cannot read: ${errText(e)}`);
  }
  return parseSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), file);
}

/** Parse and validate a whole safetensors file held in memory. `file` names it in errors. */
export function parseSafetensors(buf: Uint8Array, file: string): StFile {
  requireLittleEndian(file);
  if (buf.byteLength < 8) fail(file, `truncated: ${buf.byteLength} bytes, less than the 8-byte header length`);
  const n = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(buf.byteLength - 8)) {
    fail(file, `truncated or not safetensors: header length ${n} exceeds the ${buf.byteLength - 8} bytes after it`);
  }
  if (n > BigInt(MAX_HEADER)) fail(file, `header length ${n} exceeds the ${MAX_HEADER}-byte limit`);
  const headerLen = Number(n);
  let header: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(8, 8 + headerLen));
    header = JSON.parse(text);
  } catch (e) {
    fail(file, `bad header JSON: ${errText(e)}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail(file, "bad header: not a JSON object");
  }
  const data = buf.subarray(8 + headerLen);
  const meta: Record<string, string> = {};
  const tensors = new Map<string, StTensor>();
  const spans: { name: string; begin: number; end: number }[] = [];

  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) fail(file, "__metadata__ is not an object");
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== "string") fail(file, `__metadata__ value of "${k}" is not a string`);
        meta[k] = v;
      }
      continue;
    }
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) fail(file, `tensor "${name}": entry is not an object`);
    const { dtype, shape, data_offsets: offs } = entry as Record<string, unknown>;
    if (!isDType(dtype)) fail(file, `tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      fail(file, `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(file, `tensor "${name}": data_offsets ${JSON.stringify(offs)} is not [begin, end]`);
    }
    const [begin, end] = offs as [number, number];
    if (begin > end || end > data.byteLength) {
      fail(file, `tensor "${name}": data_offsets [${begin},${end}] out of range (data is ${data.byteLength} bytes)`);
    }
    const want = numel(shape as number[]) * DTYPE_SIZE[dtype];
    if (end - begin !== want) {
      fail(file, `tensor "${name}": ${dtype} ${shapeText(shape as number[])} needs ${want} bytes, data_offsets give ${end - begin}`);
    }
    spans.push({ name, begin, end });
    tensors.set(name, { dtype, shape: shape as number[], bytes: data.subarray(begin, end) });
  }

  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const s of spans) {
    if (s.begin < at) fail(file, `tensor "${s.name}": data_offsets [${s.begin},${s.end}] overlap the previous tensor`);
    if (s.begin > at) fail(file, `tensor "${s.name}": hole of ${s.begin - at} bytes before data_offsets [${s.begin},${s.end}]`);
    at = s.end;
  }
  if (at !== data.byteLength) fail(file, `${data.byteLength - at} bytes of data after the last tensor`);
  return { file, tensors, meta };
}

function getTensor(st: StFile, name: string): StTensor {
  const t = st.tensors.get(name);
  if (!t) fail(st.file, `missing tensor "${name}"`);
  return t;
}

/** A copy of the bytes in a fresh (so aligned) buffer. */
function aligned(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer;
}

let f16Table: Float32Array | undefined;

/** IEEE binary16 bits -> float32, all 65536 values (subnormals, inf, NaN included). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = sign * m * 2 ** -24;
    else if (e === 31) t[h] = m === 0 ? sign * Infinity : NaN;
    else t[h] = sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return (f16Table = t);
}

/** The tensor as a new Float32Array, converting F16, BF16 and F64 (rounded to nearest). */
export function getFloat32(st: StFile, name: string): Float32Array {
  const t = getTensor(st, name);
  const n = numel(t.shape);
  switch (t.dtype) {
    case "F32":
      return new Float32Array(aligned(t.bytes));
    case "F64":
      return Float32Array.from(new Float64Array(aligned(t.bytes)));
    case "BF16": {
      const src = new Uint16Array(aligned(t.bytes));
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
      return out;
    }
    case "F16": {
      const src = new Uint16Array(aligned(t.bytes));
      const table = halfTable();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[src[i]!]!;
      return out;
    }
    default:
      fail(st.file, `tensor "${name}": dtype ${t.dtype} is not a float type (F32, F16, BF16, F64)`);
  }
}

/** The tensor as a new Int32Array, from I32 or I64 (each value must fit in int32). */
export function getInt32(st: StFile, name: string): Int32Array {
  const t = getTensor(st, name);
  if (t.dtype === "I32") return new Int32Array(aligned(t.bytes));
  if (t.dtype !== "I64") fail(st.file, `tensor "${name}": dtype ${t.dtype} is not an integer type (I32, I64)`);
  const src = new BigInt64Array(aligned(t.bytes));
  const out = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (v < -2147483648n || v > 2147483647n) fail(st.file, `tensor "${name}": I64 value ${v} at index ${i} does not fit in int32`);
    out[i] = Number(v);
  }
  return out;
}

// ---------------------------------------------------------------- writing

const ARRAY_OF: Record<TensorIn["dtype"], Function> = {
  F32: Float32Array, F64: Float64Array, I32: Int32Array, I64: BigInt64Array, F16: Uint16Array, BF16: Uint16Array,
};

/**
 * Write tensors (in the given order in the header; data sorted by element
 * size so every tensor is aligned) and string metadata, atomically. All
 * validation happens before anything touches the disk.
 */
export function writeSafetensors(
  file: string,
  tensors: ReadonlyArray<readonly [string, TensorIn]>,
  meta: Readonly<Record<string, string>> = {},
): void {
  requireLittleEndian(file);
  const header: Record<string, unknown> = {};
  const metaOut: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v !== "string") fail(file, `metadata "${k}" is not a string`);
    metaOut[k] = v;
  }
  if (Object.keys(metaOut).length > 0) header.__metadata__ = metaOut;

  const seen = new Set<string>();
  for (const [name, t] of tensors) {
    if (name === "" || name === "__metadata__") fail(file, `invalid tensor name ${JSON.stringify(name)}`);
    if (seen.has(name)) fail(file, `duplicate tensor "${name}"`);
    seen.add(name);
    if (!Object.prototype.hasOwnProperty.call(ARRAY_OF, t.dtype)) fail(file, `tensor "${name}": cannot write dtype ${JSON.stringify(t.dtype)}`);
    if (!(t.data instanceof ARRAY_OF[t.dtype])) {
      fail(file, `tensor "${name}": dtype ${t.dtype} needs a ${ARRAY_OF[t.dtype].name}, got ${t.data.constructor.name}`);
    }
    if (!t.shape.every((s) => Number.isSafeInteger(s) && s >= 0)) fail(file, `tensor "${name}": bad shape ${JSON.stringify(t.shape)}`);
    if (numel(t.shape) !== t.data.length) {
      fail(file, `tensor "${name}": shape ${shapeText(t.shape)} has ${numel(t.shape)} elements, data has ${t.data.length}`);
    }
  }
  // Larger elements first keeps every tensor aligned (the data start is 8-aligned).
  const order = tensors
    .map(([name, t], i) => ({ name, t, i }))
    .sort((a, b) => DTYPE_SIZE[b.t.dtype] - DTYPE_SIZE[a.t.dtype] || a.i - b.i);
  const offsets = new Map<string, [number, number]>();
  let at = 0;
  for (const { name, t } of order) {
    offsets.set(name, [at, at + t.data.byteLength]);
    at += t.data.byteLength;
  }
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: offsets.get(name) };
  }

  let json = Buffer.from(JSON.stringify(header), "utf-8");
  const pad = (8 - (json.byteLength % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.byteLength));

  const data = order.map(({ t }) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  writeFileAtomic(file, [len, json, ...data], { sync: true });
}
