// N-API bindings (ABI-stable across Node versions). Every entry point is synchronous: tfjs cpu kernels are.
// Buffers are Float32Arrays owned by the tfjs cpu backend; outputs are preallocated by the caller. Sizes are
// checked here so a shape bug in JS throws instead of corrupting memory.
#include <node_api.h>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>
#include "kernels.h"

namespace {
using namespace ssl3d;

struct JsError {
  std::string msg;
};

#define NAPI_OK(call)                                   \
  do {                                                  \
    if ((call) != napi_ok) throw JsError{"N-API call failed: " #call}; \
  } while (0)

std::vector<napi_value> args(napi_env env, napi_callback_info info, size_t n) {
  std::vector<napi_value> v(n);
  size_t got = n;
  NAPI_OK(napi_get_cb_info(env, info, &got, v.data(), nullptr, nullptr));
  if (got < n) throw JsError{"expected " + std::to_string(n) + " arguments, got " + std::to_string(got)};
  return v;
}

// Element type -> N-API typed-array kind and its name in error messages.
template <typename T>
struct TypedArrayKind;
template <>
struct TypedArrayKind<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* what = "a Float32Array";
};
template <>
struct TypedArrayKind<uint8_t> {
  static constexpr napi_typedarray_type type = napi_uint8_array;
  static constexpr const char* what = "a Uint8Array";
};
template <>
struct TypedArrayKind<int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
  static constexpr const char* what = "an Int32Array";
};

template <typename T>
struct View {
  T* data;
  size_t length;
};
using F32 = View<float>;
using U8 = View<uint8_t>;

// The one typed-array accessor: the JS value must be a typed array of exactly T's kind.
template <typename T>
View<T> typed(napi_env env, napi_value v, const char* name) {
  bool is = false;
  NAPI_OK(napi_is_typedarray(env, v, &is));
  napi_typedarray_type t = napi_int8_array;
  size_t len = 0;
  void* data = nullptr;
  if (is) NAPI_OK(napi_get_typedarray_info(env, v, &t, &len, &data, nullptr, nullptr));
  if (!is || t != TypedArrayKind<T>::type) throw JsError{std::string(name) + ": expected " + TypedArrayKind<T>::what};
  return View<T>{static_cast<T*>(data), len};
}

int64_t num(napi_env env, napi_value v) {
  int64_t r;
  NAPI_OK(napi_get_value_int64(env, v, &r));
  return r;
}

bool boolean(napi_env env, napi_value v) {
  bool r;
  NAPI_OK(napi_get_value_bool(env, v, &r));
  return r;
}

void need(const F32& a, int64_t n, const char* name) {
  if (n < 0 || a.length != static_cast<size_t>(n))
    throw JsError{std::string(name) + ": expected " + std::to_string(n) + " elements, got " + std::to_string(a.length)};
}

ConvGeom geom(napi_env env, napi_value v) {
  const auto view = typed<int32_t>(env, v, "geometry");
  const int32_t* p = view.data;
  if (view.length != 24) throw JsError{"geometry: expected 24 integers"};
  // Paddings (indices 18..23) may be negative: tfjs 'same' with stride > kernel skips leading input rows.
  ConvGeom g{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11],
             p[12], p[13], p[14], p[15], p[16], p[17], p[18], p[19], p[20], p[21], p[22], p[23]};
  for (int i = 0; i < 24; ++i)
    if (i < 18 && p[i] <= 0) throw JsError{"geometry: invalid value at index " + std::to_string(i)};
  return g;
}

