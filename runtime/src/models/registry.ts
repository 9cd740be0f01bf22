/**
 * Architecture registry: one line per architecture preset. Keys are lower-kebab (`resenc-l`, `primus-m`, ...).
 */
import { ConfigError } from "../errors.js";
import type { ArchitectureEntry, CreateNetworkOptions, Network } from "./architecture.js";
import { SIMMIM_PRESETS, simmimEntry } from "./eva-simmim.js";
import { PRIMUS_PRESETS, primusEntry } from "./primus.js";
import { RESENC_L, RESENC_XS, resencEntry } from "./resenc-unet.js";
import { SPARK_ENTRIES } from "./spark.js";
import { swinPretextEntry, swinPretextEvaEntry } from "./swin-pretext.js";
import { VOCO_PRIMUS_M, VOCO_PRIMUS_XS, VOCO_RESENC_L, VOCO_RESENC_XS, vocoEntry, vocoPrimusEntry } from "./voco.js";

const entries: readonly ArchitectureEntry[] = [
  resencEntry(RESENC_L),
  resencEntry(RESENC_XS),
  ...PRIMUS_PRESETS.map(primusEntry),
  ...SIMMIM_PRESETS.map(simmimEntry),
  ...SPARK_ENTRIES,
  swinPretextEntry(RESENC_L),
  swinPretextEntry(RESENC_XS),
  ...PRIMUS_PRESETS.filter((p) => p.mae).map(swinPretextEvaEntry),
  vocoEntry(VOCO_RESENC_L),
  vocoEntry(VOCO_RESENC_XS),
  vocoPrimusEntry(VOCO_PRIMUS_M),
  vocoPrimusEntry(VOCO_PRIMUS_XS),
];

const byKey = new Map(entries.map((e) => [e.key, e]));

export function architectureKeys(): string[] {
  return [...byKey.keys()];
}

export function getArchitecture(key: string): ArchitectureEntry {
  const e = byKey.get(key);
  if (e === undefined)
    throw new ConfigError(`unknown architecture "${key}" (known: ${architectureKeys().join(", ")})`, {
      field: "architecture",
    });
  return e;
}

export function createNetwork(key: string, opts: CreateNetworkOptions = {}): Network {
  return getArchitecture(key).create(opts);
}

export function countParams(key: string, opts: CreateNetworkOptions = {}): number {
  return getArchitecture(key).countParams(opts);
}
