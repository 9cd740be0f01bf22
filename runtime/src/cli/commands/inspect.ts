/**
 * `ssl3d inspect FILE [--json]`: what a NIfTI file holds, as ssl3d reads it. Any valid header is described, also
 * one beyond the load limits (a long 4-D series, a huge volume): then the voxels are not loaded and the intensity
 * statistics are left out, with a note saying which limit applies.
 */
import type { Command } from "commander";
import { limit } from "../../config/limits.js";
import { orientationCode, readNifti, readNiftiHeader, type NiftiHeader } from "../../io/nifti.js";
import type { Volume } from "../../io/volume.js";
import type { CliCommand } from "../command.js";

export interface Inspection {
  shape: number[];
  spacing: number[];
  datatype: string;
  affine: number[][];
  orientation: string;
  /** null when the voxels were not loaded (see `note`). */
  min: number | null;
  max: number | null;
  mean: number | null;
  note?: string;
}

/** Intensity statistics over finite voxels (NaN/Inf are skipped; an all-non-finite volume gives NaN). */
export function intensityStats(data: Float32Array): { min: number; max: number; mean: number } {
  let min = Infinity,
    max = -Infinity,
    sum = 0,
    n = 0;
  for (const v of data) {
    if (!Number.isFinite(v)) continue;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    n++;
  }
  return n === 0 ? { min: Number.NaN, max: Number.NaN, mean: Number.NaN } : { min, max, mean: sum / n };
}

export function inspectVolume(v: Volume): Inspection {
  const affine = [0, 1, 2, 3].map((r) => v.affine.slice(4 * r, 4 * r + 4));
  return {
    shape: v.channels > 1 ? [...v.shape, v.channels] : [...v.shape],
    spacing: [...v.spacing],
    datatype: v.datatype,
    affine,
    orientation: orientationCode(v.affine),
    ...intensityStats(v.data),
  };
}

/** Why the voxels of a header beyond the load limits are not read, or undefined when they can be. */
export function beyondLoadLimits(h: NiftiHeader): string | undefined {
  const voxels = h.shape[0] * h.shape[1] * h.shape[2] * h.channels;
  const ndim = h.dim[0]!;
  if (h.dim.slice(5, ndim + 1).some((d) => d > 1)) return `${ndim}-D image: not loaded (ssl3d reads at most 4-D)`;
  if (h.channels > limit("channels"))
    return `${h.channels} volumes in the 4th dimension: a series, not loaded (ssl3d loads at most ${limit("channels")} as channels, SSL3D_MAX_CHANNELS)`;
  if (voxels > limit("voxels")) return `${voxels} voxels: not loaded (limit SSL3D_MAX_VOXELS = ${limit("voxels")})`;
  if (h.voxOffset > limit("voxOffset"))
    return `vox_offset ${h.voxOffset}: not loaded (limit SSL3D_MAX_VOX_OFFSET = ${limit("voxOffset")})`;
  return undefined;
}

/** The inspection of a header alone (no voxel statistics). */
export function inspectHeader(h: NiftiHeader, note: string): Inspection {
  const affine = [0, 1, 2, 3].map((r) => h.affine.slice(4 * r, 4 * r + 4));
  return {
    shape: h.dim.slice(1, Math.max(4, h.dim[0]! + 1)),
    spacing: [...h.spacing],
    datatype: h.datatype,
    affine,
    orientation: orientationCode(h.affine),
    min: null,
    max: null,
    mean: null,
    note,
  };
}

function fmt(x: number | null): string {
  if (x === null) return "-";
  return Number.isInteger(x) ? String(x) : x.toPrecision(6).replace(/\.?0+$/, "");
}

export function formatInspection(file: string, i: Inspection): string {
  const rows = i.affine.map((r) => `  [${r.map((x) => fmt(x).padStart(11)).join(" ")} ]`);
  return [
    `file:        ${file}`,
    `shape:       ${i.shape.join(" x ")}`,
    `spacing:     ${i.spacing.map(fmt).join(" x ")} mm`,
    `datatype:    ${i.datatype}`,
    `orientation: ${i.orientation}`,
    i.note === undefined
      ? `intensity:   min ${fmt(i.min)}  max ${fmt(i.max)}  mean ${fmt(i.mean)}`
      : `intensity:   not computed (${i.note})`,
    "affine:",
    ...rows,
  ].join("\n");
}

export const inspectCommand: CliCommand = {
  name: "inspect",
  register(program: Command): void {
    program
      .command("inspect")
      .description("print shape, spacing, datatype, affine, orientation and intensity range of a NIfTI file")
      .argument("<file>", ".nii or .nii.gz file")
      .option("--json", "print one JSON object instead of text")
      .action(async (file: string, opts: { json?: boolean }) => {
        const h = await readNiftiHeader(file, { limits: false });
        const note = beyondLoadLimits(h);
        const info = note === undefined ? inspectVolume(await readNifti(file)) : inspectHeader(h, note);
        process.stdout.write(opts.json === true ? JSON.stringify(info) + "\n" : formatInspection(file, info) + "\n");
      });
  },
};
