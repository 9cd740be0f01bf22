// Portable 3D convolutions as im2col + GEMM, tiled over output rows so the column buffer stays ~32 MiB.
// Rows are output voxels (od,oh,ow) of one batch item; columns are (kd,kh,kw,c), matching the tfjs filter
// layout [KD,KH,KW,C,O] read as a [KD*KH*KW*C, O] matrix.
#include <algorithm>
#include <cstring>
#include <vector>
#include "kernels.h"

namespace ssl3d {
namespace {

int64_t tile_rows(const ConvGeom& g) {
  const int64_t cols = g.KD * g.KH * g.KW * g.C;
  const int64_t rows = (int64_t{8} << 20) / std::max<int64_t>(cols, 1);
  return std::max<int64_t>(64, std::min(rows, g.OD * g.OH * g.OW));
}

// col[r, (kd,kh,kw,c)] for output rows [r0, r0+nr) of batch item n.
void im2col(const ConvGeom& g, const float* xn, int64_t r0, int64_t nr, float* col) {
  const int64_t cols = g.KD * g.KH * g.KW * g.C;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < nr; ++r) {
    const int64_t o = r0 + r;
    const int64_t ow = o % g.OW, oh = (o / g.OW) % g.OH, od = o / (g.OW * g.OH);
    float* dst = col + r * cols;
    for (int64_t kd = 0; kd < g.KD; ++kd) {
      const int64_t id = od * g.sd - g.pf + kd * g.dd;
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const int64_t iw = ow * g.sw - g.pl + kw * g.dw;
          if (id < 0 || id >= g.D || ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) {
            std::memset(dst, 0, g.C * sizeof(float));
          } else {
            std::memcpy(dst, xn + ((id * g.H + ih) * g.W + iw) * g.C, g.C * sizeof(float));
          }
          dst += g.C;
        }
      }
    }
  }
}

// Scatter-adds col back into dxn; threads own disjoint channel ranges so no two write the same element.
void col2im(const ConvGeom& g, const float* col, int64_t r0, int64_t nr, float* dxn) {
  const int64_t cols = g.KD * g.KH * g.KW * g.C;
  const int64_t cchunk = 8, nchunks = (g.C + cchunk - 1) / cchunk;
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < nchunks; ++ch) {
    const int64_t c0 = ch * cchunk, c1 = std::min(g.C, c0 + cchunk);
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t o = r0 + r;
      const int64_t ow = o % g.OW, oh = (o / g.OW) % g.OH, od = o / (g.OW * g.OH);
      const float* src = col + r * cols;
      for (int64_t kd = 0; kd < g.KD; ++kd) {
        const int64_t id = od * g.sd - g.pf + kd * g.dd;
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
          for (int64_t kw = 0; kw < g.KW; ++kw, src += g.C) {
            const int64_t iw = ow * g.sw - g.pl + kw * g.dw;
            if (id < 0 || id >= g.D || ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
            float* dst = dxn + ((id * g.H + ih) * g.W + iw) * g.C;
            for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
          }
        }
      }
    }
  }
}

bool is_pointwise(const ConvGeom& g) {
  return g.KD == 1 && g.KH == 1 && g.KW == 1 && g.sd == 1 && g.sh == 1 && g.sw == 1 && g.pf == 0 && g.pt == 0 &&
         g.pl == 0 && g.OD == g.D && g.OH == g.H && g.OW == g.W;
}
}  // namespace

void conv3d_fwd_im2col(const ConvGeom& g, const float* x, const float* w, float* y) {
  const int64_t cols = g.KD * g.KH * g.KW * g.C, P = g.OD * g.OH * g.OW;
  if (is_pointwise(g)) return gemm(false, false, g.N * P, g.O, g.C, x, g.C, w, g.O, y, g.O, false);
  const int64_t T = tile_rows(g);
  std::vector<float> col(static_cast<size_t>(T * cols));
  for (int64_t n = 0; n < g.N; ++n) {
    const float* xn = x + n * g.D * g.H * g.W * g.C;
    for (int64_t r0 = 0; r0 < P; r0 += T) {
      const int64_t nr = std::min(T, P - r0);
      im2col(g, xn, r0, nr, col.data());
      gemm(false, false, nr, g.O, cols, col.data(), cols, w, g.O, y + (n * P + r0) * g.O, g.O, false);
    }
  }
}

void conv3d_bwd_input_im2col(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  const int64_t cols = g.KD * g.KH * g.KW * g.C, P = g.OD * g.OH * g.OW;
  if (is_pointwise(g)) return gemm(false, true, g.N * P, g.C, g.O, dy, g.O, w, g.O, dx, g.C, false);
  std::memset(dx, 0, sizeof(float) * g.N * g.D * g.H * g.W * g.C);
  const int64_t T = tile_rows(g);
  std::vector<float> col(static_cast<size_t>(T * cols));
  for (int64_t n = 0; n < g.N; ++n) {
    float* dxn = dx + n * g.D * g.H * g.W * g.C;
    for (int64_t r0 = 0; r0 < P; r0 += T) {
      const int64_t nr = std::min(T, P - r0);
      gemm(false, true, nr, cols, g.O, dy + (n * P + r0) * g.O, g.O, w, g.O, col.data(), cols, false);
      col2im(g, col.data(), r0, nr, dxn);
    }
  }
}

void conv3d_bwd_filter_im2col(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  const int64_t cols = g.KD * g.KH * g.KW * g.C, P = g.OD * g.OH * g.OW;
  if (is_pointwise(g)) return gemm(true, false, g.C, g.O, g.N * P, x, g.C, dy, g.O, dw, g.O, false);
  const int64_t T = tile_rows(g);
  std::vector<float> col(static_cast<size_t>(T * cols));
  bool first = true;
  for (int64_t n = 0; n < g.N; ++n) {
    const float* xn = x + n * g.D * g.H * g.W * g.C;
    for (int64_t r0 = 0; r0 < P; r0 += T) {
      const int64_t nr = std::min(T, P - r0);
      im2col(g, xn, r0, nr, col.data());
      gemm(true, false, cols, g.O, nr, col.data(), cols, dy + (n * P + r0) * g.O, g.O, dw, g.O, !first);
      first = false;
    }
  }
  if (first) std::memset(dw, 0, sizeof(float) * cols * g.O);
}

}  // namespace ssl3d
