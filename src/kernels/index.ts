// Backend selection. Host backends (ref, cpu) load synchronously:
// `getKernels("ref" | "cpu")`. Every backend, webgpu included (its device is
// found asynchronously): `await loadKernels(name)`. One instance per backend.

import { loadCpuKernels } from "./cpu.js";
import { refKernels } from "./ref.js";
import type { BackendName, Kernels } from "./types.js";

/** Every backend, the default (cpu) first. */
export const BACKENDS: readonly BackendName[] = ["cpu", "ref", "webgpu"];

export type HostBackendName = Exclude<BackendName, "webgpu">;

const cache = new Map<HostBackendName, Kernels>();

export function getKernels(name: HostBackendName): Kernels {
  let k = cache.get(name);
  if (!k) {
    k = name === "cpu" ? loadCpuKernels() : refKernels;
    cache.set(name, k);
  }
  return k;
}

/**
 * A host backend for host-side linear algebra (e.g. the probes' least
 * squares when the model runs on webgpu): cpu, or ref where the native
 * addon does not load (a GPU machine with only the carried bundle).
 */
export function hostKernels(): Kernels {
  try {
    return getKernels("cpu");
  } catch {
    return getKernels("ref");
  }
}

/** Any backend; the webgpu module (and Dawn) is only loaded when asked for. */
export async function loadKernels(name: BackendName): Promise<Kernels<unknown>> {
  if (name !== "webgpu") return getKernels(name) as Kernels<unknown>;
  const { loadWebGpuKernels } = await import("./webgpu.js");
  return (await loadWebGpuKernels()) as Kernels<unknown>;
}
