// AVX2+FMA GEMM: this file alone is compiled with -mavx2 -mfma; gemm.cc calls it only when the CPU has both.
#define GEMM_NAME gemm_own_avx2
#include "gemm_impl.inc"
