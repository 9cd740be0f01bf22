// GEMM dispatch: the linked BLAS (OpenBLAS) when present, else the own blocked GEMM with runtime ISA dispatch.
#include <cstdlib>
#include "kernels.h"
#ifdef SSL3D_HAVE_CBLAS
#include <cblas.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace ssl3d {

Options& options() {
  static Options o = [] {
#ifdef SSL3D_HAVE_CBLAS
    openblas_set_num_threads(1);  // never let OpenBLAS start a second spinning thread pool
#endif
    return Options{};
  }();
  return o;
}

bool have_blas() {
#ifdef SSL3D_HAVE_CBLAS
  return true;
#else
  return false;
#endif
}

static bool cpu_has_avx2() {
#if defined(SSL3D_HAVE_AVX2_TU) && (defined(__x86_64__) || defined(__i386__))
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

const char* own_gemm_isa() { return cpu_has_avx2() ? "avx2-fma" : "generic"; }

void gemm_own(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
              int64_t ldb, float* C, int64_t ldc, bool accumulate) {
#ifdef SSL3D_HAVE_AVX2_TU
  if (cpu_has_avx2()) return gemm_own_avx2(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
#endif
  gemm_own_generic(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
          float* C, int64_t ldc, bool accumulate) {
#ifdef SSL3D_HAVE_CBLAS
  if (options().use_blas && M > 0 && N > 0 && K > 0) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
                static_cast<int>(N), static_cast<int>(K), 1.0f, A, static_cast<int>(lda), B, static_cast<int>(ldb),
                accumulate ? 1.0f : 0.0f, C, static_cast<int>(ldc));
    return;
  }
#endif
  gemm_own(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void set_num_threads(int n) {
  if (n < 1) return;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

}  // namespace ssl3d