template <typename F>
napi_value guarded(napi_env env, F&& f) {
  try {
    return f();
  } catch (const JsError& e) {
    napi_throw_error(env, "SSL3D_NATIVE", e.msg.c_str());
  } catch (const std::exception& e) {
    napi_throw_error(env, "SSL3D_NATIVE", e.what());
  }
  return nullptr;
}

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// conv3d(x, w, y, geometry)
napi_value Conv3d(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 4);
    const ConvGeom g = geom(env, a[3]);
    F32 x = typed<float>(env, a[0], "x"), w = typed<float>(env, a[1], "filter"), y = typed<float>(env, a[2], "y");
    need(x, g.N * g.D * g.H * g.W * g.C, "x");
    need(w, g.KD * g.KH * g.KW * g.C * g.O, "filter");
    need(y, g.N * g.OD * g.OH * g.OW * g.O, "y");
    if (!conv3d_fwd_dnnl(g, x.data, w.data, y.data)) conv3d_fwd_im2col(g, x.data, w.data, y.data);
    return undefined(env);
  });
}

// conv3dBackpropInput(dy, w, dx, geometry)
napi_value Conv3dBackpropInput(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 4);
    const ConvGeom g = geom(env, a[3]);
    F32 dy = typed<float>(env, a[0], "dy"), w = typed<float>(env, a[1], "filter"), dx = typed<float>(env, a[2], "dx");
    need(dy, g.N * g.OD * g.OH * g.OW * g.O, "dy");
    need(w, g.KD * g.KH * g.KW * g.C * g.O, "filter");
    need(dx, g.N * g.D * g.H * g.W * g.C, "dx");
    if (!conv3d_bwd_input_dnnl(g, dy.data, w.data, dx.data)) conv3d_bwd_input_im2col(g, dy.data, w.data, dx.data);
    return undefined(env);
  });
}

// conv3dBackpropFilter(x, dy, dw, geometry)
napi_value Conv3dBackpropFilter(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 4);
    const ConvGeom g = geom(env, a[3]);
    F32 x = typed<float>(env, a[0], "x"), dy = typed<float>(env, a[1], "dy"), dw = typed<float>(env, a[2], "dw");
    need(x, g.N * g.D * g.H * g.W * g.C, "x");
    need(dy, g.N * g.OD * g.OH * g.OW * g.O, "dy");
    need(dw, g.KD * g.KH * g.KW * g.C * g.O, "dw");
    if (!conv3d_bwd_filter_dnnl(g, x.data, dy.data, dw.data)) conv3d_bwd_filter_im2col(g, x.data, dy.data, dw.data);
    return undefined(env);
  });
}

// matmul(a, b, c, M, N, K, transA, transB, batchIndexA: Int32Array, batchIndexB: Int32Array)
// c[bi] = op(a[ia[bi]]) x op(b[ib[bi]]) for every output batch bi (broadcasting resolved by the caller).
napi_value Matmul(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 10);
    F32 A = typed<float>(env, a[0], "a"), B = typed<float>(env, a[1], "b"), C = typed<float>(env, a[2], "c");
    const int64_t M = num(env, a[3]), N = num(env, a[4]), K = num(env, a[5]);
    const bool ta = boolean(env, a[6]), tb = boolean(env, a[7]);
    const auto batchA = typed<int32_t>(env, a[8], "batchIndexA"), batchB = typed<int32_t>(env, a[9], "batchIndexB");
    const int32_t *ia = batchA.data, *ib = batchB.data;
    const size_t nba = batchA.length, nbb = batchB.length;
    if (M < 0 || N < 0 || K < 0 || nba != nbb) throw JsError{"matmul: bad sizes"};
    const int64_t batch = static_cast<int64_t>(nba);
    need(C, batch * M * N, "c");
    const int64_t sa = M * K, sb = K * N;
    for (int64_t i = 0; i < batch; ++i) {
      if (ia[i] < 0 || ib[i] < 0 || static_cast<size_t>((ia[i] + 1) * sa) > A.length ||
          static_cast<size_t>((ib[i] + 1) * sb) > B.length)
        throw JsError{"matmul: batch index out of range"};
    }
    // Many small products (attention heads): one parallel region over the batch, each product serial inside
    // (nested regions get one thread). Large products: one at a time, parallel inside.
    const bool over_batch = batch >= 2 && M * N * K <= (int64_t{1} << 25);
