"""Reference preprocessing with the upstream nnU-Net v2 functions (PyPI `nnunetv2`), for parity tests and the
preprocessing benchmark. Reads NIfTI with nibabel in SimpleITK's array order (C, z, y, x), then runs exactly
nnssl's DefaultPreprocessor steps: transpose -> crop_to_nonzero -> compute_new_shape -> ZScoreNormalization ->
resample_data_or_seg_to_shape(order 3, separate-z rule).

  python nnunet_reference.py preprocess IN.nii.gz OUTDIR --target 1,1,1|none --transpose 0,1,2 [--mask M.nii.gz]
  python nnunet_reference.py make-aniso IN.nii.gz OUT.nii.gz --axis 0 --factor 4
  python nnunet_reference.py make-mask IN.nii.gz OUT.nii.gz --percentile 50      (1 where above the median)
  python nnunet_reference.py bench --target 1,1,1 --np N IN.nii.gz [IN2 ...]   (prints JSON timings)
"""
import argparse
import json
import sys
import time
from multiprocessing import get_context

import nibabel as nib
import numpy as np


def read_like_sitk(path):
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 3:
        data = data[..., None]
    # nibabel (x, y, z, c) -> SimpleITK/numpy (c, z, y, x)
    arr = np.ascontiguousarray(data.transpose(3, 2, 1, 0))
    spacing = [float(abs(s)) for s in img.header.get_zooms()[:3]][::-1]
    return arr, spacing


def preprocess_mask(arr, mask, spacing, target, transpose):
    """nnssl's mask path: transpose, crop with the image's non-zero box (0 outside -> -1), order-1 seg resampling."""
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape, resample_data_or_seg_to_shape

    perm = [0, *[i + 1 for i in transpose]]
    data = arr.transpose(perm)
    seg = mask.transpose(perm)
    spacing_t = [spacing[i] for i in transpose]
    data, seg, _ = crop_to_nonzero(data, seg)
    tgt = spacing_t if target is None else target
    new_shape = data.shape[1:] if target is None else compute_new_shape(data.shape[1:], spacing_t, tgt)
    return resample_data_or_seg_to_shape(seg, new_shape, spacing_t, tgt, is_seg=True, order=1, order_z=0,
                                         force_separate_z=None).astype(np.float32)


def preprocess(arr, spacing, target, transpose):
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import ZScoreNormalization
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape, resample_data_or_seg_to_shape

    data = arr.transpose([0, *[i + 1 for i in transpose]])
    spacing_t = [spacing[i] for i in transpose]
    data, seg, bbox = crop_to_nonzero(data, None)
    cropped_shape = data.shape[1:]
    tgt = spacing_t if target is None else target
    new_shape = cropped_shape if target is None else compute_new_shape(cropped_shape, spacing_t, tgt)
    for c in range(data.shape[0]):
        norm = ZScoreNormalization(use_mask_for_norm=False, intensityproperties={})
        data[c] = norm.run(data[c], seg[0])
    data = resample_data_or_seg_to_shape(data, new_shape, spacing_t, tgt, is_seg=False, order=3, order_z=0,
                                         force_separate_z=None)
    return data.astype(np.float32), [list(map(int, b)) for b in bbox], [int(s) for s in cropped_shape]


def _blosc2_params(shape):
    # nnssl's spec'd result for a 160^3 patch: blocks (C,16,16,16), chunks (C,80,64,64), capped at the image
    c = shape[0]
    blocks = (c, *[min(16, s) for s in shape[1:]])
    chunks = (c, *[min(k, s) for k, s in zip((80, 64, 64), shape[1:])])
    return blocks, chunks


