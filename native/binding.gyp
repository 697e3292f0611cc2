{
  "targets": [
    {
      "target_name": "abrupt",
      "sources": ["abrupt.c"],
      "cflags_c": ["-std=gnu11", "-O3", "-march=native", "-fopenmp", "-fno-math-errno",
                   "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "ldflags": ["-fopenmp"],
      "libraries": ["<!@(sh blas-libs.sh)", "-lmvec", "-lm"]
    }
  ]
}
