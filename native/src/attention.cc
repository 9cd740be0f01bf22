// Fused softmax attention (flash-attention style, exact): per (batch·head) slice and block of query rows,
// S = scale·Q·Kᵀ → row softmax → O = P·V, keeping only O and the per-row log-sum-exp; the backward pass recomputes
// P from Q, K and the log-sum-exp, so no [T, S] probability tensor outlives one block. The products run through
// gemm() (oneDNN sgemm / own GEMM), serial inside the parallel loop.
#include <algorithm>
#include <cmath>
#include <vector>
#include "kernels.h"

namespace ssl3d {

static constexpr int64_t kQBlock = 64;

void attention_fwd(const float* q, const float* k, const float* v, int64_t BH, int64_t T, int64_t S, int64_t D,
                   float scale, float* o, float* lse) {
  const int64_t nqb = (T + kQBlock - 1) / kQBlock;
#pragma omp parallel
  {
    std::vector<float> s(static_cast<size_t>(kQBlock * S));
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t bh = 0; bh < BH; ++bh) {
      for (int64_t qb = 0; qb < nqb; ++qb) {
        const int64_t r0 = qb * kQBlock, rows = std::min(kQBlock, T - r0);
        const float* Q = q + (bh * T + r0) * D;
        const float* K = k + bh * S * D;
        const float* V = v + bh * S * D;
        gemm(false, true, rows, S, D, Q, D, K, D, s.data(), S, false);
        for (int64_t r = 0; r < rows; ++r) {
          float* sr = s.data() + r * S;
          float m = -INFINITY;
          for (int64_t j = 0; j < S; ++j) { sr[j] *= scale; m = std::max(m, sr[j]); }
          double l = 0;
          for (int64_t j = 0; j < S; ++j) { sr[j] = std::exp(sr[j] - m); l += sr[j]; }
          const float inv = static_cast<float>(1.0 / l);
          for (int64_t j = 0; j < S; ++j) sr[j] *= inv;
          lse[bh * T + r0 + r] = m + static_cast<float>(std::log(l));
        }
        gemm(false, false, rows, D, S, s.data(), S, V, D, o + (bh * T + r0) * D, D, false);
      }
    }
  }
}

void attention_bwd(const float* q, const float* k, const float* v, const float* o, const float* lse, const float* dout,
                   int64_t BH, int64_t T, int64_t S, int64_t D, float scale, float* dq, float* dk, float* dv) {
  const int64_t nqb = (T + kQBlock - 1) / kQBlock;
  // dK and dV sum over all query blocks of a slice: one thread per (batch·head) slice
#pragma omp parallel
  {
    std::vector<float> p(static_cast<size_t>(kQBlock * S)), dp(static_cast<size_t>(kQBlock * S));
    std::vector<float> drow(static_cast<size_t>(kQBlock));
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < BH; ++bh) {
      const float* K = k + bh * S * D;
      const float* V = v + bh * S * D;
      float* dK = dk + bh * S * D;
      float* dV = dv + bh * S * D;
      std::fill(dK, dK + S * D, 0.f);
      std::fill(dV, dV + S * D, 0.f);
      for (int64_t qb = 0; qb < nqb; ++qb) {
        const int64_t r0 = qb * kQBlock, rows = std::min(kQBlock, T - r0);
        const float* Q = q + (bh * T + r0) * D;
        const float* O = o + (bh * T + r0) * D;
        const float* dO = dout + (bh * T + r0) * D;
        const float* L = lse + bh * T + r0;
        // P = exp(scale·Q·Kᵀ − lse)
        gemm(false, true, rows, S, D, Q, D, K, D, p.data(), S, false);
        for (int64_t r = 0; r < rows; ++r) {
          float* pr = p.data() + r * S;
          for (int64_t j = 0; j < S; ++j) pr[j] = std::exp(pr[j] * scale - L[r]);
          double acc = 0;
          for (int64_t d = 0; d < D; ++d) acc += static_cast<double>(dO[r * D + d]) * O[r * D + d];
          drow[r] = static_cast<float>(acc);
        }
        gemm(true, false, S, D, rows, p.data(), S, dO, D, dV, D, true);      // dV += Pᵀ·dO
        gemm(false, true, rows, S, D, dO, D, V, D, dp.data(), S, false);     // dP = dO·Vᵀ
        for (int64_t r = 0; r < rows; ++r) {
          float* pr = p.data() + r * S;
          const float* dpr = dp.data() + r * S;
          for (int64_t j = 0; j < S; ++j) pr[j] = pr[j] * (dpr[j] - drow[r]) * scale;  // dS (scaled)
        }
        gemm(false, false, rows, D, S, p.data(), S, K, D, dq + (bh * T + r0) * D, D, false);  // dQ = dS·K
        gemm(true, false, S, D, rows, p.data(), S, Q, D, dK, D, true);                        // dK += dSᵀ·Q
      }
    }
  }
}

}  // namespace ssl3d
