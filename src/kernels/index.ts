// Backend selection: `getKernels("ref" | "cpu")`, one instance per backend.

import { loadCpuKernels } from "./cpu.js";
import { refKernels } from "./ref.js";
import type { BackendName, Kernels } from "./types.js";

export const BACKENDS: readonly BackendName[] = ["ref", "cpu"];

const cache = new Map<BackendName, Kernels>();

export function getKernels(name: BackendName): Kernels {
  let k = cache.get(name);
  if (!k) {
    k = name === "cpu" ? loadCpuKernels() : refKernels;
    cache.set(name, k);
  }
  return k;
}
