/**
 * A small raw dataset for preprocessing tests: phantom heads (runtime/src/data/phantom.ts) written as NIfTI under
 * `<root>/raw/DatasetNNN_Name/...` with a `pretrain_data.json` whose paths are `$nnssl_raw`-relative.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generatePhantom } from "../../runtime/src/data/phantom.js";
import { writeNifti } from "../../runtime/src/io/nifti.js";
import type { Vec3 } from "../../runtime/src/io/volume.js";

export interface TestDatasetOptions {
  readonly id?: number;
  readonly name?: string;
  readonly images?: number;
  readonly shape?: Vec3;
  /** Give every second image both masks. */
  readonly masks?: boolean;
  /** Indices of images written as truncated (unreadable) files. */
  readonly corrupt?: readonly number[];
}

export interface TestDataset {
  readonly datasetName: string;
  readonly env: NodeJS.ProcessEnv;
  readonly rawDir: string;
  readonly imageFiles: string[];
}

export async function makeTestDataset(root: string, o: TestDatasetOptions = {}): Promise<TestDataset> {
  const datasetName = `Dataset${String(o.id ?? 1).padStart(3, "0")}_${o.name ?? "Phantoms"}`;
  const raw = join(root, "raw");
  const rawDir = join(raw, datasetName);
  const n = o.images ?? 3;
  const subjects: Record<string, unknown> = {};
  const imageFiles: string[] = [];
  for (let i = 0; i < n; i++) {
    const sub = `sub-${String(i + 1).padStart(2, "0")}`;
    const dir = join(rawDir, "ds000001", sub, "anat");
    mkdirSync(dir, { recursive: true });
    const withMasks = o.masks === true && i % 2 === 0;
    const spacings: Vec3[] = [
      [1, 1, 1],
      [0.8, 0.8, 1.5],
      [1.2, 1.2, 4],
    ];
    const p = generatePhantom({
      seed: 100 + i,
      modality: "T1w",
      ...(o.shape === undefined ? {} : { shape: o.shape }),
      spacing: spacings[i % spacings.length]!,
      anonymizationMask: withMasks,
      anatomyMask: withMasks,
    });
    const file = join(dir, `${sub}_T1w.nii.gz`);
    const v = p.volume;
    await writeNifti(file, { ...v, data: v.data.map((x) => Math.min(32767, Math.round(x))) }, "int16");
    if (o.corrupt?.includes(i) === true) {
      writeFileSync(file, Buffer.from([0x1f, 0x8b, 0x08, 0x00, 1, 2, 3])); // a truncated gzip stream
    }
    imageFiles.push(file);
    const rel = (f: string): string => `$nnssl_raw/${datasetName}/${f.slice(rawDir.length + 1)}`;
    let masks: Record<string, string> | null = null;
    if (withMasks) {
      const anon = join(dir, `${sub}_T1w_desc-anonmask.nii.gz`);
      const anat = join(dir, `${sub}_T1w_desc-anatmask.nii.gz`);
      await writeNifti(anon, { ...v, data: p.anonymizationMask! }, "uint8");
      await writeNifti(anat, { ...v, data: p.anatomyMask! }, "uint8");
      masks = { anonymization_mask: rel(anon), anatomy_mask: rel(anat) };
    }
    subjects[sub] = {
      subject_id: sub,
      subject_info: null,
      sessions: {
        "ses-DEFAULT": {
          session_id: "ses-DEFAULT",
          session_info: null,
          images: [
            {
              name: `${sub}_T1w.nii.gz`,
              image_path: rel(file),
              modality: "T1w",
              image_info: null,
              associated_masks: masks,
            },
          ],
        },
      },
    };
  }
  const collection = {
    collection_index: o.id ?? 1,
    collection_name: datasetName,
    datasets: { ds000001: { dataset_index: "ds000001", name: null, dataset_info: null, subjects } },
  };
  writeFileSync(join(rawDir, "pretrain_data.json"), JSON.stringify(collection, null, 4));
  const env = {
    ...process.env,
    nnssl_raw: raw,
    nnssl_preprocessed: join(root, "preprocessed"),
    nnssl_results: join(root, "results"),
  };
  mkdirSync(env.nnssl_preprocessed, { recursive: true });
  return { datasetName, env, rawDir, imageFiles };
}
