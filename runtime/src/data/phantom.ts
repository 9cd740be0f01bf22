/**
 * Seeded phantom MRI head volumes for tests and the demo: no patient data, kilobytes to a few megabytes each.
 *
 * A head is built in world (RAS, mm) coordinates from nested ellipsoids (scalp, skull, CSF, grey matter with a
 * folded boundary, white matter, two ventricles), so the anatomy stays put in the world while the voxel grid
 * varies: shape, anisotropic spacing, axis order/flips (orientation code) and a small oblique rotation differ per
 * seed. Contrast follows the modality (T1w: WM > GM > CSF; T2w: CSF > GM > WM; FLAIR: CSF dark), multiplied by a
 * smooth bias field, with Rician noise (magnitude of a complex Gaussian). Optional masks: an anonymization
 * ("deface") mask, 1 where the face was removed (those voxels are 0 in the image), and an anatomy mask, 1 inside
 * the brain.
 */
import { join } from "node:path";
import { orientationCode, writeNifti } from "../io/nifti.js";
import type { Mat4, Vec3, Volume } from "../io/volume.js";

/** Small, fast, seedable PRNG (mulberry32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rng: () => number): number {
  const u = Math.max(rng(), 1e-12),
    v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export type PhantomModality = "T1w" | "T2w" | "FLAIR";

/** Tissue intensities (0..1) per modality: scalp, skull, csf, gm, wm. */
const CONTRAST: Record<PhantomModality, { scalp: number; skull: number; csf: number; gm: number; wm: number }> = {
  T1w: { scalp: 0.55, skull: 0.08, csf: 0.15, gm: 0.45, wm: 0.72 },
  T2w: { scalp: 0.4, skull: 0.05, csf: 0.95, gm: 0.6, wm: 0.38 },
  FLAIR: { scalp: 0.45, skull: 0.05, csf: 0.08, gm: 0.62, wm: 0.45 },
};

/** Orientation codes the generator draws from (voxel axis i points towards letter i). */
const ORIENTATIONS = ["RAS", "LAS", "LPS", "RPI", "LIP", "ASR", "PIR"] as const;
const AXIS: Record<string, [number, number]> = { R: [0, 1], L: [0, -1], A: [1, 1], P: [1, -1], S: [2, 1], I: [2, -1] };

export interface PhantomOptions {
  readonly seed: number;
  readonly modality?: PhantomModality;
  /** Fixed grid; drawn from the seed when omitted. */
  readonly shape?: Vec3;
  readonly spacing?: Vec3;
  /** Orientation code such as "RAS" or "LPS"; drawn from the seed when omitted. */
  readonly orientation?: string;
  /** Use this voxel-to-world affine (then `orientation`, `rotationDeg` and `spacing` only label the volume). */
  readonly affine?: Mat4;
  /** Oblique rotation about the S axis in degrees; drawn in [-10, 10] when omitted. */
  readonly rotationDeg?: number;
  /** Noise standard deviation relative to the WM intensity (default 0.03). */
  readonly noise?: number;
  /** Peak-to-peak amplitude of the multiplicative bias field (default 0.3). */
  readonly bias?: number;
  /** Size range of drawn shapes (voxels per axis), default [24, 48]. */
  readonly sizeRange?: readonly [number, number];
  readonly anonymizationMask?: boolean;
  readonly anatomyMask?: boolean;
  /** Intensity scale of the output (default 1000). */
  readonly scale?: number;
}

export interface Phantom {
  readonly volume: Volume;
  readonly orientation: string;
  readonly anonymizationMask?: Float32Array;
  readonly anatomyMask?: Float32Array;
}