#pragma omp parallel for schedule(dynamic, 1) if (over_batch)
    for (int64_t i = 0; i < batch; ++i) {
      gemm(ta, tb, M, N, K, A.data + ia[i] * sa, ta ? M : K, B.data + ib[i] * sb, tb ? K : N, C.data + i * M * N, N,
           false);
    }
    return undefined(env);
  });
}

std::vector<int64_t> shape_of(napi_env env, napi_value v, const char* name) {
  const auto view = typed<int32_t>(env, v, name);
  std::vector<int64_t> r(view.data, view.data + view.length);
  for (int64_t d : r)
    if (d < 0) throw JsError{std::string(name) + ": negative dimension"};
  return r;
}

int64_t prod(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// binary(op, a, aShape, b, bShape, out): numpy-broadcasting add/sub/mul/div/squared-difference.
napi_value Binary(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 6);
    const int64_t op = num(env, a[0]);
    F32 A = typed<float>(env, a[1], "a"), B = typed<float>(env, a[3], "b"), O = typed<float>(env, a[5], "out");
    const auto as = shape_of(env, a[2], "aShape"), bs = shape_of(env, a[4], "bShape");
    need(A, prod(as), "a");
    need(B, prod(bs), "b");
    BinaryPlan p;
    try {
      p = plan_binary(as, bs);
    } catch (const std::invalid_argument& e) {
      throw JsError{e.what()};
    }
    need(O, prod(p.dims), "out");
    if (op < 0 || op >= binary_op::kCount) throw JsError{"binary: unknown op"};
    if (O.length > 0) binary(static_cast<int>(op), p, A.data, B.data, O.data);
    return undefined(env);
  });
}

// compare(op, a, aShape, b, bShape, out: Uint8Array)
napi_value Compare(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 6);
    const int64_t op = num(env, a[0]);
    F32 A = typed<float>(env, a[1], "a"), B = typed<float>(env, a[3], "b");
    U8 O = typed<uint8_t>(env, a[5], "out");
    const auto as = shape_of(env, a[2], "aShape"), bs = shape_of(env, a[4], "bShape");
    need(A, prod(as), "a");
    need(B, prod(bs), "b");
    BinaryPlan p;
    try {
      p = plan_binary(as, bs);
    } catch (const std::invalid_argument& e) {
      throw JsError{e.what()};
    }
    if (O.length != static_cast<size_t>(prod(p.dims))) throw JsError{"out: wrong size"};
    if (op < 0 || op >= compare_op::kCount) throw JsError{"compare: unknown op"};
    if (O.length > 0) compare(static_cast<int>(op), p, A.data, B.data, O.data);
    return undefined(env);
  });
}

// select(cond: Uint8Array, t, e, out), all the same size.
napi_value Select(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 4);
    U8 C = typed<uint8_t>(env, a[0], "condition");
    F32 T = typed<float>(env, a[1], "t"), E = typed<float>(env, a[2], "e"), O = typed<float>(env, a[3], "out");
    const int64_t n = static_cast<int64_t>(C.length);
    need(T, n, "t");
    need(E, n, "e");
    need(O, n, "out");
    select(C.data, T.data, E.data, n, O.data);
    return undefined(env);
  });
}

// reduceSum(x, outer, reduced, inner, scale, y): y[o, i] = scale * sum_r x[o, r, i].
napi_value ReduceSum(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 6);
    F32 X = typed<float>(env, a[0], "x"), Y = typed<float>(env, a[5], "y");
    const int64_t outer = num(env, a[1]), red = num(env, a[2]), in = num(env, a[3]);
    double scale;
    NAPI_OK(napi_get_value_double(env, a[4], &scale));
    if (outer < 0 || red < 0 || in < 0) throw JsError{"reduceSum: negative size"};
    need(X, outer * red * in, "x");
    need(Y, outer * in, "y");
    reduce_sum(X.data, outer, red, in, static_cast<float>(scale), Y.data);
    return undefined(env);
  });
}

std::vector<F32> f32_list(napi_env env, napi_value v, const char* name) {
  uint32_t n;
  NAPI_OK(napi_get_array_length(env, v, &n));
  std::vector<F32> r;
  for (uint32_t i = 0; i < n; ++i) {
    napi_value e;
    NAPI_OK(napi_get_element(env, v, i, &e));
    r.push_back(typed<float>(env, e, name));
  }
  return r;
}

