// oneDNN (the library PyTorch uses for CPU convolutions) for Conv3D and both backprops.
// Activations stay in tfjs's NDHWC buffers (oneDNN tag ndhwc, zero-copy); the small filter is reordered between tfjs's
// [KD,KH,KW,C,O] (oneDNN tag dhwio) and whatever blocked layout oneDNN's fastest kernel asks for (tag any).
#include "kernels.h"
#ifdef SSL3D_HAVE_DNNL
#include <dnnl.hpp>
#include <cstdlib>

namespace ssl3d {
namespace {
using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dnnl::engine& eng() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
dnnl::stream& strm() {
  static dnnl::stream s(eng());
  return s;
}

struct Descs {
  memory::desc src, wei_user, wei_any, dst;
  memory::dims strides, dil, pl, pr;
};

Descs descs(const ConvGeom& g) {
  return Descs{memory::desc({g.N, g.C, g.D, g.H, g.W}, dt::f32, tag::ndhwc),
               memory::desc({g.O, g.C, g.KD, g.KH, g.KW}, dt::f32, tag::dhwio),
               memory::desc({g.O, g.C, g.KD, g.KH, g.KW}, dt::f32, tag::any),
               memory::desc({g.N, g.O, g.OD, g.OH, g.OW}, dt::f32, tag::ndhwc),
               {g.sd, g.sh, g.sw},
               {g.dd - 1, g.dh - 1, g.dw - 1},
               {g.pf, g.pt, g.pl},
               {g.pbk, g.pbt, g.pbr}};
}

dnnl::convolution_forward::primitive_desc fwd_pd(const Descs& d) {
  dnnl::convolution_forward::desc cd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, d.src,
                                     d.wei_any, d.dst, d.strides, d.dil, d.pl, d.pr);
  return dnnl::convolution_forward::primitive_desc(cd, eng());
}

bool enabled(const ConvGeom& g) {
  return options().use_dnnl && g.pf >= 0 && g.pt >= 0 && g.pl >= 0 && g.pbk >= 0 && g.pbt >= 0 && g.pbr >= 0;
}
}  // namespace

bool conv3d_fwd_dnnl(const ConvGeom& g, const float* x, const float* w, float* y) {
  if (!enabled(g)) return false;
  try {
    const Descs d = descs(g);
    auto pd = fwd_pd(d);
    memory src(d.src, eng(), const_cast<float*>(x)), dst(d.dst, eng(), y);
    memory wu(d.wei_user, eng(), const_cast<float*>(w)), wei = wu;
    if (pd.weights_desc() != d.wei_user) {
      wei = memory(pd.weights_desc(), eng());
      dnnl::reorder(wu, wei).execute(strm(), wu, wei);
    }
    dnnl::convolution_forward(pd).execute(strm(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
    strm().wait();
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

bool conv3d_bwd_input_dnnl(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  if (!enabled(g)) return false;
  try {
    const Descs d = descs(g);
    auto hint = fwd_pd(d);
    dnnl::convolution_backward_data::desc bd(dnnl::algorithm::convolution_direct, d.src, d.wei_any, d.dst, d.strides,
                                             d.dil, d.pl, d.pr);
    dnnl::convolution_backward_data::primitive_desc pd(bd, eng(), hint);
    memory dsrc(d.src, eng(), dx), ddst(d.dst, eng(), const_cast<float*>(dy));
    memory wu(d.wei_user, eng(), const_cast<float*>(w)), wei = wu;
    if (pd.weights_desc() != d.wei_user) {
      wei = memory(pd.weights_desc(), eng());
      dnnl::reorder(wu, wei).execute(strm(), wu, wei);
    }
    dnnl::convolution_backward_data(pd).execute(
        strm(), {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, dsrc}});
    strm().wait();
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

bool conv3d_bwd_filter_dnnl(const ConvGeom& g, const float* x, const float* dy, float* dw) {
  if (!enabled(g)) return false;
  try {
    const Descs d = descs(g);
    auto hint = fwd_pd(d);
    dnnl::convolution_backward_weights::desc wd(dnnl::algorithm::convolution_direct, d.src, d.wei_any, d.dst,
                                                d.strides, d.dil, d.pl, d.pr);
    dnnl::convolution_backward_weights::primitive_desc pd(wd, eng(), hint);
    memory src(d.src, eng(), const_cast<float*>(x)), ddst(d.dst, eng(), const_cast<float*>(dy));
    memory wu(d.wei_user, eng(), dw), dwei = wu;
    const bool need_reorder = pd.diff_weights_desc() != d.wei_user;
    if (need_reorder) dwei = memory(pd.diff_weights_desc(), eng());
    dnnl::convolution_backward_weights(pd).execute(
        strm(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dwei}});
    if (need_reorder) dnnl::reorder(dwei, wu).execute(strm(), dwei, wu);
    strm().wait();
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

bool have_dnnl() { return true; }
}  // namespace ssl3d

#else
namespace ssl3d {
bool conv3d_fwd_dnnl(const ConvGeom&, const float*, const float*, float*) { return false; }
bool conv3d_bwd_input_dnnl(const ConvGeom&, const float*, const float*, float*) { return false; }
bool conv3d_bwd_filter_dnnl(const ConvGeom&, const float*, const float*, float*) { return false; }
bool have_dnnl() { return false; }
}  // namespace ssl3d
#endif