function directionMatrix(code: string): number[][] {
  // columns = voxel axes, rows = world axes (R, A, S)
  const m = [
    [0, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
  ];
  if (code.length !== 3) throw new Error(`orientation code "${code}" must have 3 letters`);
  [0, 1, 2].forEach((j) => {
    const letter = code.charAt(j);
    const a = AXIS[letter];
    if (a === undefined) throw new Error(`bad orientation letter ${letter}`);
    m[a[0]]![j] = a[1];
  });
  return m;
}

/** Generate one phantom head volume (deterministic for the options). */
export function generatePhantom(o: PhantomOptions): Phantom {
  const rng = mulberry32(o.seed * 2654435761 + 12345);
  const [lo, hi] = o.sizeRange ?? [24, 48];
  const draw = (a: number, b: number): number => a + rng() * (b - a);
  const shape: Vec3 = o.shape ?? ([0, 1, 2].map(() => Math.round(draw(lo, hi))) as unknown as Vec3);
  const spacing: Vec3 =
    o.spacing ?? ([0, 1, 2].map(() => [0.8, 1, 1.2, 1.5, 2, 3][Math.floor(rng() * 6)]!) as unknown as Vec3);
  const orientation = o.orientation ?? ORIENTATIONS[Math.floor(rng() * ORIENTATIONS.length)]!;
  const rot = ((o.rotationDeg ?? draw(-10, 10)) * Math.PI) / 180;
  const modality = o.modality ?? "T1w";
  const noise = o.noise ?? 0.03;
  const biasAmp = o.bias ?? 0.3;
  const scale = o.scale ?? 1000;

  // affine = Rz(rot) * D * diag(spacing), origin so that the volume centre is at world (0, 0, 0) + jitter
  const centre = shape.map((n) => (n - 1) / 2);
  let affine: Mat4;
  if (o.affine !== undefined) {
    affine = o.affine;
  } else {
    const D = directionMatrix(orientation);
    const c = Math.cos(rot),
      s = Math.sin(rot);
    const Rz = [
      [c, -s, 0],
      [s, c, 0],
      [0, 0, 1],
    ];
    const A = [0, 1, 2].map((r) =>
      [0, 1, 2].map((j) => (Rz[r]![0]! * D[0]![j]! + Rz[r]![1]! * D[1]![j]! + Rz[r]![2]! * D[2]![j]!) * spacing[j]!),
    );
    const jitter = [draw(-5, 5), draw(-5, 5), draw(-5, 5)];
    const tt = [0, 1, 2].map(
      (r) => jitter[r]! - (A[r]![0]! * centre[0]! + A[r]![1]! * centre[1]! + A[r]![2]! * centre[2]!),
    );
    affine = [...A[0]!, tt[0]!, ...A[1]!, tt[1]!, ...A[2]!, tt[2]!, 0, 0, 0, 1];
  }
  const M = [0, 1, 2].map((r) => [0, 1, 2].map((j) => affine[4 * r + j]!));
  const t = [0, 1, 2].map((r) => affine[4 * r + 3]!);
  // the head is centred on the world position of the volume centre
  const head = [0, 1, 2].map((r) => M[r]![0]! * centre[0]! + M[r]![1]! * centre[1]! + M[r]![2]! * centre[2]! + t[r]!);

  // world extent per world axis (the axis each voxel axis is closest to) → head radii that fit the field of view
  const extent = [0, 0, 0];
  for (let j = 0; j < 3; j++) {
    const col = [0, 1, 2].map((r) => Math.abs(M[r]![j]!));
    const r = col.indexOf(Math.max(...col));
    extent[r] = shape[j]! * Math.hypot(col[0]!, col[1]!, col[2]!);
  }
  const R = extent.map((e) => 0.4 * e);
  const folds = [draw(3, 6), draw(3, 6), draw(0, 2 * Math.PI)];
  const biasCoef = [0, 1, 2, 3].map(() => draw(-1, 1));
  const con = CONTRAST[modality];

  const n = shape[0] * shape[1] * shape[2];
  const data = new Float32Array(n);
  const anon = o.anonymizationMask === true ? new Float32Array(n) : undefined;
  const anat = o.anatomyMask === true ? new Float32Array(n) : undefined;
  let idx = 0;
  for (let k = 0; k < shape[2]; k++) {
    for (let j = 0; j < shape[1]; j++) {
      for (let i = 0; i < shape[0]; i++, idx++) {
        const w = [0, 1, 2].map((r) => M[r]![0]! * i + M[r]![1]! * j + M[r]![2]! * k + t[r]! - head[r]!);
        const x = w[0]! / R[0]!,
          y = w[1]! / R[1]!,
          z = w[2]! / R[2]!;
        const r = Math.hypot(x, y, z);
        const fold = 0.035 * Math.sin(folds[0]! * Math.atan2(y, x) + folds[2]!) * Math.cos(folds[1]! * z * 3);
        let v = 0;
        let brain = false;
        if (r < 1) v = con.scalp;
        if (r < 0.9) v = con.skull;
        if (r < 0.84) {
          v = con.csf;
          brain = true;
        }
        if (r < 0.8 + fold) v = con.gm;
        if (r < 0.6 + fold) v = con.wm;
        for (const sx of [-1, 1]) {
          const q = Math.hypot((x - sx * 0.12) / 0.08, (y - 0.02) / 0.28, (z - 0.1) / 0.12);
          if (q < 1) v = con.csf;
        }
        const face = r < 1 && y > 0.55 && z < 0.05;
        if (anon !== undefined && face) {
          anon[idx] = 1;
          v = 0;
        }
        if (anat !== undefined && brain) anat[idx] = 1;
        const bias =
          1 + (biasAmp / 2) * Math.tanh(biasCoef[0]! * x + biasCoef[1]! * y + biasCoef[2]! * z + biasCoef[3]! * x * y);
        const sigma = noise * con.wm;
        const re = v * bias + sigma * gaussian(rng),
          im = sigma * gaussian(rng);
        data[idx] = Math.hypot(re, im) * scale;
      }
    }
  }
  return {
    volume: { data, shape, channels: 1, spacing, affine, datatype: "float32" },
    orientation: orientationCode(affine),
    ...(anon === undefined ? {} : { anonymizationMask: anon }),
    ...(anat === undefined ? {} : { anatomyMask: anat }),
  };
}

export interface PhantomBidsOptions {
  readonly seed?: number;
  readonly subjects?: number;
  /** Sessions per subject; 0 writes no `ses-*` level. */
  readonly sessions?: number;
  readonly modalities?: readonly PhantomModality[];
  /** Write `*_desc-anonmask` / `*_desc-anatmask` masks next to every image. */
  readonly masks?: boolean;
  readonly sizeRange?: readonly [number, number];
}

/**
 * Write a small BIDS tree `sub-XX/[ses-YY/]anat/sub-XX[_ses-YY]_<modality>.nii.gz` (int16, like most scanners'
 * exports) with optional masks named by the converter convention (docs/converters.md). Returns the image files.
 */
export async function writePhantomBids(dir: string, o: PhantomBidsOptions = {}): Promise<string[]> {
  const files: string[] = [];
  const seed0 = o.seed ?? 1;
  const subjects = o.subjects ?? 2;
  const sessions = o.sessions ?? 1;
  const modalities = o.modalities ?? ["T1w", "T2w"];
  let n = 0;
  for (let s = 1; s <= subjects; s++) {
    const sub = `sub-${String(s).padStart(2, "0")}`;
    const sess = sessions === 0 ? [undefined] : Array.from({ length: sessions }, (_, i) => `ses-${i + 1}`);
    for (const ses of sess) {
      const anat = ses === undefined ? join(dir, sub, "anat") : join(dir, sub, ses, "anat");
      const prefix = ses === undefined ? sub : `${sub}_${ses}`;
      // one grid per session: all modalities of a session share shape, spacing and orientation
      const grid = generatePhantom({ seed: seed0 * 1000 + n++, sizeRange: o.sizeRange ?? [20, 32] }).volume;
      for (const modality of modalities) {
        const p = generatePhantom({
          seed: seed0 * 1000 + n++,
          modality,
          shape: grid.shape,
          spacing: grid.spacing,
          affine: grid.affine,
          anonymizationMask: o.masks === true,
          anatomyMask: o.masks === true,
        });
        const vol = p.volume;
        const base = join(anat, `${prefix}_${modality}`);
        await writeNifti(
          `${base}.nii.gz`,
          { ...vol, data: vol.data.map((v) => Math.min(32767, Math.round(v))) },
          "int16",
        );
        files.push(`${base}.nii.gz`);
        if (p.anonymizationMask !== undefined)
          await writeNifti(`${base}_desc-anonmask.nii.gz`, { ...vol, data: p.anonymizationMask }, "uint8");
        if (p.anatomyMask !== undefined)
          await writeNifti(`${base}_desc-anatmask.nii.gz`, { ...vol, data: p.anatomyMask }, "uint8");
      }
    }
  }
  return files;
}
