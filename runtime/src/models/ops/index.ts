/** The op layer every architecture is built from (backend-aware, custom gradients where tfjs is slow or wrong). */
export { addLeakyRelu, leakyRelu, gelu, silu } from "./activations.js";
export { multiHeadAttention, applyRope, rotatePairs, type Rope } from "./attention.js";
export { concatChannels } from "./concat.js";
export { conv3d, convImpl, setConvImpl, type ConvImpl, type Conv3dOptions } from "./conv3d.js";
export { convTranspose3d } from "./conv-transpose.js";
export { dropPath } from "./drop-path.js";
export { addBias, colSum, linear, mm } from "./linear.js";
export { instanceNorm, instanceNormLeakyRelu, layerNorm } from "./norm.js";
export { sparseInstanceNorm, sparseInstanceNormLeakyRelu } from "./sparse-norm.js";
export { upsampleLinear2x, upsampleTrilinear2x } from "./upsample.js";
