/** `ssl3d inspect FILE [--json]`: what a NIfTI file holds, as ssl3d reads it. */
import type { Command } from "commander";
import { orientationCode, readNifti } from "../../io/nifti.js";
import type { Volume } from "../../io/volume.js";
import type { CliCommand } from "../command.js";

export interface Inspection {
  shape: number[];
  spacing: number[];
  datatype: string;
  affine: number[][];
  orientation: string;
  min: number;
  max: number;
  mean: number;
}

/** Intensity statistics over finite voxels (NaN/Inf are skipped; an all-non-finite volume gives NaN). */
export function intensityStats(data: Float32Array): { min: number; max: number; mean: number } {
  let min = Infinity, max = -Infinity, sum = 0, n = 0;
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

function fmt(x: number): string {
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
    `intensity:   min ${fmt(i.min)}  max ${fmt(i.max)}  mean ${fmt(i.mean)}`,
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
        const info = inspectVolume(await readNifti(file));
        process.stdout.write(opts.json === true ? JSON.stringify(info) + "\n" : formatInspection(file, info) + "\n");
      });
  },
};
