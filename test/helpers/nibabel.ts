/**
 * nibabel (Debian's python3-nibabel) as the independent NIfTI reader/writer of the tests. Uses the reference venv
 * (`pythonBin()`, which sees the system site packages) when it exists, else Debian's /usr/bin/python3.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { pythonBin } from "./python.js";

export function python(): string {
  return existsSync(pythonBin()) ? pythonBin() : "/usr/bin/python3";
}

/** Run a Python program with a JSON argument; parse its stdout as JSON. */
export function runPythonJson(code: string, arg: unknown): unknown {
  const r = spawnSync(python(), ["-c", code, JSON.stringify(arg)], {
    encoding: "utf8",
    timeout: 300_000,
    maxBuffer: 1 << 26,
    env: { ...process.env, OMP_NUM_THREADS: "1", OPENBLAS_NUM_THREADS: "1" },
  });
  if (r.status !== 0) throw new Error(`python failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export interface NibabelInfo {
  shape: number[];
  zooms: number[];
  affine: number[];
  dtype: string;
  orientation: string;
  min?: number;
  max?: number;
  mean?: number;
}

const DESCRIBE = `
import json, sys
import numpy as np, nibabel as nib
req = json.loads(sys.argv[1])
out = []
for f in req["files"]:
    img = nib.load(f)
    h = img.header
    d = {"shape": [int(s) for s in img.shape], "zooms": [float(z) for z in h.get_zooms()],
         "affine": [float(v) for v in img.affine.reshape(-1)], "dtype": str(h.get_data_dtype().name),
         "orientation": "".join(nib.aff2axcodes(img.affine))}
    if req.get("stats"):
        a = np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
        d["min"] = float(a.min()); d["max"] = float(a.max()); d["mean"] = float(a.astype(np.float64).mean())
    out.append(d)
print(json.dumps(out))
`;

/** Shape, zooms, affine (row-major), on-disk dtype, axis codes, optionally min/max/mean, as nibabel reads them. */
export function nibabelDescribe(files: readonly string[], stats = false): NibabelInfo[] {
  return runPythonJson(DESCRIBE, { files, stats }) as NibabelInfo[];
}

const VOXELS = `
import json, sys
import numpy as np, nibabel as nib
files = json.loads(sys.argv[1])
print(json.dumps([[float(v) for v in np.asarray(nib.load(f).get_fdata(dtype=np.float32), dtype=np.float32).reshape(-1, order="F")] for f in files]))
`;

/** Voxel values as float32, in NIfTI memory order (x fastest), as nibabel reads them (scaling applied); small files only. */
export function nibabelVoxels(files: readonly string[]): number[][] {
  return runPythonJson(VOXELS, files) as number[][];
}
