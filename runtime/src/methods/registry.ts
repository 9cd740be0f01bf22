/** Pre-training method registry: one line per method. Keys are lower-kebab. */
import { ConfigError } from "../errors.js";
import { mae } from "./mae.js";
import { modelsGenesis } from "./models-genesis.js";
import { simmim } from "./simmim.js";
import { simclr } from "./simclr.js";
import { voco } from "./voco.js";
import type { MethodEntry } from "./method.js";
import { spark } from "./spark.js";
import { volumeFusion } from "./volume-fusion.js";
import { swinPretext } from "./swin-pretext.js";

const entries: readonly MethodEntry[] = [mae, simmim, modelsGenesis, spark, volumeFusion, swinPretext, voco, simclr];

const byKey = new Map(entries.map((e) => [e.key, e]));

export function methodKeys(): string[] {
  return [...byKey.keys()];
}

export function getMethod(key: string): MethodEntry {
  const e = byKey.get(key);
  if (e === undefined)
    throw new ConfigError(`unknown pre-training method "${key}" (known: ${methodKeys().join(", ")})`, {
      field: "method",
    });
  return e;
}
