// Elementwise and data-movement kernels that dominate a tfjs training step once convolutions are fast:
// broadcasting binary ops (instance-norm and bias arithmetic over 10^6..10^8 elements), reductions over a
// contiguous run of axes (Sum/Mean over D,H,W of NDHWC, i.e. not the innermost axis), and concat/split along an axis.
#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <vector>
#include "kernels.h"

namespace ssl3d {
namespace {
// Memory-bound ops go parallel only above ~1M elements: below that a parallel region costs more than it saves, and
// on an oversubscribed machine a region waits for a descheduled thread for a whole time slice (~10 ms measured).
constexpr int64_t kParallelMin = int64_t{1} << 20;

template <int OP>
inline float apply(float a, float b) {
  if constexpr (OP == binary_op::kAdd) return a + b;
  if constexpr (OP == binary_op::kSub) return a - b;
  if constexpr (OP == binary_op::kMultiply) return a * b;
  if constexpr (OP == binary_op::kRealDiv) return a / b;
  if constexpr (OP == binary_op::kSquaredDifference) return (a - b) * (a - b);
  return 0.f;
}

template <int OP>
void inner(const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = apply<OP>(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const float bv = *b;
    for (int64_t i = 0; i < n; ++i) o[i] = apply<OP>(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const float av = *a;
    for (int64_t i = 0; i < n; ++i) o[i] = apply<OP>(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i] = apply<OP>(a[i * sa], b[i * sb]);
  }
}

template <int OP>
inline uint8_t cmp(float a, float b) {
  if constexpr (OP == compare_op::kGreater) return a > b;
  if constexpr (OP == compare_op::kGreaterEqual) return a >= b;
  if constexpr (OP == compare_op::kLess) return a < b;
  if constexpr (OP == compare_op::kLessEqual) return a <= b;
  if constexpr (OP == compare_op::kEqual) return a == b;
  return 0;
}

template <int OP>
void inner_cmp(const float* a, int64_t sa, const float* b, int64_t sb, uint8_t* o, int64_t n) {
  if (sb == 0) {
    const float bv = *b;
    for (int64_t i = 0; i < n; ++i) o[i] = cmp<OP>(a[i * sa], bv);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i] = cmp<OP>(a[i * sa], b[i * sb]);
  }
}

template <int OP>
void run_cmp(const BinaryPlan& p, const float* a, const float* b, uint8_t* o) {
  const int r = static_cast<int>(p.dims.size());
  const int64_t n_inner = p.dims[r - 1];
  int64_t outer = 1;
  for (int d = 0; d < r - 1; ++d) outer *= p.dims[d];
#pragma omp parallel for schedule(static) if (outer * n_inner >= kParallelMin && outer > 1)
  for (int64_t t = 0; t < outer; ++t) {
    int64_t rem = t, oa = 0, ob = 0;
    for (int d = r - 2; d >= 0; --d) {
      const int64_t idx = rem % p.dims[d];
      rem /= p.dims[d];
      oa += idx * p.sa[d];
      ob += idx * p.sb[d];
    }
    inner_cmp<OP>(a + oa, p.sa[r - 1], b + ob, p.sb[r - 1], o + t * n_inner, n_inner);
  }
}

template <int OP>
void run(const BinaryPlan& p, const float* a, const float* b, float* o) {
  const int r = static_cast<int>(p.dims.size());
  const int64_t n_inner = p.dims[r - 1], sa_in = p.sa[r - 1], sb_in = p.sb[r - 1];
  int64_t outer = 1;
  for (int d = 0; d < r - 1; ++d) outer *= p.dims[d];
  const bool par = outer * n_inner >= kParallelMin && outer > 1;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < outer; ++t) {
    int64_t rem = t, oa = 0, ob = 0;
    for (int d = r - 2; d >= 0; --d) {
      const int64_t idx = rem % p.dims[d];
      rem /= p.dims[d];
      oa += idx * p.sa[d];
      ob += idx * p.sb[d];
    }
    inner<OP>(a + oa, sa_in, b + ob, sb_in, o + t * n_inner, n_inner);
  }
}
}  // namespace

