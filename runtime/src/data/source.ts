/**
 * What the loader reads: preprocessed images (entries of `listPreprocessedImages`, preprocess helper) and a reader
 * for their Zarr arrays. The reader is loaded by module URL inside each worker thread, so workers open volumes
 * themselves; the default is the project's Zarr reader `runtime/src/io/zarr-volume.ts`.
 */

/** One preprocessed image (same fields as `listPreprocessedImages` entries). */
export interface TrainingImage {
  readonly uniqueId: string;
  readonly uniqueSubjectId: string;
  readonly modality: string;
  readonly datasetIndex?: string;
  /** Zarr array directory of the image, C-order (C, X, Y, Z). */
  readonly image: string;
  readonly anonMask?: string | undefined;
  readonly anatMask?: string | undefined;
}

export interface VolumeReader {
  readonly shape: readonly number[];
  /** C-order region [start, start+size) of the (C, X, Y, Z) array; zero outside. */
  readRegion(start: number[], size: number[]): Promise<Float32Array>;
}

/** A module the loader imports by URL: must export `openZarrVolume(dir)`. */
export interface VolumeReaderModule {
  openZarrVolume(dir: string): Promise<VolumeReader>;
}

export const DEFAULT_READER_MODULE = new URL("../io/zarr-volume.js", import.meta.url).href;

export interface ImageFilter {
  /** Keep only these modalities (e.g. ["T1w", "T2w", "FLAIR"]); undefined keeps all. */
  readonly modalities?: readonly string[] | undefined;
}

export function filterImages(
  images: readonly TrainingImage[],
  subjects: ReadonlySet<string>,
  f: ImageFilter = {},
): TrainingImage[] {
  const mods = f.modalities === undefined ? undefined : new Set(f.modalities);
  return images.filter((im) => subjects.has(im.uniqueSubjectId) && (mods === undefined || mods.has(im.modality)));
}
