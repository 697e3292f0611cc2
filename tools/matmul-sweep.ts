// Matmul tile sweep on the webgpu backend: GFLOP/s of each register-tile
// size (outputs per thread 4x4 → 64x64 tiles, 8x8 → 128x128 tiles) on the
// products that matter: 4096³, and the paper model's linear layers (N = B·T
// = 12544 rows, d 768, ff 3072) forward (x Wᵀ, vec4 loads) and backward
// (dx = dy W, dW = dyᵀ x). The default choice (src/kernels/webgpu.ts gemm)
// is printed beside; tools/gpu-check.sh runs this on the real GPU so that a
// session with one can pick the tiles from numbers.
//
//   node dist/tools/matmul-sweep.js [--scale F]   (F < 1 shrinks every shape, for a software adapter)

import { timeKernel } from "../src/train/bench.js";
import { Rng } from "../src/data/rng.js";
import { type GpuTensor, loadWebGpuKernels } from "../src/kernels/webgpu.js";

const scaleArg = process.argv.indexOf("--scale");
const scale = scaleArg > 0 ? Number(process.argv[scaleArg + 1]) : 1;
const r = (x: number) => Math.max(4, Math.round((x * scale) / 4) * 4);

// [name, M, N, K, transA, transB]
const shapes: Array<[string, number, number, number, boolean, boolean]> = [
  ["4096³ A·B", r(4096), r(4096), r(4096), false, false],
  ["fc1 fwd x·W1ᵀ", r(12544), r(3072), r(768), false, true],
  ["fc2 fwd h·W2ᵀ", r(12544), r(768), r(3072), false, true],
  ["fc1 bwd dx = dy·W1", r(12544), r(768), r(3072), false, false],
  ["fc1 bwd dW1 = dyᵀ·x", r(3072), r(768), r(12544), true, false],
];

const k = await loadWebGpuKernels();
console.log(`adapter: ${k.adapterName}${k.software ? " (software)" : ""}; scale ${scale}`);
const rng = new Rng(9);
const fill = (n: number): GpuTensor => {
  const t = k.alloc(n);
  k.upload(t, new Float32Array(n).map(() => rng.range(-1, 1)));
  return t;
};
for (const [name, M, N, K, tA, tB] of shapes) {
  const A = fill(M * K), B = fill(K * N), C = k.alloc(M * N);
  const cells: string[] = [];
  for (const tile of [null, 4, 8] as const) {
    k.matmulTile = tile;
    const best = await timeKernel(k, () => k.matmul(C, A, B, M, N, K, tA, tB, 1, 0), 3);
    const gflops = (2 * M * N * K) / (best / 1000) / 1e9;
    cells.push(`${tile === null ? "default" : `${tile}x${tile}`} ${gflops.toFixed(0)} GFLOP/s (${best.toFixed(2)} ms)`);
  }
  console.log(`${name} [${M}x${N}x${K}]: ${cells.join(" | ")}`);
  k.matmulTile = null;
}
k.destroy();
