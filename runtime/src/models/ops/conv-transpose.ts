/**
 * ConvTranspose3d with kernel = stride = f (PyTorch semantics, f=2 in the U-Net decoder, 2 in PatchDecode):
 * one plain matMul [N,Cin]×[Cin,f³·Cout] followed by a depth-to-space transpose. `tf.conv3dTranspose` has no
 * gradient on any backend and runs the broken wasm Conv3DBackpropInputV2 kernel (docs/performance.md).
 * Weight layout [f,f,f,Cout,Cin] (PyTorch [Cin,Cout,f,f,f] → permute (2,3,4,1,0)).
 */
import * as tf from "@tensorflow/tfjs";
import { addBias, mm } from "./linear.js";

export function convTranspose3d(x: tf.Tensor5D, w: tf.Tensor5D, bias?: tf.Tensor1D): tf.Tensor5D {
  const [b, d, h, wd, ci] = x.shape;
  const f = w.shape[0];
  const co = w.shape[3];
  if (w.shape[1] !== f || w.shape[2] !== f || w.shape[4] !== ci)
    throw new Error(`convTranspose3d: kernel ${w.shape.join("x")} does not fit input ${x.shape.join("x")}`);
  return tf.tidy(() => {
    const wm = tf.reshape<tf.Rank.R2>(tf.transpose(w, [4, 0, 1, 2, 3]), [ci, f * f * f * co]);
    const y = mm(tf.reshape(x, [b * d * h * wd, ci]), wm); // [N, (i,j,k,co)]
    const y8 = tf.reshape(y, [b, d, h, wd, f, f, f, co]);
    const ys = tf.reshape<tf.Rank.R5>(tf.transpose(y8, [0, 1, 4, 2, 5, 3, 6, 7]), [b, d * f, h * f, wd * f, co]);
    return bias === undefined ? ys : addBias(ys, bias);
  });
}