// concat(inputs[], widths: Int32Array, outer, out) / split(x, outputs[], widths, outer): along one axis, each
// piece viewed as [outer, width] (width = axis length * inner size).
napi_value Concat(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 4);
    auto ins = f32_list(env, a[0], "inputs");
    const auto widths = shape_of(env, a[1], "widths");
    const int64_t outer = num(env, a[2]);
    F32 O = typed<float>(env, a[3], "out");
    if (widths.size() != ins.size() || outer < 0) throw JsError{"concat: bad sizes"};
    std::vector<const float*> ptrs;
    for (size_t k = 0; k < ins.size(); ++k) {
      need(ins[k], outer * widths[k], "input");
      ptrs.push_back(ins[k].data);
    }
    need(O, outer * std::accumulate(widths.begin(), widths.end(), int64_t{0}), "out");
    concat_rows(ptrs, widths, outer, O.data);
    return undefined(env);
  });
}

napi_value Split(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 4);
    F32 X = typed<float>(env, a[0], "x");
    auto outs = f32_list(env, a[1], "outputs");
    const auto widths = shape_of(env, a[2], "widths");
    const int64_t outer = num(env, a[3]);
    if (widths.size() != outs.size() || outer < 0) throw JsError{"split: bad sizes"};
    std::vector<float*> ptrs;
    for (size_t k = 0; k < outs.size(); ++k) {
      need(outs[k], outer * widths[k], "output");
      ptrs.push_back(outs[k].data);
    }
    need(X, outer * std::accumulate(widths.begin(), widths.end(), int64_t{0}), "x");
    split_rows(X.data, ptrs, widths, outer);
    return undefined(env);
  });
}

// softmax(x, rows, n, y): softmax over the last axis.
napi_value Softmax(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 4);
    F32 X = typed<float>(env, a[0], "x"), Y = typed<float>(env, a[3], "y");
    const int64_t rows = num(env, a[1]), n = num(env, a[2]);
    if (rows < 0 || n < 0) throw JsError{"softmax: negative size"};
    need(X, rows * n, "x");
    need(Y, rows * n, "y");
    softmax_rows(X.data, rows, n, Y.data);
    return undefined(env);
  });
}

// unary(op, x, alpha, y)
napi_value Unary(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 4);
    const int64_t op = num(env, a[0]);
    F32 X = typed<float>(env, a[1], "x"), Y = typed<float>(env, a[3], "y");
    double alpha;
    NAPI_OK(napi_get_value_double(env, a[2], &alpha));
    if (op < 0 || op >= unary_op::kCount) throw JsError{"unary: unknown op"};
    need(Y, static_cast<int64_t>(X.length), "y");
    unary(static_cast<int>(op), X.data, static_cast<int64_t>(X.length), static_cast<float>(alpha), Y.data);
    return undefined(env);
  });
}

// transpose(x, shape, perm, y)
napi_value Transpose(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 4);
    F32 X = typed<float>(env, a[0], "x"), Y = typed<float>(env, a[3], "y");
    const auto dims = shape_of(env, a[1], "shape"), perm = shape_of(env, a[2], "perm");
    if (dims.empty() || perm.size() != dims.size()) throw JsError{"transpose: perm must match the rank"};
    std::vector<bool> seen(dims.size(), false);
    for (int64_t p : perm) {
      if (p >= static_cast<int64_t>(dims.size()) || seen[p]) throw JsError{"transpose: invalid perm"};
      seen[p] = true;
    }
    need(X, prod(dims), "x");
    need(Y, prod(dims), "y");
    transpose(X.data, dims, perm, Y.data);
    return undefined(env);
  });
}

