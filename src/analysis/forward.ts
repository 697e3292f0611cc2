// How analyses run a model, in TransformerLens's terms: a batch in chunks
// (`forwardBatch`), with every chosen activation cached (`runWithCache`), or
// with hooks that read or replace activations for the length of one call
// (`withHooks`, removed again even when the call throws). Analysis code uses
// these and the model's hook API only; it never edits the model.
// They take either model (a Bert: outputs [B,T]; a Gpt: logits [B,T,V]).

import type { Batch } from "../data/matrix.js";
import type { HookFn } from "../model/hooks.js";

/** What these helpers need of a model: Bert and Gpt both are one. */
export interface Hooked {
  run(tokens: Int32Array, B: number, T: number): Promise<Float32Array>;
  addHook(name: string, fn: HookFn): () => void;
}

/** Samples per forward pass: bounds the activation memory of big models. */
export const CHUNK = 64;

/** What a forward pass needs of a batch: tokens [B,T]. */
export type Tokens = Pick<Batch, "tokens" | "B" | "T">;

/**
 * Runs the model over a batch, `chunk` (default CHUNK) samples per forward
 * pass, and returns its outputs [B,T] (a Gpt: its logits [B,T,V]). `before(b0, nb)` runs before the pass
 * over samples b0..b0+nb (for hooks that need to know which samples they
 * see), `after(b0, nb)` after it (to read activations with model.act).
 */
export async function forwardBatch(
  model: Hooked, batch: Tokens,
  each: { chunk?: number; before?: (b0: number, nb: number) => void; after?: (b0: number, nb: number) => void | Promise<void> } = {},
): Promise<Float32Array> {
  const { B, T } = batch;
  const chunk = each.chunk ?? CHUNK;
  let out: Float32Array | null = null; // [B, per sample], sized by the first pass
  for (let b0 = 0; b0 < B; b0 += chunk) {
    const nb = Math.min(chunk, B - b0);
    each.before?.(b0, nb);
    const o = await model.run(batch.tokens.subarray(b0 * T, (b0 + nb) * T), nb, T);
    out ??= new Float32Array(B * (o.length / nb));
    out.set(o, b0 * (o.length / nb));
    await each.after?.(b0, nb);
  }
  return out ?? new Float32Array(0);
}

/**
 * Runs `fn` with `hooks` (hook name → function) added to the model and
 * removes them afterwards, also when `fn` throws.
 */
export async function withHooks<T>(model: Pick<Hooked, "addHook">, hooks: Record<string, HookFn>, fn: () => T | Promise<T>): Promise<T> {
  const removers: Array<() => void> = [];
  try {
    for (const [name, hook] of Object.entries(hooks)) removers.push(model.addHook(name, hook));
    return await fn();
  } finally {
    for (const r of removers) r();
  }
}

/**
 * Runs the model over a batch (in chunks, as forwardBatch) and returns its
 * outputs with a copy of each named activation over the whole batch
 * ([B, ...]: the chunks' activations one after the other).
 */
export async function runWithCache(
  model: Hooked, batch: Tokens, names: readonly string[], chunk = CHUNK,
): Promise<{ out: Float32Array; cache: Map<string, Float32Array> }> {
  const cache = new Map<string, Float32Array>();
  let at = 0; // first sample of the current chunk
  const keep = (name: string): HookFn => (act, info) => {
    const per = act.length / info.shape[0]!;
    let c = cache.get(name);
    if (!c) {
      c = new Float32Array(batch.B * per);
      cache.set(name, c);
    }
    c.set(act, at * per);
  };
  const hooks = Object.fromEntries([...new Set(names)].map((name) => [name, keep(name)]));
  const out = await withHooks(model, hooks, () => forwardBatch(model, batch, { chunk, before: (b0) => { at = b0; } }));
  return { out, cache };
}
