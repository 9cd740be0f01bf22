/** zarr-python (isolated venv made by scripts/setup.d/25-zarr-python.sh). */
import { join } from "node:path";
import { cacheDir } from "./python.js";

export function zarrPythonBin(): string {
  return join(cacheDir(), "venv-zarr", "bin", "python");
}
