// Fused instance norm over the spatial axes of channels-last data x[B, S, C] (S = D*H*W), affine per channel,
// optionally followed by LeakyReLU(alpha) (alpha = 1: none); the backward recomputes the activation's input.
// Forward: one pass for per-(b,c) sum and sum of squares (double), one pass to normalise; saves only mean and
// 1/std (B*C floats) besides x, which autodiff keeps anyway. Backward: one pass for the two per-(b,c) sums, one for
// dx. tfjs composes the same from ~10 kernels, each a full pass, and keeps several full-size intermediates.
#include <algorithm>
#include <cmath>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "kernels.h"

namespace ssl3d {
namespace {
constexpr int64_t kParallelMin = int64_t{1} << 18;

// acc1[c] += sum_s f1(s,c), acc2[c] += sum_s f2(s,c) over s in [0,S), split across threads; results in double.
template <typename F>
void channel_sums(int64_t S, int64_t C, F&& f, std::vector<double>& out1, std::vector<double>& out2) {
  out1.assign(C, 0.0);
  out2.assign(C, 0.0);
  const bool par = S * C >= kParallelMin;
#pragma omp parallel if (par)
  {
    std::vector<double> a1(C, 0.0), a2(C, 0.0);
    std::vector<float> f1(C, 0.f), f2(C, 0.f);
    int64_t rows = 0;
#pragma omp for schedule(static) nowait
    for (int64_t s = 0; s < S; ++s) {
      f(s, f1.data(), f2.data());
      if (++rows == 64) {  // flush float partials to double every 64 rows
        for (int64_t c = 0; c < C; ++c) { a1[c] += f1[c]; a2[c] += f2[c]; f1[c] = 0.f; f2[c] = 0.f; }
        rows = 0;
      }
    }
    for (int64_t c = 0; c < C; ++c) { a1[c] += f1[c]; a2[c] += f2[c]; }
#pragma omp critical
    for (int64_t c = 0; c < C; ++c) { out1[c] += a1[c]; out2[c] += a2[c]; }
  }
}
}  // namespace

void instance_norm_fwd(const float* x, int64_t B, int64_t S, int64_t C, const float* gamma, const float* beta,
                       float eps, float alpha, float* y, float* mean, float* rstd) {
  std::vector<double> s1, s2;
  std::vector<float> scale(C), shift(C);
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = x + b * S * C;
    float* yb = y + b * S * C;
    channel_sums(S, C, [&](int64_t s, float* f1, float* f2) {
      const float* r = xb + s * C;
      for (int64_t c = 0; c < C; ++c) { f1[c] += r[c]; f2[c] += r[c] * r[c]; }
    }, s1, s2);
    for (int64_t c = 0; c < C; ++c) {
      const double m = s1[c] / S;
      const double var = std::max(0.0, s2[c] / S - m * m);
      const float rs = static_cast<float>(1.0 / std::sqrt(var + eps));
      mean[b * C + c] = static_cast<float>(m);
      rstd[b * C + c] = rs;
      scale[c] = rs * gamma[c];
      shift[c] = beta[c] - static_cast<float>(m) * scale[c];
    }
#pragma omp parallel for schedule(static) if (S * C >= kParallelMin)
    for (int64_t s = 0; s < S; ++s) {
      const float* r = xb + s * C;
      float* o = yb + s * C;
      if (alpha == 1.f) {
        for (int64_t c = 0; c < C; ++c) o[c] = r[c] * scale[c] + shift[c];
      } else {
        for (int64_t c = 0; c < C; ++c) {
          const float z = r[c] * scale[c] + shift[c];
          o[c] = z < 0.f ? alpha * z : z;
        }
      }
    }
  }
}

