/**
 * Per-channel z-score over the whole (cropped) volume (nnssl `z_score_normalization` in
 * `src/nnssl/preprocessing/normalization/normalization_schemes.py` with `use_mask_for_norm = false`):
 * `x <- (x - mean) / max(std, 1e-8)`, population std. Sums in float64.
 */
export function zscoreInPlace(data: Float32Array, channels: number): { mean: number[]; std: number[] } {
  const n = data.length / channels;
  const means: number[] = [];
  const stds: number[] = [];
  for (let c = 0; c < channels; c++) {
    const v = data.subarray(c * n, (c + 1) * n);
    let s = 0;
    for (let i = 0; i < n; i++) s += v[i]!;
    const mean = s / n;
    let ss = 0;
    for (let i = 0; i < n; i++) {
      const d = v[i]! - mean;
      ss += d * d;
    }
    const std = Math.sqrt(ss / n);
    const div = Math.max(std, 1e-8);
    for (let i = 0; i < n; i++) v[i] = (v[i]! - mean) / div;
    means.push(mean);
    stds.push(std);
  }
  return { mean: means, std: stds };
}
