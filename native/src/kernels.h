// ssl3d native CPU kernels: shared declarations. All tensors are float32, row-major, channels-last (NDHWC).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <vector>
#include "opcodes.h"

namespace ssl3d {

// Geometry of one 3D convolution, in tfjs terms (computeConv3DInfo). Filter layout is [KD,KH,KW,C,O].
struct ConvGeom {
  int64_t N, D, H, W, C;      // input
  int64_t KD, KH, KW, O;      // filter
  int64_t OD, OH, OW;         // output
  int64_t sd, sh, sw;         // strides
  int64_t dd, dh, dw;         // dilations (1 = dense)
  int64_t pf, pt, pl;         // front/top/left padding
  int64_t pbk, pbt, pbr;      // back/bottom/right padding
};

// C[M,N] = (accumulate ? C : 0) + op(A)[M,K] * op(B)[K,N]; op(A)(i,k) = ta ? A[k*lda+i] : A[i*lda+k].
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
          int64_t ldb, float* C, int64_t ldc, bool accumulate);
// The portable blocked GEMM (used when no BLAS was linked, or when forced for testing).
void gemm_own(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
              int64_t ldb, float* C, int64_t ldc, bool accumulate);
void gemm_own_generic(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);
void gemm_own_avx2(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);

// im2col + GEMM convolutions (portable).
void conv3d_fwd_im2col(const ConvGeom& g, const float* x, const float* w, float* y);
void conv3d_bwd_input_im2col(const ConvGeom& g, const float* dy, const float* w, float* dx);
void conv3d_bwd_filter_im2col(const ConvGeom& g, const float* x, const float* dy, float* dw);

// oneDNN convolutions; return false when oneDNN is not compiled in or rejects the geometry.
bool conv3d_fwd_dnnl(const ConvGeom& g, const float* x, const float* w, float* y);
bool conv3d_bwd_input_dnnl(const ConvGeom& g, const float* dy, const float* w, float* dx);
bool conv3d_bwd_filter_dnnl(const ConvGeom& g, const float* x, const float* dy, float* dw);

// Broadcasting binary ops; op is a binary_op opcode (opcodes.h, generated from native/kernels.json).
struct BinaryPlan {
  std::vector<int64_t> dims, sa, sb;
};
BinaryPlan plan_binary(const std::vector<int64_t>& ashape, const std::vector<int64_t>& bshape);
void binary(int op, const BinaryPlan& p, const float* a, const float* b, float* out);
// Comparisons with broadcasting to uint8 (tfjs bool); op is a compare_op opcode.
void compare(int op, const BinaryPlan& p, const float* a, const float* b, uint8_t* out);
void select(const uint8_t* cond, const float* t, const float* e, int64_t n, float* out);
// y[o, i] = scale * sum_r x[o, r, i]
void reduce_sum(const float* x, int64_t outer, int64_t red, int64_t inner, float scale, float* y);
void concat_rows(const std::vector<const float*>& ins, const std::vector<int64_t>& widths, int64_t outer, float* out);
void split_rows(const float* in, const std::vector<float*>& outs, const std::vector<int64_t>& widths, int64_t outer);

void softmax_rows(const float* x, int64_t rows, int64_t n, float* y);
// op is a unary_op opcode; alpha is LeakyRelu's negative slope.
void unary(int op, const float* x, int64_t n, float alpha, float* y);
void transpose(const float* x, const std::vector<int64_t>& dims, const std::vector<int64_t>& perm, float* y);

// Fused instance norm over S for x[B, S, C] with per-channel affine; mean/rstd are [B, C].
// alpha: negative slope of a fused LeakyReLU after the affine (1 = no activation).
void instance_norm_fwd(const float* x, int64_t B, int64_t S, int64_t C, const float* gamma, const float* beta,
                       float eps, float alpha, float* y, float* mean, float* rstd);
void instance_norm_bwd(const float* x, const float* dy, int64_t B, int64_t S, int64_t C, const float* gamma,
                       const float* beta, const float* mean, const float* rstd, float alpha, float* dx, float* dgamma,
                       float* dbeta);

// Sparse instance norm (SparK) of x[B, S, C] with mask[B, S] (!= 0 visible): statistics over visible voxels only
// (count clamped to 1), output and dx 0 at masked voxels; mean/rstd are [B, C]; alpha as above.
void sparse_instance_norm_fwd(const float* x, const float* mask, int64_t B, int64_t S, int64_t C, const float* gamma,
                              const float* beta, float eps, float alpha, float* y, float* mean, float* rstd);
void sparse_instance_norm_bwd(const float* x, const float* dy, const float* mask, int64_t B, int64_t S, int64_t C,
                              const float* gamma, const float* beta, const float* mean, const float* rstd, float alpha,
                              float* dx, float* dgamma, float* dbeta);

// Layer norm over the innermost axis of x[R, C], per-channel affine; mean/rstd are [R].
void layer_norm_fwd(const float* x, int64_t R, int64_t C, const float* gamma, const float* beta, float eps, float* y,
                    float* mean, float* rstd);
void layer_norm_bwd(const float* x, const float* dy, int64_t R, int64_t C, const float* gamma, const float* mean,
                    const float* rstd, float* dx, float* dgamma, float* dbeta);

// Fused softmax attention over [BH, T, D] queries and [BH, S, D] keys/values: o [BH, T, D], lse [BH, T].
void attention_fwd(const float* q, const float* k, const float* v, int64_t BH, int64_t T, int64_t S, int64_t D,
                   float scale, float* o, float* lse);
void attention_bwd(const float* q, const float* k, const float* v, const float* o, const float* lse, const float* dout,
                   int64_t BH, int64_t T, int64_t S, int64_t D, float scale, float* dq, float* dk, float* dv);

void copy_block(const float* src, const std::vector<int64_t>& sd, const std::vector<int64_t>& soff, float* dst,
                const std::vector<int64_t>& dd, const std::vector<int64_t>& doff, const std::vector<int64_t>& size);

// Average pooling NDHWC with 'valid' windows; g = {N, D, H, W, C, kd, kh, kw, sd, sh, sw, OD, OH, OW}.
void avgpool3d(const int64_t* g, const float* x, float* y);
void avgpool3d_grad(const int64_t* g, const float* dy, float* dx);

// Runtime configuration.
struct Options {
  bool use_dnnl = true;  // use oneDNN convolutions when compiled in
  // Use the linked BLAS for GEMM. Off by default: OpenBLAS's own pthread pool fights oneDNN's OpenMP pool for the
  // cores (measured 3x slower convolutions while both pools spin); the own GEMM shares the OpenMP pool.
  bool use_blas = false;
  // Use oneDNN's sgemm (JIT, AVX-512 where present) for GEMM when compiled in and use_dnnl is on;
  // SSL3D_NATIVE_GEMM=own keeps oneDNN convolutions but selects the addon's own GEMM.
  bool gemm_dnnl = true;
};
Options& options();
bool have_dnnl();
bool have_blas();
const char* own_gemm_isa();
int num_threads();
void set_num_threads(int n);

}  // namespace ssl3d