void instance_norm_bwd(const float* x, const float* dy, int64_t B, int64_t S, int64_t C, const float* gamma,
                       const float* beta, const float* mean, const float* rstd, float alpha, float* dx, float* dgamma,
                       float* dbeta) {
  std::vector<double> sdy, sdyx, dg(C, 0.0), db(C, 0.0);
  std::vector<float> a(C), bcoef(C), cc(C), scale(C), shift(C);
  const bool act = alpha != 1.f;
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = x + b * S * C;
    const float* gb = dy + b * S * C;
    float* ob = dx + b * S * C;
    const float* m = mean + b * C;
    const float* r = rstd + b * C;
    // The activation's input z = x*scale + shift is recomputed, not stored: dz = dy * (z < 0 ? alpha : 1).
    for (int64_t c = 0; c < C; ++c) { scale[c] = r[c] * gamma[c]; shift[c] = beta[c] - m[c] * scale[c]; }
    const auto dz = [&](const float* xr, const float* gr, int64_t c) {
      return act && xr[c] * scale[c] + shift[c] < 0.f ? alpha * gr[c] : gr[c];
    };
    // sums of dz and dz * xhat per channel
    channel_sums(S, C, [&](int64_t s, float* f1, float* f2) {
      const float* xr = xb + s * C;
      const float* gr = gb + s * C;
      for (int64_t c = 0; c < C; ++c) {
        const float d = dz(xr, gr, c);
        f1[c] += d;
        f2[c] += d * (xr[c] - m[c]) * r[c];
      }
    }, sdy, sdyx);
    // dx = rstd*gamma * (dy - mean(dy) - xhat * mean(dy*xhat)) = a*dy + bcoef*x + cc
    for (int64_t c = 0; c < C; ++c) {
      dg[c] += sdyx[c];
      db[c] += sdy[c];
      const double k = static_cast<double>(r[c]) * gamma[c];
      const double mdy = sdy[c] / S, mdyx = sdyx[c] / S;
      a[c] = static_cast<float>(k);
      bcoef[c] = static_cast<float>(-k * mdyx * r[c]);
      cc[c] = static_cast<float>(-k * mdy + k * mdyx * r[c] * m[c]);
    }
#pragma omp parallel for schedule(static) if (S * C >= kParallelMin)
    for (int64_t s = 0; s < S; ++s) {
      const float* xr = xb + s * C;
      const float* gr = gb + s * C;
      float* o = ob + s * C;
      for (int64_t c = 0; c < C; ++c) o[c] = a[c] * dz(xr, gr, c) + bcoef[c] * xr[c] + cc[c];
    }
  }
  for (int64_t c = 0; c < C; ++c) { dgamma[c] = static_cast<float>(dg[c]); dbeta[c] = static_cast<float>(db[c]); }
}

}  // namespace ssl3d

namespace ssl3d {
// Layer norm over the innermost axis of x[R, C] with per-channel affine; mean/rstd are [R].
void layer_norm_fwd(const float* x, int64_t R, int64_t C, const float* gamma, const float* beta, float eps, float* y,
                    float* mean, float* rstd) {
#pragma omp parallel for schedule(static) if (R * C >= kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x + r * C;
    double s1 = 0, s2 = 0;
    for (int64_t c = 0; c < C; ++c) { s1 += xr[c]; s2 += static_cast<double>(xr[c]) * xr[c]; }
    const double m = s1 / C, var = std::max(0.0, s2 / C - m * m);
    const float mf = static_cast<float>(m), rs = static_cast<float>(1.0 / std::sqrt(var + eps));
    mean[r] = mf;
    rstd[r] = rs;
    float* yr = y + r * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - mf) * rs * gamma[c] + beta[c];
  }
}

void layer_norm_bwd(const float* x, const float* dy, int64_t R, int64_t C, const float* gamma, const float* mean,
                    const float* rstd, float* dx, float* dgamma, float* dbeta) {
  std::vector<double> dg(C, 0.0), db(C, 0.0);
#pragma omp parallel if (R * C >= kParallelMin)
  {
    std::vector<double> tg(C, 0.0), tb(C, 0.0);
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < R; ++r) {
      const float* xr = x + r * C;
      const float* gr = dy + r * C;
      const float m = mean[r], rs = rstd[r];
      double sg = 0, sgx = 0;
      for (int64_t c = 0; c < C; ++c) {
        const float xh = (xr[c] - m) * rs, g = gr[c] * gamma[c];
        sg += g;
        sgx += g * xh;
        tg[c] += gr[c] * xh;
        tb[c] += gr[c];
      }
      const float mg = static_cast<float>(sg / C), mgx = static_cast<float>(sgx / C);
      float* o = dx + r * C;
      for (int64_t c = 0; c < C; ++c) {
        const float xh = (xr[c] - m) * rs;
        o[c] = rs * (gr[c] * gamma[c] - mg - xh * mgx);
      }
    }
#pragma omp critical
    for (int64_t c = 0; c < C; ++c) { dg[c] += tg[c]; db[c] += tb[c]; }
  }
  for (int64_t c = 0; c < C; ++c) { dgamma[c] = static_cast<float>(dg[c]); dbeta[c] = static_cast<float>(db[c]); }
}
}  // namespace ssl3d

