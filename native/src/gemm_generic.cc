// Portable GEMM: baseline ISA of the target.
#define GEMM_NAME gemm_own_generic
#include "gemm_impl.inc"
