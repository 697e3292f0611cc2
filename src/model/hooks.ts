// Hooks, as in TransformerLens: every activation of a model has a stable
// name; analysis code reads it after a forward pass (`act`) or reads and
// replaces it during the pass (`addHook`), which changes everything
// downstream. A model declares its activations once, in a hook table (name,
// buffer, shape, in forward order); the table gives the list of names, the
// shapes, the buffer `act` returns and the error text for an unknown name,
// and holds the hook functions.
//
// The forward pass is a generator that yields a name where that activation
// is ready and has hooks (`has`); `drive` (host backends, synchronous) and
// `driveAsync` (any backend: on webgpu the activation is downloaded, handed
// to the hooks and uploaded back) run it to its end.

import { AbruptError } from "../errors.js";
import type { Kernels } from "../kernels/types.js";

export type HookFn = (act: Float32Array, info: HookInfo) => void;
export interface HookInfo {
  name: string;
  /** shape of the activation, e.g. [B, T, C] or [B, H, T, T] */
  shape: number[];
}

/** One activation of a hook table. */
export interface HookRow<Acts, Buf> {
  /** e.g. "embed.out"; the rows of a block are named without their "blocks.{l}." */
  name: string;
  /** the activation in the activations of a pass (l: the block, for block rows) */
  buf(acts: Acts, l: number): Buf;
  /** its shape in a pass over B sequences of T tokens */
  shape: (B: number, T: number) => number[];
}

/** A model's hook table: rows before the blocks, the rows of each of the L blocks, rows after them. */
export class HookTable<Acts, Buf> {
  /** every hook name, in forward order */
  readonly names: readonly string[];
  private rows = new Map<string, { row: HookRow<Acts, Buf>; l: number }>();
  private fns = new Map<string, HookFn[]>();
  private count = 0;
  private readonly valid: string;

  constructor(before: HookRow<Acts, Buf>[], block: HookRow<Acts, Buf>[], L: number, after: HookRow<Acts, Buf>[]) {
    for (const row of before) this.rows.set(row.name, { row, l: -1 });
    for (let l = 0; l < L; l++) for (const row of block) this.rows.set(`blocks.${l}.${row.name}`, { row, l });
    for (const row of after) this.rows.set(row.name, { row, l: -1 });
    this.names = [...this.rows.keys()];
    const list = (rows: HookRow<Acts, Buf>[]) => rows.map((r) => r.name).join(", ");
    this.valid = `${list(before)}, blocks.{0..${L - 1}}.{${list(block)}}, ${list(after)}`;
  }

  private row(name: string): { row: HookRow<Acts, Buf>; l: number } {
    const r = this.rows.get(name);
    if (!r) throw new AbruptError(`unknown hook "${name}" (valid: ${this.valid})`);
    return r;
  }

  /** Fails with one line naming the valid hooks unless `name` is one. */
  check(name: string): void {
    this.row(name);
  }

  shape(name: string, B: number, T: number): number[] {
    return this.row(name).row.shape(B, T);
  }

  /** The buffer of activation `name` in a pass's activations. */
  buffer(acts: Acts, name: string): Buf {
    const { row, l } = this.row(name);
    return row.buf(acts, l);
  }

  /** Adds a hook; returns the function that removes it. */
  add(name: string, fn: HookFn): () => void {
    this.check(name);
    this.fns.set(name, [...(this.fns.get(name) ?? []), fn]);
    this.count++;
    return () => {
      const l = this.fns.get(name) ?? [];
      const kept = l.filter((f) => f !== fn);
      this.fns.set(name, kept);
      this.count -= l.length - kept.length;
    };
  }

  clear(): void {
    this.fns.clear();
    this.count = 0;
  }

  /** Whether any hook is set (a pass without hooks skips every lookup). */
  get active(): boolean {
    return this.count > 0;
  }

  /** Whether `name` has hooks. */
  has(name: string): boolean {
    return (this.fns.get(name)?.length ?? 0) > 0;
  }

  /** Hands `data` (the activation, or its host copy) to the hooks of `name`. */
  call(name: string, data: Float32Array, B: number, T: number): void {
    const info = { name, shape: this.shape(name, B, T) };
    for (const fn of this.fns.get(name)!) fn(data, info);
  }
}

/**
 * Runs a pass to its end on a host backend, handing each yielded activation
 * to its hooks in place; on a device backend a hooked pass must go through
 * `driveAsync`.
 */
export function drive<Acts, Buf, R>(
  pass: Generator<string, R, void>, table: HookTable<Acts, Buf>, kernels: Kernels<Buf>, acts: () => Acts, B: number, T: number,
): R {
  let r = pass.next();
  if (!r.done && !kernels.host) throw new AbruptError(`hooks on ${kernels.name} need the asynchronous model.run(), not model.forward()`);
  while (!r.done) {
    table.call(r.value, table.buffer(acts(), r.value) as Float32Array, B, T); // host backend: Buf is Float32Array
    r = pass.next();
  }
  return r.value;
}

/** Runs a pass to its end on any backend; on a device each hooked activation is downloaded, hooked and uploaded back. */
export async function driveAsync<Acts, Buf, R>(
  pass: Generator<string, R, void>, table: HookTable<Acts, Buf>, kernels: Kernels<Buf>, acts: () => Acts, B: number, T: number,
): Promise<R> {
  if (kernels.host) return drive(pass, table, kernels, acts, B, T);
  let r = pass.next();
  while (!r.done) {
    const buf = table.buffer(acts(), r.value);
    const host = await kernels.download(buf);
    table.call(r.value, host, B, T);
    kernels.upload(buf, host);
    r = pass.next();
  }
  return r.value;
}