namespace ssl3d {
// Sparse instance norm (SparK): the instance norm above with per-(b,c) statistics over the visible voxels only
// (mask[b, s] != 0; count clamped to 1), output 0 at masked voxels, optional LeakyReLU. Masked input values are
// never read into a sum and get dx = 0, so the caller need not zero them first.
void sparse_instance_norm_fwd(const float* x, const float* mask, int64_t B, int64_t S, int64_t C, const float* gamma,
                              const float* beta, float eps, float alpha, float* y, float* mean, float* rstd) {
  std::vector<double> s1, s2;
  std::vector<float> scale(C), shift(C);
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = x + b * S * C;
    const float* mb = mask + b * S;
    float* yb = y + b * S * C;
    int64_t n = 0;
    for (int64_t s = 0; s < S; ++s) n += mb[s] != 0.f;
    const double cnt = static_cast<double>(std::max<int64_t>(n, 1));
    channel_sums(S, C, [&](int64_t s, float* f1, float* f2) {
      if (mb[s] == 0.f) return;
      const float* r = xb + s * C;
      for (int64_t c = 0; c < C; ++c) { f1[c] += r[c]; f2[c] += r[c] * r[c]; }
    }, s1, s2);
    for (int64_t c = 0; c < C; ++c) {
      const double m = s1[c] / cnt;
      const double var = std::max(0.0, s2[c] / cnt - m * m);
      const float rs = static_cast<float>(1.0 / std::sqrt(var + eps));
      mean[b * C + c] = static_cast<float>(m);
      rstd[b * C + c] = rs;
      scale[c] = rs * gamma[c];
      shift[c] = beta[c] - static_cast<float>(m) * scale[c];
    }
#pragma omp parallel for schedule(static) if (S * C >= kParallelMin)
    for (int64_t s = 0; s < S; ++s) {
      const float* r = xb + s * C;
      float* o = yb + s * C;
      if (mb[s] == 0.f) {
        std::fill(o, o + C, 0.f);
      } else if (alpha == 1.f) {
        for (int64_t c = 0; c < C; ++c) o[c] = r[c] * scale[c] + shift[c];
      } else {
        for (int64_t c = 0; c < C; ++c) {
          const float z = r[c] * scale[c] + shift[c];
          o[c] = z < 0.f ? alpha * z : z;
        }
      }
    }
  }
}

void sparse_instance_norm_bwd(const float* x, const float* dy, const float* mask, int64_t B, int64_t S, int64_t C,
                              const float* gamma, const float* beta, const float* mean, const float* rstd, float alpha,
                              float* dx, float* dgamma, float* dbeta) {
  std::vector<double> sdy, sdyx, dg(C, 0.0), db(C, 0.0);
  std::vector<float> a(C), bcoef(C), cc(C), scale(C), shift(C);
  const bool act = alpha != 1.f;
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = x + b * S * C;
    const float* gb = dy + b * S * C;
    const float* mb = mask + b * S;
    float* ob = dx + b * S * C;
    const float* m = mean + b * C;
    const float* r = rstd + b * C;
    int64_t n = 0;
    for (int64_t s = 0; s < S; ++s) n += mb[s] != 0.f;
    const double cnt = static_cast<double>(std::max<int64_t>(n, 1));
    for (int64_t c = 0; c < C; ++c) { scale[c] = r[c] * gamma[c]; shift[c] = beta[c] - m[c] * scale[c]; }
    const auto dz = [&](const float* xr, const float* gr, int64_t c) {
      return act && xr[c] * scale[c] + shift[c] < 0.f ? alpha * gr[c] : gr[c];
    };
    channel_sums(S, C, [&](int64_t s, float* f1, float* f2) {
      if (mb[s] == 0.f) return;
      const float* xr = xb + s * C;
      const float* gr = gb + s * C;
      for (int64_t c = 0; c < C; ++c) {
        const float d = dz(xr, gr, c);
        f1[c] += d;
        f2[c] += d * (xr[c] - m[c]) * r[c];
      }
    }, sdy, sdyx);
    for (int64_t c = 0; c < C; ++c) {
      dg[c] += sdyx[c];
      db[c] += sdy[c];
      const double k = static_cast<double>(r[c]) * gamma[c];
      const double mdy = sdy[c] / cnt, mdyx = sdyx[c] / cnt;
      a[c] = static_cast<float>(k);
      bcoef[c] = static_cast<float>(-k * mdyx * r[c]);
      cc[c] = static_cast<float>(-k * mdy + k * mdyx * r[c] * m[c]);
    }
#pragma omp parallel for schedule(static) if (S * C >= kParallelMin)
    for (int64_t s = 0; s < S; ++s) {
      const float* xr = xb + s * C;
      const float* gr = gb + s * C;
      float* o = ob + s * C;
      if (mb[s] == 0.f) {
        std::fill(o, o + C, 0.f);
      } else {
        for (int64_t c = 0; c < C; ++c) o[c] = a[c] * dz(xr, gr, c) + bcoef[c] * xr[c] + cc[c];
      }
    }
  }
  for (int64_t c = 0; c < C; ++c) { dgamma[c] = static_cast<float>(dg[c]); dbeta[c] = static_cast<float>(db[c]); }
}
}  // namespace ssl3d
