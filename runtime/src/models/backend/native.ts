/**
 * ssl3d native CPU kernels: registers the optional C++ addon (`native/`, built by `npm install`) as the
 * implementation of the hot tfjs kernels on the `cpu` backend, under their standard kernel names. Models keep
 * calling plain tfjs ops (tf.conv3d and its autodiff, tf.matMul, ...); the engine dispatches to these kernels.
 *
 * The kernels are listed once, in `native/kernels.json` (name, family, addon function, opcode), from which the C++
 * opcode enums and `native/kernels.generated.ts` are generated. One module per family under `native/`: `conv`
 * (Conv3D and its backprops: oneDNN when built with it, else im2col + GEMM; 'valid' AvgPool3D), `matmul`
 * (BatchMatMul, _FusedMatMul: oneDNN's sgemm, the own SIMD GEMM, or OpenBLAS on request), `elementwise`
 * (broadcasting binary ops, comparisons, Select, unary ops), `reduce` (Sum/Mean over contiguous axes, Softmax),
 * `layout` (Concat, SplitV, Transpose, Slice, PadV2) and `fused` (instance, sparse instance and layer norms, exact
 * attention, with their gradients). All float32; other dtypes and shapes fall through to the stock kernels. Tensors
 * are read and written in place through the cpu backend's data storage (no copies). Environment: `native/addon.ts`.
 */
export { nativeAddon, nativeInfo, setNativeOptions, type NativeAddon, type NativeInfo } from "./native/addon.js";
export { FUSED_KERNEL_NAMES, NATIVE_KERNEL_NAMES } from "./native/kernels.generated.js";
export {
  fusedAttentionAvailable,
  fusedSparseNormAvailable,
  loadNativeKernels,
  nativeKernels,
  nativeKernelsLoaded,
  unloadNativeKernels,
} from "./native/registry.js";
export { attentionFused, instanceNormFused, layerNormFused, sparseInstanceNormFused } from "./native/fused-ops.js";