def _bench_one(job):
    path, target, save, idx = job
    arr, spacing = read_like_sitk(path)
    out, _, _ = preprocess(arr, spacing, target, [0, 1, 2])
    if save:
        import os
        import pickle
        import blosc2
        blosc2.set_nthreads(1)
        blocks, chunks = _blosc2_params(out.shape)
        f = os.path.join(save, f"img{idx}.b2nd")
        if os.path.exists(f):
            os.remove(f)
        blosc2.asarray(np.ascontiguousarray(out), urlpath=f, chunks=chunks, blocks=blocks,
                       cparams={"codec": blosc2.Codec.ZSTD, "clevel": 8, "nthreads": 1})
        with open(os.path.join(save, f"img{idx}.pkl"), "wb") as fh:
            pickle.dump({"spacing": spacing}, fh)
    return int(out.size)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("preprocess")
    p.add_argument("input")
    p.add_argument("outdir")
    p.add_argument("--target", default="1,1,1")
    p.add_argument("--transpose", default="0,1,2")
    p.add_argument("--mask", default=None, help="also preprocess this mask (written to mask_output.raw)")
    a = sub.add_parser("make-aniso")
    a.add_argument("input")
    a.add_argument("output")
    a.add_argument("--axis", type=int, default=0)
    a.add_argument("--factor", type=float, default=4.0)
    mm = sub.add_parser("make-mask")
    mm.add_argument("input")
    mm.add_argument("output")
    mm.add_argument("--percentile", type=float, default=50.0)
    b = sub.add_parser("bench")
    b.add_argument("inputs", nargs="+")
    b.add_argument("--target", default="1,1,1")
    b.add_argument("--np", type=int, default=1)
    b.add_argument("--repeat", type=int, default=1)
    b.add_argument("--save", default=None, help="also write blosc2 .b2nd + .pkl like nnssl (zstd clevel 8)")
    args = ap.parse_args()

    if args.cmd == "preprocess":
        import os
        arr, spacing = read_like_sitk(args.input)
        target = None if args.target == "none" else [float(x) for x in args.target.split(",")]
        transpose = [int(x) for x in args.transpose.split(",")]
        os.makedirs(args.outdir, exist_ok=True)
        arr.tofile(os.path.join(args.outdir, "input.raw"))  # before: upstream normalises views of arr in place
        t0 = time.perf_counter()
        out, bbox, cropped = preprocess(arr.copy(), spacing, target, transpose)
        secs = time.perf_counter() - t0
        out.tofile(os.path.join(args.outdir, "output.raw"))
        if args.mask is not None:
            m, _ = read_like_sitk(args.mask)
            preprocess_mask(arr.copy(), m, spacing, target, transpose).tofile(os.path.join(args.outdir, "mask_output.raw"))
        meta = {"input_shape": list(arr.shape), "spacing": spacing, "output_shape": list(out.shape), "bbox": bbox,
                "cropped_shape": cropped, "seconds": secs}
        with open(os.path.join(args.outdir, "meta.json"), "w") as f:
            json.dump(meta, f)
    elif args.cmd == "make-aniso":
        from scipy.ndimage import zoom
        img = nib.load(args.input)
        data = np.asarray(img.dataobj, dtype=np.float32)
        z = [1.0, 1.0, 1.0]
        z[args.axis] = 1.0 / args.factor
        small = zoom(data, z, order=1, mode="nearest", grid_mode=True)
        aff = img.affine.copy()
        aff[:3, args.axis] *= data.shape[args.axis] / small.shape[args.axis]
        out = nib.Nifti1Image(np.round(small).astype(np.int16), aff)
        out.header.set_zooms(tuple(float(np.linalg.norm(aff[:3, i])) for i in range(3)))
        nib.save(out, args.output)
    elif args.cmd == "make-mask":
        img = nib.load(args.input)
        data = np.asarray(img.dataobj, dtype=np.float32)
        thr = np.percentile(data[data != 0], args.percentile)
        nib.save(nib.Nifti1Image((data > thr).astype(np.uint8), img.affine, img.header), args.output)
    elif args.cmd == "bench":
        target = None if args.target == "none" else [float(x) for x in args.target.split(",")]
        jobs = [(p, target, args.save, i) for i, p in enumerate(args.inputs * args.repeat)]
        t0 = time.perf_counter()
        if args.np > 1:
            with get_context("spawn").Pool(args.np) as pool:
                pool.map(_bench_one, jobs)
        else:
            for j in jobs:
                _bench_one(j)
        secs = time.perf_counter() - t0
        json.dump({"images": len(jobs), "seconds": secs}, sys.stdout)


if __name__ == "__main__":
    main()