// instanceNorm(x, B, S, C, gamma, beta, eps, y, mean, rstd, alpha)
napi_value InstanceNorm(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 11);
    const int64_t B = num(env, a[1]), S = num(env, a[2]), C = num(env, a[3]);
    if (B < 0 || S <= 0 || C < 0) throw JsError{"instanceNorm: bad sizes"};
    F32 X = typed<float>(env, a[0], "x"), G = typed<float>(env, a[4], "gamma"), Be = typed<float>(env, a[5], "beta");
    F32 Y = typed<float>(env, a[7], "y"), M = typed<float>(env, a[8], "mean"), R = typed<float>(env, a[9], "rstd");
    double eps, alpha;
    NAPI_OK(napi_get_value_double(env, a[6], &eps));
    NAPI_OK(napi_get_value_double(env, a[10], &alpha));
    need(X, B * S * C, "x");
    need(G, C, "gamma");
    need(Be, C, "beta");
    need(Y, B * S * C, "y");
    need(M, B * C, "mean");
    need(R, B * C, "rstd");
    instance_norm_fwd(X.data, B, S, C, G.data, Be.data, static_cast<float>(eps), static_cast<float>(alpha), Y.data,
                      M.data, R.data);
    return undefined(env);
  });
}

// instanceNormGrad(x, dy, B, S, C, gamma, mean, rstd, dx, dgamma, dbeta, beta, alpha)
napi_value InstanceNormGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 13);
    const int64_t B = num(env, a[2]), S = num(env, a[3]), C = num(env, a[4]);
    if (B < 0 || S <= 0 || C < 0) throw JsError{"instanceNormGrad: bad sizes"};
    F32 X = typed<float>(env, a[0], "x"), DY = typed<float>(env, a[1], "dy"), G = typed<float>(env, a[5], "gamma");
    F32 M = typed<float>(env, a[6], "mean"), R = typed<float>(env, a[7], "rstd");
    F32 DX = typed<float>(env, a[8], "dx"), DG = typed<float>(env, a[9], "dgamma"), DB = typed<float>(env, a[10], "dbeta");
    need(X, B * S * C, "x");
    need(DY, B * S * C, "dy");
    need(G, C, "gamma");
    need(M, B * C, "mean");
    need(R, B * C, "rstd");
    need(DX, B * S * C, "dx");
    need(DG, C, "dgamma");
    need(DB, C, "dbeta");
    F32 BE = typed<float>(env, a[11], "beta");
    need(BE, C, "beta");
    double alpha;
    NAPI_OK(napi_get_value_double(env, a[12], &alpha));
    instance_norm_bwd(X.data, DY.data, B, S, C, G.data, BE.data, M.data, R.data, static_cast<float>(alpha), DX.data,
                      DG.data, DB.data);
    return undefined(env);
  });
}

// sparseInstanceNorm(x, mask, B, S, C, gamma, beta, eps, alpha, y, mean, rstd)
napi_value SparseInstanceNorm(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 12);
    const int64_t B = num(env, a[2]), S = num(env, a[3]), C = num(env, a[4]);
    if (B < 0 || S <= 0 || C < 0) throw JsError{"sparseInstanceNorm: bad sizes"};
    F32 X = typed<float>(env, a[0], "x"), MK = typed<float>(env, a[1], "mask"), G = typed<float>(env, a[5], "gamma"), Be = typed<float>(env, a[6], "beta");
    F32 Y = typed<float>(env, a[9], "y"), M = typed<float>(env, a[10], "mean"), R = typed<float>(env, a[11], "rstd");
    double eps, alpha;
    NAPI_OK(napi_get_value_double(env, a[7], &eps));
    NAPI_OK(napi_get_value_double(env, a[8], &alpha));
    need(X, B * S * C, "x");
    need(MK, B * S, "mask");
    need(G, C, "gamma");
    need(Be, C, "beta");
    need(Y, B * S * C, "y");
    need(M, B * C, "mean");
    need(R, B * C, "rstd");
    sparse_instance_norm_fwd(X.data, MK.data, B, S, C, G.data, Be.data, static_cast<float>(eps),
                             static_cast<float>(alpha), Y.data, M.data, R.data);
    return undefined(env);
  });
}

