/**
 * Our own network weight files: safetensors in PyTorch layout under primary names (no aliases), with metadata
 * that lets `loadNetwork` rebuild the architecture: `ssl3d.architecture` (registry key) and `ssl3d.options`
 * (JSON: inChannels, outChannels, patchSize, seed and the preset's hyper-parameters).
 */
import type { Network } from "./architecture.js";
import { loadTorchStateDict, networkMeta, torchStateDict } from "./checkpoint-export.js";
import { createNetwork } from "./registry.js";
import { readSafetensors, writeSafetensors, type DecodedSafetensors } from "./safetensors.js";
import { DataError } from "../errors.js";
import { networkFromFileSettings } from "./checkpoint-import.js";

export function networkMetadata(net: Network): Record<string, string> {
  return { format: "pt", ...networkMeta(net) };
}

export async function saveNetwork(
  net: Network,
  path: string,
  extraMetadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  await writeSafetensors(path, torchStateDict(net, { aliases: false }), { ...networkMetadata(net), ...extraMetadata });
}

/** Rebuild a network from a decoded file's metadata and load its weights. */
export function networkFromSafetensors(dec: DecodedSafetensors, file: string): Network {
  const key = dec.metadata["ssl3d.architecture"];
  const optsJson = dec.metadata["ssl3d.options"];
  if (key === undefined || optsJson === undefined)
    throw new DataError("not an ssl3d network file (no ssl3d.architecture/ssl3d.options metadata)", {
      file,
      field: "__metadata__",
    });
  let opts: Record<string, unknown>;
  try {
    opts = JSON.parse(optsJson) as Record<string, unknown>;
  } catch {
    throw new DataError("ssl3d.options is not valid JSON", { file, field: "__metadata__.ssl3d.options" });
  }
  const net = networkFromFileSettings(() => createNetwork(key, opts), file, "__metadata__.ssl3d.options");
  try {
    // training checkpoints (runtime/src/training/checkpoint.ts) also carry optimizer slots: not network weights
    const weights = new Map([...dec.tensors].filter(([k]) => !k.startsWith("optimizer_state.")));
    loadTorchStateDict(net, weights, file, ["mask_token_buffer"]);
  } catch (err) {
    net.dispose();
    throw err;
  }
  return net;
}

export async function loadNetwork(path: string): Promise<{ net: Network; metadata: Record<string, string> }> {
  const dec = await readSafetensors(path);
  return { net: networkFromSafetensors(dec, path), metadata: dec.metadata };
}