// Output dims and element strides of a and b (0 on broadcast axes), with mergeable adjacent axes collapsed.
BinaryPlan plan_binary(const std::vector<int64_t>& ashape, const std::vector<int64_t>& bshape) {
  const size_t r = std::max(ashape.size(), bshape.size());
  std::vector<int64_t> ad(r, 1), bd(r, 1), od(r, 1);
  for (size_t i = 0; i < ashape.size(); ++i) ad[r - ashape.size() + i] = ashape[i];
  for (size_t i = 0; i < bshape.size(); ++i) bd[r - bshape.size() + i] = bshape[i];
  std::vector<int64_t> as(r), bs(r);
  int64_t sa = 1, sb = 1;
  for (size_t k = r; k-- > 0;) {
    if (ad[k] != bd[k] && ad[k] != 1 && bd[k] != 1) throw std::invalid_argument("shapes do not broadcast");
    od[k] = ad[k] == 1 ? bd[k] : ad[k];
    as[k] = ad[k] == 1 ? 0 : sa;
    bs[k] = bd[k] == 1 ? 0 : sb;
    sa *= ad[k];
    sb *= bd[k];
  }
  BinaryPlan p;
  for (size_t k = 0; k < r; ++k) {
    if (od[k] == 1) continue;
    if (!p.dims.empty()) {
      const size_t j = p.dims.size() - 1;
      // axis j (outer) and k merge when walking k then j is one linear walk for both operands.
      if (p.sa[j] == as[k] * od[k] && p.sb[j] == bs[k] * od[k]) {
        p.dims[j] *= od[k];
        p.sa[j] = as[k];
        p.sb[j] = bs[k];
        continue;
      }
    }
    p.dims.push_back(od[k]);
    p.sa.push_back(as[k]);
    p.sb.push_back(bs[k]);
  }
  if (p.dims.empty()) { p.dims.push_back(1); p.sa.push_back(0); p.sb.push_back(0); }
  return p;
}

void binary(int op, const BinaryPlan& p, const float* a, const float* b, float* o) {
  switch (op) {
    case binary_op::kAdd: return run<binary_op::kAdd>(p, a, b, o);
    case binary_op::kSub: return run<binary_op::kSub>(p, a, b, o);
    case binary_op::kMultiply: return run<binary_op::kMultiply>(p, a, b, o);
    case binary_op::kRealDiv: return run<binary_op::kRealDiv>(p, a, b, o);
    case binary_op::kSquaredDifference: return run<binary_op::kSquaredDifference>(p, a, b, o);
    default: throw std::invalid_argument("unknown binary op");
  }
}

void compare(int op, const BinaryPlan& p, const float* a, const float* b, uint8_t* o) {
  switch (op) {
    case compare_op::kGreater: return run_cmp<compare_op::kGreater>(p, a, b, o);
    case compare_op::kGreaterEqual: return run_cmp<compare_op::kGreaterEqual>(p, a, b, o);
    case compare_op::kLess: return run_cmp<compare_op::kLess>(p, a, b, o);
    case compare_op::kLessEqual: return run_cmp<compare_op::kLessEqual>(p, a, b, o);
    case compare_op::kEqual: return run_cmp<compare_op::kEqual>(p, a, b, o);
    default: throw std::invalid_argument("unknown comparison");
  }
}

void select(const uint8_t* c, const float* t, const float* e, int64_t n, float* o) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) o[i] = c[i] ? t[i] : e[i];
}

