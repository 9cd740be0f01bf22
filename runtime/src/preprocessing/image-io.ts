/**
 * Reading one collection image (and its masks) into the C-order "array axes" view the preprocessing core works
 * on: the NIfTI memory (x fastest) seen as (C, z, y, x), spacing (sz, sy, sx) — what nnU-Net's SimpleITK reader
 * gives. Every failure becomes a DataError naming the file.
 */
import type { IndependentImage } from "../config/collection.js";
import { DataError, Ssl3dError } from "../errors.js";
import { readNifti } from "../io/nifti.js";
import { arrayView, type Mat4, type Volume } from "../io/volume.js";
import type { ArrayVolume, CaseInput, CaseMasks } from "./preprocess-case.js";

export async function readVolume(file: string): Promise<Volume> {
  try {
    return await readNifti(file);
  } catch (err) {
    if (err instanceof Ssl3dError && err.file !== undefined) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    throw new DataError(`cannot read image: ${reason}`, { file, cause: err });
  }
}

export function toCaseInput(v: Volume): CaseInput {
  const av = arrayView(v);
  return { data: v.data, channels: v.channels, shape: av.shape, spacing: av.spacing };
}

function toArrayVolume(v: Volume): ArrayVolume {
  const av = arrayView(v);
  return { data: v.data, channels: v.channels, shape: av.shape };
}

export interface LoadedImage {
  readonly input: CaseInput;
  readonly masks: CaseMasks;
  readonly affine: Mat4;
  readonly datatype: string;
}

export async function loadImage(img: IndependentImage): Promise<LoadedImage> {
  const v = await readVolume(img.image_path);
  const m = img.associated_masks;
  const anon = m.anonymization_mask === null ? undefined : toArrayVolume(await readVolume(m.anonymization_mask));
  const anat = m.anatomy_mask === null ? undefined : toArrayVolume(await readVolume(m.anatomy_mask));
  const input = toCaseInput(v);
  for (const [name, mv, file] of [
    ["anonymization", anon, m.anonymization_mask],
    ["anatomy", anat, m.anatomy_mask],
  ] as const) {
    if (
      mv !== undefined &&
      (mv.shape[0] !== input.shape[0] || mv.shape[1] !== input.shape[1] || mv.shape[2] !== input.shape[2])
    ) {
      throw new DataError(
        `${name} mask grid [${[...mv.shape].reverse().join(", ")}] differs from the image grid [${[...input.shape].reverse().join(", ")}] (${img.image_path})`,
        { file: file ?? undefined },
      );
    }
  }
  return { input, masks: { anon, anat }, affine: v.affine, datatype: v.datatype };
}

/**
 * SimpleITK's view of the geometry (upstream's `sitk_stuff`): spacing (x, y, z), origin and direction in LPS,
 * derived from the NIfTI voxel-to-RAS affine.
 */
export function sitkStuff(
  affine: Mat4,
  spacingXyz: readonly number[],
): { spacing: number[]; origin: number[]; direction: number[] } {
  const flip = [-1, -1, 1];
  const origin = [0, 1, 2].map((r) => flip[r]! * affine[4 * r + 3]!);
  const direction: number[] = [];
  for (let r = 0; r < 3; r++)
    for (let c = 0; c < 3; c++) direction.push((flip[r]! * affine[4 * r + c]!) / (spacingXyz[c]! || 1));
  return { spacing: [...spacingXyz], origin, direction };
}
