// Numeric helpers shared by the kernel parity tests (cpu and webgpu vs ref).
import assert from "node:assert/strict";

/** A small seeded PRNG (mulberry32): uniform [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform [lo, hi) values as a Float32Array. */
export function rand(rng: () => number, n: number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng();
  return a;
}

export function rms(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s / Math.max(1, a.length));
}

/**
 * Parity criterion, elementwise: |a_i - b_i| <= rtol * (|b_i| + rms(b)).
 * Relative per element, with an absolute floor at the array's typical
 * magnitude so that entries that cancel to ~0 (sums of many float terms) do
 * not demand more than float accuracy. NaN anywhere fails.
 */
export function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, what: string, rtol: number): void {
  assert.equal(a.length, b.length, `${what}: length`);
  const floor = rms(b);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < b.length; i++) {
    const diff = Math.abs(a[i]! - b[i]!);
    const err = diff === 0 ? 0 : diff / (Math.abs(b[i]!) + floor);
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  assert.ok(worst <= rtol, `${what}: error ${worst.toExponential(2)} at ${at} (${a[at]} vs ${b[at]}), tol ${rtol}`);
}