// y[o, i] = sum_r x[o, r, i] (scale applied after), accumulated in double.
void reduce_sum(const float* x, int64_t outer, int64_t red, int64_t innerN, float scale, float* y) {
  if (innerN == 1) {
#pragma omp parallel for schedule(static) if (outer * red >= kParallelMin)
    for (int64_t o = 0; o < outer; ++o) {
      const float* p = x + o * red;
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t r = 0;
      for (; r + 4 <= red; r += 4) { s0 += p[r]; s1 += p[r + 1]; s2 += p[r + 2]; s3 += p[r + 3]; }
      for (; r < red; ++r) s0 += p[r];
      y[o] = static_cast<float>((s0 + s1 + s2 + s3) * scale);
    }
    return;
  }
  // Split the reduced axis across threads when outer is small (instance norm: outer = batch).
  const int nt = std::max(1, num_threads());
  const int64_t chunks = outer * red * innerN < kParallelMin ? 1 : std::min<int64_t>(red, outer >= nt ? 1 : nt * 4);
  std::vector<double> part(static_cast<size_t>(outer * chunks * innerN), 0.0);
#pragma omp parallel for collapse(2) schedule(static) if (outer * red * innerN >= kParallelMin)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t r0 = red * c / chunks, r1 = red * (c + 1) / chunks;
      double* acc = part.data() + (o * chunks + c) * innerN;
      std::vector<float> facc(static_cast<size_t>(innerN), 0.f);
      for (int64_t r = r0; r < r1; ++r) {
        const float* p = x + (o * red + r) * innerN;
        for (int64_t i = 0; i < innerN; ++i) facc[i] += p[i];
        if (((r - r0) & 255) == 255) {  // flush float partials every 256 rows to keep precision
          for (int64_t i = 0; i < innerN; ++i) { acc[i] += facc[i]; facc[i] = 0.f; }
        }
      }
      for (int64_t i = 0; i < innerN; ++i) acc[i] += facc[i];
    }
  }
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < innerN; ++i) {
      double s = 0;
      for (int64_t c = 0; c < chunks; ++c) s += part[(o * chunks + c) * innerN + i];
      y[o * innerN + i] = static_cast<float>(s * scale);
    }
  }
}

// Concat along one axis viewed as [outer, len_k * inner] pieces; split is the inverse.
void concat_rows(const std::vector<const float*>& ins, const std::vector<int64_t>& widths, int64_t outer, float* out) {
  int64_t total = 0;
  for (int64_t w : widths) total += w;
#pragma omp parallel for schedule(static) if (outer * total >= kParallelMin)
  for (int64_t o = 0; o < outer; ++o) {
    float* dst = out + o * total;
    for (size_t k = 0; k < ins.size(); ++k) {
      std::memcpy(dst, ins[k] + o * widths[k], widths[k] * sizeof(float));
      dst += widths[k];
    }
  }
}

void split_rows(const float* in, const std::vector<float*>& outs, const std::vector<int64_t>& widths, int64_t outer) {
  int64_t total = 0;
  for (int64_t w : widths) total += w;
#pragma omp parallel for schedule(static) if (outer * total >= kParallelMin)
  for (int64_t o = 0; o < outer; ++o) {
    const float* src = in + o * total;
    for (size_t k = 0; k < outs.size(); ++k) {
      std::memcpy(outs[k] + o * widths[k], src, widths[k] * sizeof(float));
      src += widths[k];
    }
  }
}

// Softmax over the last axis of [rows, n].
void softmax_rows(const float* x, int64_t rows, int64_t n, float* y) {
#pragma omp parallel for schedule(static) if (rows * n >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, xr[i]);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) { yr[i] = std::exp(xr[i] - m); s += yr[i]; }
    const float inv = static_cast<float>(1.0 / s);
    for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
  }
}

// Unary ops by unary_op opcode (opcodes.h); LeakyRelu uses alpha.
void unary(int op, const float* x, int64_t n, float alpha, float* y) {
  switch (op) {
#define UNARY_CASE(ID, EXPR)                                                           \
  case ID: {                                                                           \
    _Pragma("omp parallel for schedule(static) if (n >= kParallelMin)")                \
    for (int64_t i = 0; i < n; ++i) { const float v = x[i]; y[i] = (EXPR); }           \
    return;                                                                            \
  }
    UNARY_CASE(unary_op::kNeg, -v)
    UNARY_CASE(unary_op::kExp, std::exp(v))
    UNARY_CASE(unary_op::kErf, std::erf(v))
    UNARY_CASE(unary_op::kLeakyRelu, v < 0.f ? alpha * v : v)
    UNARY_CASE(unary_op::kSquare, v * v)
    UNARY_CASE(unary_op::kRsqrt, 1.f / std::sqrt(v))
    UNARY_CASE(unary_op::kRelu, v < 0.f ? 0.f : v)
    UNARY_CASE(unary_op::kSqrt, std::sqrt(v))
    UNARY_CASE(unary_op::kSigmoid, 1.f / (1.f + std::exp(-v)))
#undef UNARY_CASE
    default: throw std::invalid_argument("unknown unary op");
  }
}