// sparseInstanceNormGrad(x, dy, mask, B, S, C, gamma, beta, mean, rstd, alpha, dx, dgamma, dbeta)
napi_value SparseInstanceNormGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 14);
    const int64_t B = num(env, a[3]), S = num(env, a[4]), C = num(env, a[5]);
    if (B < 0 || S <= 0 || C < 0) throw JsError{"sparseInstanceNormGrad: bad sizes"};
    F32 X = typed<float>(env, a[0], "x"), DY = typed<float>(env, a[1], "dy"), MK = typed<float>(env, a[2], "mask");
    F32 G = typed<float>(env, a[6], "gamma"), BE = typed<float>(env, a[7], "beta"), M = typed<float>(env, a[8], "mean"), R = typed<float>(env, a[9], "rstd");
    F32 DX = typed<float>(env, a[11], "dx"), DG = typed<float>(env, a[12], "dgamma"), DB = typed<float>(env, a[13], "dbeta");
    double alpha;
    NAPI_OK(napi_get_value_double(env, a[10], &alpha));
    need(X, B * S * C, "x");
    need(DY, B * S * C, "dy");
    need(MK, B * S, "mask");
    need(G, C, "gamma");
    need(BE, C, "beta");
    need(M, B * C, "mean");
    need(R, B * C, "rstd");
    need(DX, B * S * C, "dx");
    need(DG, C, "dgamma");
    need(DB, C, "dbeta");
    sparse_instance_norm_bwd(X.data, DY.data, MK.data, B, S, C, G.data, BE.data, M.data, R.data,
                             static_cast<float>(alpha), DX.data, DG.data, DB.data);
    return undefined(env);
  });
}

// attention(q, k, v, BH, T, S, D, scale, o, lse)
napi_value Attention(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 10);
    const int64_t BH = num(env, a[3]), T = num(env, a[4]), S = num(env, a[5]), D = num(env, a[6]);
    if (BH < 0 || T < 0 || S <= 0 || D <= 0) throw JsError{"attention: bad sizes"};
    double scale;
    NAPI_OK(napi_get_value_double(env, a[7], &scale));
    F32 Q = typed<float>(env, a[0], "q"), K = typed<float>(env, a[1], "k"), V = typed<float>(env, a[2], "v"), O = typed<float>(env, a[8], "o"), L = typed<float>(env, a[9], "lse");
    need(Q, BH * T * D, "q");
    need(K, BH * S * D, "k");
    need(V, BH * S * D, "v");
    need(O, BH * T * D, "o");
    need(L, BH * T, "lse");
    attention_fwd(Q.data, K.data, V.data, BH, T, S, D, static_cast<float>(scale), O.data, L.data);
    return undefined(env);
  });
}

// attentionGrad(q, k, v, o, lse, dout, BH, T, S, D, scale, dq, dk, dv)
napi_value AttentionGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 14);
    const int64_t BH = num(env, a[6]), T = num(env, a[7]), S = num(env, a[8]), D = num(env, a[9]);
    if (BH < 0 || T < 0 || S <= 0 || D <= 0) throw JsError{"attentionGrad: bad sizes"};
    double scale;
    NAPI_OK(napi_get_value_double(env, a[10], &scale));
    F32 Q = typed<float>(env, a[0], "q"), K = typed<float>(env, a[1], "k"), V = typed<float>(env, a[2], "v"), O = typed<float>(env, a[3], "o");
    F32 L = typed<float>(env, a[4], "lse"), DO = typed<float>(env, a[5], "dout");
    F32 DQ = typed<float>(env, a[11], "dq"), DK = typed<float>(env, a[12], "dk"), DV = typed<float>(env, a[13], "dv");
    need(Q, BH * T * D, "q");
    need(K, BH * S * D, "k");
    need(V, BH * S * D, "v");
    need(O, BH * T * D, "o");
    need(L, BH * T, "lse");
    need(DO, BH * T * D, "dout");
    need(DQ, BH * T * D, "dq");
    need(DK, BH * S * D, "dk");
    need(DV, BH * S * D, "dv");
    attention_bwd(Q.data, K.data, V.data, O.data, L.data, DO.data, BH, T, S, D, static_cast<float>(scale), DQ.data,
                  DK.data, DV.data);
    return undefined(env);
  });
}

