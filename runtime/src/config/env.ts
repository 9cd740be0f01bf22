/**
 * The three nnssl roots and dataset names (the folders below the roots: config/layout.ts; reading variables:
 * config/settings.ts).
 *
 * `nnssl_raw` holds `DatasetNNN_Name/pretrain_data.json`, `nnssl_preprocessed` fingerprints, plans and preprocessed
 * data, `nnssl_results` training outputs (upstream names, nnssl `src/nnssl/paths.py`). `rocket_preprocessed`, when set,
 * overrides `nnssl_preprocessed` with a warning, as upstream does. Dataset names follow nnU-Net: `Dataset` + 3-digit
 * zero-padded ID + `_` + name; an integer ID is resolved by searching the three roots for folders starting with
 * `DatasetNNN_` and exactly one distinct name must match (nnssl `src/nnssl/utilities/dataset_name_id_conversion.py`).
 *
 * Leaf module (node:fs only, no TensorFlow): the operator may import it.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, EnvironmentError } from "../errors.js";
import { checkSafeName } from "../io/safe-path.js";
import { envString, processEnv, type Env } from "./settings.js";

export type RootVar = "nnssl_raw" | "nnssl_preprocessed" | "nnssl_results";
export const ROOT_VARS: readonly RootVar[] = ["nnssl_raw", "nnssl_preprocessed", "nnssl_results"];

const PURPOSE: Record<RootVar, string> = {
  nnssl_raw: "the root holding DatasetNNN_Name/pretrain_data.json",
  nnssl_preprocessed: "the root of fingerprints, plans and preprocessed data",
  nnssl_results: "the root of training outputs",
};

export type { Env } from "./settings.js";

/** Called once per process for the `rocket_preprocessed` override; replaceable in tests. */
let warn: (msg: string) => void = (msg) => {
  process.stderr.write(`ssl3d: warning: ${msg}\n`);
};
let warnedRocket = false;

export function setEnvWarningSink(sink: (msg: string) => void): void {
  warn = sink;
  warnedRocket = false;
}

/** Strip a trailing slash (but keep `/`). */
function clean(value: string): string {
  return value.length > 1 ? value.replace(/\/+$/, "") : value;
}

/** The value of a root variable, or undefined when unset/empty. Applies the `rocket_preprocessed` override. */
export function optionalRoot(name: RootVar, env: Env = processEnv()): string | undefined {
  if (name === "nnssl_preprocessed") {
    const rocket = envString("rocket_preprocessed", env);
    if (rocket !== undefined) {
      if (!warnedRocket) {
        warnedRocket = true;
        warn(`rocket_preprocessed is set: using ${rocket} instead of nnssl_preprocessed`);
      }
      return clean(rocket);
    }
  }
  const v = envString(name, env);
  return v === undefined ? undefined : clean(v);
}

/** The value of a root variable; an EnvironmentError naming the variable and its purpose when unset. */
export function requireRoot(name: RootVar, env: Env = processEnv()): string {
  const v = optionalRoot(name, env);
  if (v === undefined) {
    throw new EnvironmentError(
      `environment variable ${name} is not set (it must point to ${PURPOSE[name]}); export ${name}=/some/dir`,
    );
  }
  return v;
}

export interface DatasetName {
  readonly id: number;
  readonly name: string;
  /** `DatasetNNN_Name` */
  readonly full: string;
}

const DATASET_RE = /^Dataset(\d{3,})_(.+)$/;

/** `Dataset001_Name` for ID 1 and name `Name`. */
export function formatDatasetName(id: number, name: string): string {
  if (!Number.isInteger(id) || id < 0 || id > 99999)
    throw new ConfigError(`dataset ID must be an integer 0..99999, got ${id}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
    throw new ConfigError(
      `dataset name "${name}" must start with a letter or digit and contain only letters, digits, '_', '.', '-'`,
    );
  }
  return `Dataset${String(id).padStart(3, "0")}_${name}`;
}

/** Parse `Dataset001_Name` back into ID and name; undefined if it does not have that form. */
export function parseDatasetName(full: string): DatasetName | undefined {
  const m = DATASET_RE.exec(full);
  if (m === null) return undefined;
  return { id: Number(m[1]), name: m[2]!, full };
}

function listDatasetDirs(root: string): string[] {
  try {
    return readdirSync(root).filter((n) => DATASET_RE.test(n) && isDir(join(root, n)));
  } catch {
    return [];
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Resolve `-d` arguments: an integer ID (`1`, `001`) becomes the one `DatasetNNN_Name` folder found in the set roots;
 * a full `DatasetNNN_Name` is returned as given. Errors: no roots set, no match, several distinct matches.
 */
export function resolveDatasetName(idOrName: string, env: Env = processEnv()): string {
  const trimmed = idOrName.trim();
  if (parseDatasetName(trimmed) !== undefined)
    return checkSafeName(trimmed, `dataset name ${JSON.stringify(trimmed)}`, { field: "dataset" });
  if (!/^\d+$/.test(trimmed) || !Number.isSafeInteger(Number(trimmed))) {
    throw new ConfigError(
      `dataset "${idOrName.slice(0, 60)}" is neither an integer ID nor a name of the form DatasetNNN_Name`,
      { field: "dataset" },
    );
  }
  const id = Number(trimmed);
  const prefix = `Dataset${String(id).padStart(3, "0")}_`;
  const roots = ROOT_VARS.map((v) => [v, optionalRoot(v, env)] as const).filter(
    (r): r is readonly [RootVar, string] => r[1] !== undefined,
  );
  if (roots.length === 0) {
    throw new EnvironmentError(`cannot resolve dataset ID ${id}: none of ${ROOT_VARS.join(", ")} is set`);
  }
  const found = new Set<string>();
  for (const [, root] of roots) for (const n of listDatasetDirs(root)) if (n.startsWith(prefix)) found.add(n);
  if (found.size === 0) {
    throw new ConfigError(`no dataset with ID ${id} (${prefix}*) in ${roots.map(([v, r]) => `${v}=${r}`).join(", ")}`);
  }
  if (found.size > 1) {
    throw new ConfigError(`dataset ID ${id} is ambiguous: ${[...found].sort().join(", ")} (rename or remove one)`);
  }
  return [...found][0]!;
}