// y = transpose(x, perm) for a row-major x of shape dims (rank <= 8). The shape is first canonicalised: unit axes
// are dropped and output axes that are consecutive in the input too are merged (so e.g. a depth-to-space
// [B,D,H,W,2,2,2,1] permutation becomes rank 7 with no unit inner axis). The two innermost output axes are then walked
// with their input strides (one index decode per inner block instead of per element); when the innermost axis is
// contiguous in the input, whole runs are copied.
void transpose(const float* x, const std::vector<int64_t>& dims, const std::vector<int64_t>& perm, float* y) {
  const size_t r0 = dims.size();
  int64_t total = 1;
  for (int64_t d : dims) total *= d;
  if (total == 0) return;
  std::vector<int64_t> istride0(r0, 1);
  for (size_t k = r0 - 1; k-- > 0;) istride0[k] = istride0[k + 1] * dims[k + 1];
  // output axes (in output order) as (size, input stride), unit axes dropped, mergeable neighbours merged
  std::vector<int64_t> od, os;
  std::vector<int64_t> src_axis;
  for (size_t k = 0; k < r0; ++k) {
    const int64_t a = perm[k];
    if (dims[a] == 1) continue;
    if (!src_axis.empty() && src_axis.back() < a) {
      bool gap = false;  // only unit axes may sit between the two in the input
      for (int64_t j = src_axis.back() + 1; j < a; ++j) gap = gap || dims[j] != 1;
      if (!gap) {
        od.back() *= dims[a];
        os.back() = istride0[a];
        src_axis.back() = a;
        continue;
      }
    }
    od.push_back(dims[a]);
    os.push_back(istride0[a]);
    src_axis.push_back(a);
  }
  if (od.empty()) { y[0] = x[0]; return; }
  if (od.size() == 1) { std::memcpy(y, x, total * sizeof(float)); return; }
  const size_t r = od.size();
  const int64_t n0 = od[r - 1], s0 = os[r - 1], n1 = od[r - 2], s1 = os[r - 2];
  const int64_t block = n0 * n1, outer = total / block;
#pragma omp parallel for schedule(static) if (total >= kParallelMin && outer > 1)
  for (int64_t t = 0; t < outer; ++t) {
    int64_t rem = t, off = 0;
    for (size_t k = r - 2; k-- > 0;) {
      off += (rem % od[k]) * os[k];
      rem /= od[k];
    }
    float* dst = y + t * block;
    for (int64_t i1 = 0; i1 < n1; ++i1) {
      const float* src = x + off + i1 * s1;
      float* d = dst + i1 * n0;
      if (s0 == 1) {
        std::memcpy(d, src, n0 * sizeof(float));
      } else {
        for (int64_t i = 0; i < n0; ++i) d[i] = src[i * s0];
      }
    }
  }
}