// layerNorm(x, R, C, gamma, beta, eps, y, mean, rstd)
napi_value LayerNorm(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 9);
    const int64_t R = num(env, a[1]), C = num(env, a[2]);
    if (R < 0 || C <= 0) throw JsError{"layerNorm: bad sizes"};
    F32 X = typed<float>(env, a[0], "x"), G = typed<float>(env, a[3], "gamma"), Be = typed<float>(env, a[4], "beta");
    F32 Y = typed<float>(env, a[6], "y"), M = typed<float>(env, a[7], "mean"), Rs = typed<float>(env, a[8], "rstd");
    double eps;
    NAPI_OK(napi_get_value_double(env, a[5], &eps));
    need(X, R * C, "x");
    need(G, C, "gamma");
    need(Be, C, "beta");
    need(Y, R * C, "y");
    need(M, R, "mean");
    need(Rs, R, "rstd");
    layer_norm_fwd(X.data, R, C, G.data, Be.data, static_cast<float>(eps), Y.data, M.data, Rs.data);
    return undefined(env);
  });
}

// layerNormGrad(x, dy, R, C, gamma, mean, rstd, dx, dgamma, dbeta)
napi_value LayerNormGrad(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 10);
    const int64_t R = num(env, a[2]), C = num(env, a[3]);
    if (R < 0 || C <= 0) throw JsError{"layerNormGrad: bad sizes"};
    F32 X = typed<float>(env, a[0], "x"), DY = typed<float>(env, a[1], "dy"), G = typed<float>(env, a[4], "gamma");
    F32 M = typed<float>(env, a[5], "mean"), Rs = typed<float>(env, a[6], "rstd");
    F32 DX = typed<float>(env, a[7], "dx"), DG = typed<float>(env, a[8], "dgamma"), DB = typed<float>(env, a[9], "dbeta");
    need(X, R * C, "x");
    need(DY, R * C, "dy");
    need(G, C, "gamma");
    need(M, R, "mean");
    need(Rs, R, "rstd");
    need(DX, R * C, "dx");
    need(DG, C, "dgamma");
    need(DB, C, "dbeta");
    layer_norm_bwd(X.data, DY.data, R, C, G.data, M.data, Rs.data, DX.data, DG.data, DB.data);
    return undefined(env);
  });
}

// copyBlock(src, srcShape, srcOffset, dst, dstShape, dstOffset, size): Slice and Pad.
napi_value CopyBlock(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 7);
    F32 S = typed<float>(env, a[0], "src"), D = typed<float>(env, a[3], "dst");
    const auto sd = shape_of(env, a[1], "srcShape"), so = shape_of(env, a[2], "srcOffset");
    const auto dd = shape_of(env, a[4], "dstShape"), dof = shape_of(env, a[5], "dstOffset");
    const auto size = shape_of(env, a[6], "size");
    const size_t r = size.size();
    if (r == 0 || sd.size() != r || so.size() != r || dd.size() != r || dof.size() != r)
      throw JsError{"copyBlock: ranks differ"};
    for (size_t k = 0; k < r; ++k)
      if (so[k] + size[k] > sd[k] || dof[k] + size[k] > dd[k]) throw JsError{"copyBlock: block out of range"};
    need(S, prod(sd), "src");
    need(D, prod(dd), "dst");
    copy_block(S.data, sd, so, D.data, dd, dof, size);
    return undefined(env);
  });
}

