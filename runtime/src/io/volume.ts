/**
 * The in-memory volume every stage exchanges.
 *
 * Memory layout is the NIfTI file order: x varies fastest, then y, then z, then channel (t). `shape` is given in
 * NIfTI/nibabel order `[nx, ny, nz]` and `spacing` likewise `[sx, sy, sz]` (millimetres, absolute values).
 * Seen as a C-order (row-major) array, the same memory is `(C, nz, ny, nx)`: that is exactly the NumPy array that
 * nnU-Net/nnssl's SimpleITK reader produces, with spacing reversed to `(sz, sy, sx)`. Preprocessing works in that
 * "array axis" view (see `arrayView`), so its numbers line up with the reference implementation.
 *
 * `affine` is the 4x4 voxel-to-world (RAS+ mm, NIfTI convention) matrix, row-major, 16 numbers.
 */
export type Vec3 = readonly [number, number, number];
export type Mat4 = readonly number[]; // length 16, row-major

export type NiftiDatatypeName = "uint8" | "int8" | "int16" | "uint16" | "int32" | "uint32" | "float32" | "float64";

export interface Volume {
  readonly data: Float32Array;
  /** NIfTI order [nx, ny, nz]. */
  readonly shape: Vec3;
  /** Number of channels (4th NIfTI dimension); 1 for 3D files. */
  readonly channels: number;
  /** NIfTI order [sx, sy, sz], mm. */
  readonly spacing: Vec3;
  readonly affine: Mat4;
  /** Datatype in the file the volume was read from (data is always float32 in memory, scaling applied). */
  readonly datatype: NiftiDatatypeName;
}

/** Shape of the C-order array view `(nz, ny, nx)` and the matching spacing `(sz, sy, sx)`. */
export function arrayView(v: Pick<Volume, "shape" | "spacing">): { shape: Vec3; spacing: Vec3 } {
  return {
    shape: [v.shape[2], v.shape[1], v.shape[0]],
    spacing: [v.spacing[2], v.spacing[1], v.spacing[0]],
  };
}
