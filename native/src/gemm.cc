// GEMM dispatch: the linked BLAS (OpenBLAS) when present, else the own blocked GEMM with runtime ISA dispatch.
#include <cstdlib>
#include <vector>
#include "kernels.h"
#ifdef SSL3D_HAVE_CBLAS
#include <cblas.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef SSL3D_HAVE_DNNL
#include <dnnl.h>
#endif
#include <cstring>

namespace ssl3d {

static bool omp_in_parallel_safe() {
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return true;  // no threads: nothing to split across
#endif
}

Options& options() {
  static Options o = [] {
#ifdef SSL3D_HAVE_CBLAS
    openblas_set_num_threads(1);  // never let OpenBLAS start a second spinning thread pool
#endif
    Options o{};
    const char* g = std::getenv("SSL3D_NATIVE_GEMM");
    if (g != nullptr && std::strcmp(g, "own") == 0) o.gemm_dnnl = false;
    return o;
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

// Vector cases (ones-vector reductions such as colSum = ones[1,S] x X[S,C]): one pass over the matrix instead of
// packing it into GEMM panels (and, for M = 1, computing 5 padding rows of a 6-row micro-kernel).
static bool gemv(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                 int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  const bool par = M * N * K >= (int64_t{1} << 18);
  if (M == 1 && !tb && N <= 4096) {
    // c[j] = sum_k a(k) * B[k, j]; a(k) = ta ? A[k*lda] : A[k]
    std::vector<double> total(static_cast<size_t>(N), 0.0);
#pragma omp parallel if (par)
    {
      std::vector<float> acc(static_cast<size_t>(N), 0.f);
      std::vector<double> dacc(static_cast<size_t>(N), 0.0);
      int64_t rows = 0;
#pragma omp for schedule(static) nowait
      for (int64_t k = 0; k < K; ++k) {
        const float av = ta ? A[k * lda] : A[k];
        const float* br = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) acc[j] += av * br[j];
        if (++rows == 256) {
          for (int64_t j = 0; j < N; ++j) { dacc[j] += acc[j]; acc[j] = 0.f; }
          rows = 0;
        }
      }
#pragma omp critical
      for (int64_t j = 0; j < N; ++j) total[j] += dacc[j] + acc[j];
    }
    for (int64_t j = 0; j < N; ++j) C[j] = static_cast<float>((accumulate ? C[j] : 0.0) + total[j]);
    return true;
  }
  if (N == 1 && !ta) {
    // c[i] = sum_k A[i, k] * b(k); b(k) = tb ? B[k] : B[k*ldb]
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < M; ++i) {
      const float* ar = A + i * lda;
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += ar[k] * (tb ? B[k] : B[k * ldb]);
      C[i * ldc] = static_cast<float>((accumulate ? C[i * ldc] : 0.0) + s);
    }
    return true;
  }
  return false;
}

// Small output, long reduction (weight gradients such as [8, 65536] x [65536, 8]): split K across threads, each
// running a serial GEMM into its own partial C, then add the partials. The blocked GEMM would otherwise open two
// parallel regions per 256-long K block (512 regions for this shape) with too little work in each.
static bool gemm_split_k(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                         const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  const int nt = num_threads();
  if (nt < 2 || M * N > 64 * 64 || K < 4096 || omp_in_parallel_safe()) return false;
  const int64_t parts = nt;
  std::vector<float> partial(static_cast<size_t>(parts * M * N));
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < parts; ++t) {
    const int64_t k0 = K * t / parts, k1 = K * (t + 1) / parts;
    const float* At = ta ? A + k0 * lda : A + k0;
    const float* Bt = tb ? B + k0 : B + k0 * ldb;
    gemm_own(ta, tb, M, N, k1 - k0, At, lda, Bt, ldb, partial.data() + t * M * N, N, false);
  }
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float s = accumulate ? C[i * ldc + j] : 0.f;
      for (int64_t t = 0; t < parts; ++t) s += partial[(t * M + i) * N + j];
      C[i * ldc + j] = s;
    }
  return true;
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
          float* C, int64_t ldc, bool accumulate) {
  if ((M == 1 || N == 1) && K > 0 && gemv(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate)) return;
  if (M > 0 && N > 0 && gemm_split_k(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate)) return;
#ifdef SSL3D_HAVE_CBLAS
  if (options().use_blas && M > 0 && N > 0 && K > 0) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
                static_cast<int>(N), static_cast<int>(K), 1.0f, A, static_cast<int>(lda), B, static_cast<int>(ldb),
                accumulate ? 1.0f : 0.0f, C, static_cast<int>(ldc));
    return;
  }
#endif
#ifdef SSL3D_HAVE_DNNL
  if (options().use_dnnl && options().gemm_dnnl && M > 0 && N > 0 && K > 0) {
    // row-major like ours; runs on the same OpenMP pool (one thread when called inside a parallel region)
    if (dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C, ldc) ==
        dnnl_success)
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