// avgPool3d(x, geometry[14], y) / avgPool3dGrad(dy, geometry[14], dx): 'valid' windows.
napi_value AvgPool(napi_env env, napi_callback_info info, bool grad) {
  return guarded(env, [&] {
    auto a = args(env, info, 3);
    F32 I = typed<float>(env, a[0], grad ? "dy" : "x"), O = typed<float>(env, a[2], grad ? "dx" : "y");
    const auto g = shape_of(env, a[1], "geometry");
    if (g.size() != 14) throw JsError{"avgPool3d: geometry must have 14 integers"};
    for (int k = 0; k < 14; ++k)
      if (g[k] <= 0) throw JsError{"avgPool3d: non-positive geometry value"};
    if ((g[11] - 1) * g[8] + g[5] > g[1] || (g[12] - 1) * g[9] + g[6] > g[2] || (g[13] - 1) * g[10] + g[7] > g[3])
      throw JsError{"avgPool3d: windows exceed the input"};
    const int64_t in = g[0] * g[1] * g[2] * g[3] * g[4], out = g[0] * g[11] * g[12] * g[13] * g[4];
    need(I, grad ? out : in, grad ? "dy" : "x");
    need(O, grad ? in : out, grad ? "dx" : "y");
    if (grad) avgpool3d_grad(g.data(), I.data, O.data); else avgpool3d(g.data(), I.data, O.data);
    return undefined(env);
  });
}
napi_value AvgPoolFwd(napi_env env, napi_callback_info info) { return AvgPool(env, info, false); }
napi_value AvgPoolGrad(napi_env env, napi_callback_info info) { return AvgPool(env, info, true); }

// setOptions(dnnl: boolean, blas: boolean, threads: number)  (threads <= 0 keeps the current count)
napi_value SetOptions(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    auto a = args(env, info, 3);
    options().use_dnnl = boolean(env, a[0]);
    options().use_blas = boolean(env, a[1]);
    set_num_threads(static_cast<int>(num(env, a[2])));
    return undefined(env);
  });
}

napi_value Info(napi_env env, napi_callback_info) {
  return guarded(env, [&] {
    napi_value o, v;
    NAPI_OK(napi_create_object(env, &o));
    NAPI_OK(napi_get_boolean(env, have_dnnl(), &v));
    NAPI_OK(napi_set_named_property(env, o, "dnnl", v));
    NAPI_OK(napi_get_boolean(env, have_blas(), &v));
    NAPI_OK(napi_set_named_property(env, o, "blas", v));
    NAPI_OK(napi_create_string_utf8(env, own_gemm_isa(), NAPI_AUTO_LENGTH, &v));
    NAPI_OK(napi_set_named_property(env, o, "gemmIsa", v));
    NAPI_OK(napi_create_int32(env, num_threads(), &v));
    NAPI_OK(napi_set_named_property(env, o, "threads", v));
    NAPI_OK(napi_get_boolean(env, options().use_dnnl, &v));
    NAPI_OK(napi_set_named_property(env, o, "useDnnl", v));
    NAPI_OK(napi_get_boolean(env, options().use_blas, &v));
    NAPI_OK(napi_set_named_property(env, o, "useBlas", v));
    return o;
  });
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"conv3d", nullptr, Conv3d, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv3dBackpropInput", nullptr, Conv3dBackpropInput, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv3dBackpropFilter", nullptr, Conv3dBackpropFilter, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"matmul", nullptr, Matmul, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"binary", nullptr, Binary, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"compare", nullptr, Compare, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"select", nullptr, Select, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"reduceSum", nullptr, ReduceSum, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"concat", nullptr, Concat, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"split", nullptr, Split, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"softmax", nullptr, Softmax, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"unary", nullptr, Unary, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"transpose", nullptr, Transpose, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"instanceNorm", nullptr, InstanceNorm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"instanceNormGrad", nullptr, InstanceNormGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sparseInstanceNorm", nullptr, SparseInstanceNorm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sparseInstanceNormGrad", nullptr, SparseInstanceNormGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNorm", nullptr, LayerNorm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attention", nullptr, Attention, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionGrad", nullptr, AttentionGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNormGrad", nullptr, LayerNormGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"copyBlock", nullptr, CopyBlock, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"avgPool3d", nullptr, AvgPoolFwd, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"avgPool3dGrad", nullptr, AvgPoolGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setOptions", nullptr, SetOptions, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