// Copies a block `size` from src (dims sd) at offset soff to dst (dims dd) at offset doff (Slice and Pad).
void copy_block(const float* src, const std::vector<int64_t>& sd, const std::vector<int64_t>& soff, float* dst,
                const std::vector<int64_t>& dd, const std::vector<int64_t>& doff, const std::vector<int64_t>& size) {
  const size_t r = size.size();
  std::vector<int64_t> ss(r, 1), ds(r, 1);
  for (size_t k = r - 1; k-- > 0;) { ss[k] = ss[k + 1] * sd[k + 1]; ds[k] = ds[k + 1] * dd[k + 1]; }
  int64_t total = 1;
  for (int64_t v : size) total *= v;
  if (total == 0) return;
  // Merge trailing axes that are copied whole in both arrays into one longer contiguous run.
  size_t last = r - 1;
  int64_t run = size[last];
  while (last > 0 && size[last] == sd[last] && size[last] == dd[last] && soff[last] == 0 && doff[last] == 0) {
    --last;
    run *= size[last];
  }
  int64_t outer = 1;
  for (size_t k = 0; k < last; ++k) outer *= size[k];
  int64_t sbase = 0, dbase = 0;
  for (size_t k = 0; k < r; ++k) { sbase += soff[k] * ss[k]; dbase += doff[k] * ds[k]; }
#pragma omp parallel for schedule(static) if (total >= kParallelMin)
  for (int64_t t = 0; t < outer; ++t) {
    int64_t rem = t, so = sbase, dof = dbase;
    for (size_t k = last; k-- > 0;) {
      const int64_t idx = rem % size[k];
      rem /= size[k];
      so += idx * ss[k];
      dof += idx * ds[k];
    }
    std::memcpy(dst + dof, src + so, run * sizeof(float));
  }
}

// Average pooling, NDHWC, 'valid' windows (every window fully inside the input), dilation 1.
// g = {N, D, H, W, C, kd, kh, kw, sd, sh, sw, OD, OH, OW}
void avgpool3d(const int64_t* g, const float* x, float* y) {
  const int64_t N = g[0], D = g[1], H = g[2], W = g[3], C = g[4], kd = g[5], kh = g[6], kw = g[7];
  const int64_t sd = g[8], sh = g[9], sw = g[10], OD = g[11], OH = g[12], OW = g[13];
  const float inv = 1.f / static_cast<float>(kd * kh * kw);
#pragma omp parallel for collapse(2) schedule(static) if (N * OD * OH * OW * C * kd * kh * kw >= kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t od = 0; od < OD; ++od) {
      std::vector<float> acc(static_cast<size_t>(C));
      for (int64_t oh = 0; oh < OH; ++oh) {
        for (int64_t ow = 0; ow < OW; ++ow) {
          std::fill(acc.begin(), acc.end(), 0.f);
          for (int64_t a = 0; a < kd; ++a)
            for (int64_t b = 0; b < kh; ++b)
              for (int64_t c = 0; c < kw; ++c) {
                const float* p = x + ((((n * D) + od * sd + a) * H + oh * sh + b) * W + ow * sw + c) * C;
                for (int64_t ch = 0; ch < C; ++ch) acc[ch] += p[ch];
              }
          float* o = y + (((n * OD + od) * OH + oh) * OW + ow) * C;
          for (int64_t ch = 0; ch < C; ++ch) o[ch] = acc[ch] * inv;
        }
      }
    }
  }
}

void avgpool3d_grad(const int64_t* g, const float* dy, float* dx) {
  const int64_t N = g[0], D = g[1], H = g[2], W = g[3], C = g[4], kd = g[5], kh = g[6], kw = g[7];
  const int64_t sd = g[8], sh = g[9], sw = g[10], OD = g[11], OH = g[12], OW = g[13];
  const float inv = 1.f / static_cast<float>(kd * kh * kw);
  std::memset(dx, 0, sizeof(float) * N * D * H * W * C);
  // Threads own whole batch items, so overlapping windows never race.
#pragma omp parallel for schedule(static) if (N > 1 && N * D * H * W * C >= kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t od = 0; od < OD; ++od)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const float* d = dy + (((n * OD + od) * OH + oh) * OW + ow) * C;
          for (int64_t a = 0; a < kd; ++a)
            for (int64_t b = 0; b < kh; ++b)
              for (int64_t c = 0; c < kw; ++c) {
                float* p = dx + ((((n * D) + od * sd + a) * H + oh * sh + b) * W + ow * sw + c) * C;
                for (int64_t ch = 0; ch < C; ++ch) p[ch] += d[ch] * inv;
              }
        }
  }
}

}  // namespace ssl3d
