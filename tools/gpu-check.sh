#!/usr/bin/env bash
# On a GPU machine with no Node.js and no network (e.g. an NVIDIA H200 lent
# through the device tool): unpacks the carried Node binary and project
# (.gpu-carry/, made by tools/gpu-pack.sh here), runs the webgpu parity tests
# on the real GPU and the benchmark, and writes the results to $OUT if set,
# else gpu-results/. One run, under 8 minutes (each part has a time limit).
#
#   env.txt       GPU, driver, Vulkan ICDs, the adapter Dawn picked
#   parity.txt    node --test dist/test/webgpu.test.js dist/test/webgpu-analysis.test.js
#                 (kernels, training, analyses; TAP), ABRUPT_WEBGPU_SOFTWARE=0
#   bench.txt     npm run bench -- --device webgpu --sizes S,M,P --matmul 4096
#   bench.json    the same as JSON
#   tiles.txt     GFLOP/s per matmul register tile (tools/matmul-sweep.ts)
#   summary.txt   pass/fail counts, matmul TFLOP/s, ms/step per size, tiles
#
# Usage (device tool): command `bash tools/gpu-check.sh`, carry [".gpu-carry"].
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${OUT:-$repo/gpu-results}
carry=${ABRUPT_GPU_CARRY:-$repo/.gpu-carry}
work=${TMPDIR:-/tmp}/abrupt-gpu
mkdir -p "$out" "$work"
log() { echo "gpu-check: $*" | tee -a "$out/summary.txt"; }
: > "$out/summary.txt"

for f in node.xz bundle.tar.xz; do
  [ -f "$carry/$f" ] || { log "missing $carry/$f: run tools/gpu-pack.sh on a machine with Node and carry .gpu-carry"; exit 1; }
done

# unxz with xz if present, else Python's lzma
unxz_to() {
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" > "$2"
  else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; fi
}
t0=$(date +%s)
unxz_to "$carry/node.xz" "$work/node" && chmod +x "$work/node"
unxz_to "$carry/bundle.tar.xz" "$work/bundle.tar"
rm -rf "$work/app" && tar -xf "$work/bundle.tar" -C "$work" && rm -f "$work/bundle.tar"
node=$work/node
log "unpacked node $("$node" --version) and the project in $(( $(date +%s) - t0 )) s"

# Libraries the machine may lack: unpack (never install) the carried debs
libs=$work/libs
mkdir -p "$libs"
need_deb() { ls "$carry"/debs/"$1"_*.deb >/dev/null 2>&1 && dpkg-deb -x "$carry"/debs/"$1"_*.deb "$libs"; }
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then need_deb libvulkan1 && log "using the carried Vulkan loader"; fi
if ! ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1 '; then need_deb libgomp1; fi
if [ ! -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 ]; then need_deb libopenblas0-openmp; fi
export LD_LIBRARY_PATH=$libs/usr/lib/x86_64-linux-gnu:$libs/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# The NVIDIA Vulkan driver: use the system's ICD files, else the container's
icd_found=0
for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d; do ls "$d"/*.json >/dev/null 2>&1 && icd_found=1; done
if [ $icd_found = 0 ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
# the real GPU; ABRUPT_WEBGPU_SOFTWARE=1 is a dry run on lavapipe (this repo's .cache)
export ABRUPT_WEBGPU_SOFTWARE=${ABRUPT_WEBGPU_SOFTWARE:-0}
if [ "$ABRUPT_WEBGPU_SOFTWARE" = 1 ] && [ -d "$repo/.cache" ]; then ln -sfn "$repo/.cache" "$work/app/.cache"; fi
bench_args=${ABRUPT_GPU_CHECK_BENCH:---sizes S,M,P --steps 5 --matmul 4096}

{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  ls /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>/dev/null
  cd "$work/app" && timeout 60 "$node" -e '
    const { loadWebGpuKernels } = await import("./dist/src/kernels/webgpu.js");
    const k = await loadWebGpuKernels();
    console.log("adapter:", k.adapterName, k.software ? "(software)" : "");
    const L = k.device.limits;
    console.log("limits: maxStorageBufferBindingSize", L.maxStorageBufferBindingSize, "maxComputeWorkgroupStorageSize", L.maxComputeWorkgroupStorageSize);
    k.destroy();' --input-type=module 2>&1
} > "$out/env.txt" 2>&1
log "$(grep '^adapter:' "$out/env.txt" || echo 'no adapter (see env.txt)')"

# cpu reference for the training parity test if the native addon loads, else ref
cd "$work/app"
if "$node" -e 'await import("./dist/src/kernels/cpu.js").then(m => m.loadCpuKernels())' --input-type=module >/dev/null 2>&1; then
  export ABRUPT_WEBGPU_PARITY_WITH=cpu
else
  export ABRUPT_WEBGPU_PARITY_WITH=ref
fi
log "training parity against the $ABRUPT_WEBGPU_PARITY_WITH backend"

t0=$(date +%s)
timeout 150 "$node" --test --test-concurrency=1 --test-reporter=tap dist/test/webgpu.test.js dist/test/webgpu-analysis.test.js > "$out/parity.txt" 2>&1
rc=$?
log "parity tests: exit $rc in $(( $(date +%s) - t0 )) s; $(grep -E '^# (pass|fail)' "$out/parity.txt" | tr '\n' ' ')"
grep -E '^not ok' "$out/parity.txt" | head -5 | sed 's/^/gpu-check:   /' | tee -a "$out/summary.txt"

t0=$(date +%s)
# shellcheck disable=SC2086
timeout 200 "$node" dist/src/cli/main.js bench --device webgpu $bench_args --json "$out/bench.json" > "$out/bench.txt" 2>&1
brc=$?
log "bench: exit $brc in $(( $(date +%s) - t0 )) s"
grep -E '^(matmul|S |M |P )' "$out/bench.txt" | sed 's/^/gpu-check:   /' | tee -a "$out/summary.txt"

# matmul register tiles (4x4, 8x8, default) on 4096³ and the paper's linear layers
t0=$(date +%s)
timeout 60 "$node" dist/tools/matmul-sweep.js > "$out/tiles.txt" 2>&1
log "tile sweep: exit $? in $(( $(date +%s) - t0 )) s"
grep -E 'GFLOP/s' "$out/tiles.txt" | sed 's/^/gpu-check:   /' | tee -a "$out/summary.txt"
[ $rc = 0 ] && [ $brc = 0 ]
