#!/bin/sh
# Linker flags for OpenBLAS, used by binding.gyp. Prefers Debian's OpenMP
# build (package libopenblas0-openmp), linked by path with an rpath so that the
# system-wide libopenblas.so.0 alternative (pthread by default) does not
# matter. The OpenMP build shares our libgomp thread pool; the pthread build
# keeps its own threads spinning next to ours (measured on 2 cores, one BERT
# layer forward+backward at B=128 T=49 C=128: 74-76 ms vs 104-125 ms).
triplet=$(cc -print-multiarch 2>/dev/null)
dir=/usr/lib/${triplet:-x86_64-linux-gnu}/openblas-openmp
if [ -e "$dir/libopenblas.so.0" ]; then
  echo "-L$dir -Wl,-rpath,$dir -l:libopenblas.so.0"
else
  echo "-lopenblas"
fi
