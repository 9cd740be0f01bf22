/**
 * The SwinUNETR pre-text network against PyTorch (Debian torch + dynamic-network-architectures in the venv), through
 * `ssl3d export` (both formats) of a saved network:
 *
 * - the downstream use (nnU-Net fine-tuning from the adaptation plan): the network is built in Python from the exported `adaptation_plan.json`
 *   (arch_kwargs with their class paths), and the `key_to_encoder` / `key_to_stem` tensors load strictly into its
 *   `encoder.stages` / `encoder.stem`; all `encoder.*` tensors also load strictly into a bare upstream
 *   `ResidualEncoder` (what nnssl's encoder_only was meant to return, `src/nnssl/architectures/get_network_by_name.py`), whose bottleneck matches ours;
 * - the heads (rotation/contrast Linear on tokens 0/1, recon_proj_head Sequential) built from torch modules as spec
 *   6.8 describes them load strictly from the remaining keys, and all three outputs match ours;
 * - the pth-compatible export holds the same key set;
 * - on Primus (with upstream's token order): `encoder.eva` / `encoder.down_projection` load strictly into upstream's
 *   Eva / PatchEmbed, and the heads' outputs match an EvaMAE encoder composed from those blocks.
 *
 * Run time ~6 s (two CLI exports, two Python starts).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../../runtime/src/models/backend/select.js";
import { exportNetwork } from "../../runtime/src/models/checkpoint-export.js";
import { saveNetwork } from "../../runtime/src/models/network-io.js";
import { decodeSafetensors, encodeSafetensors } from "../../runtime/src/models/safetensors.js";
import { createNetwork } from "../../runtime/src/models/registry.js";
import { isPretextNetwork } from "../../runtime/src/models/swin-pretext.js";
import { runPython } from "../helpers/python.js";
import { maxAbs, maxAbsDiff } from "../helpers/tf-check.js";
import { tmp } from "../helpers/torch-parity.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "ssl3d.mjs");

const PY = `
import json, pydoc, sys, torch
from torch import nn
from safetensors.torch import load_file, save_file
from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
torch.set_num_threads(2)
a = json.loads(sys.argv[1])
sd = load_file(a["safetensors"])
pth = torch.load(a["pth"], map_location="cpu", weights_only=False)["network_weights"]
plan = json.load(open(a["plan"]))
out = {"pth_keys_equal": sorted(pth.keys()) == sorted(sd.keys())}

# downstream: the architecture from the adaptation plan, encoder + stem loaded strictly by their keys
ap = plan["architecture_plans"]
kw = dict(ap["arch_kwargs"])
for k in ap["arch_kwargs_requiring_import"]:
    if kw[k] is not None:
        kw[k] = pydoc.locate(kw[k])
down = ResidualEncoderUNet(input_channels=plan["pretrain_num_input_channels"], num_classes=3, **kw)
def sub(prefix):
    return {k[len(prefix) + 1:]: v for k, v in sd.items() if k.startswith(prefix + ".")}
down.encoder.stages.load_state_dict(sub(plan["key_to_encoder"]), strict=True)
down.encoder.stem.load_state_dict(sub(plan["key_to_stem"]), strict=True)
out["in_proj_present"] = all(any(k.startswith(p + ".") for k in sd) for p in plan["keys_to_in_proj"])

# the bare upstream ResidualEncoder (returns all stage outputs)
h = a["hyper"]
enc = ResidualEncoder(1, len(h["features"]), h["features"], nn.Conv3d, 3, h["strides"], h["blocks"], conv_bias=True,
                      norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                      nonlin_kwargs={"inplace": True}, return_skips=True)
enc.load_state_dict(sub("encoder"), strict=True)

# the heads as nnssl's swinunetr_architecture.py builds them
feats = h["features"][::-1] + [1]
strides = h["strides"][::-1]
layers = []
for i in range(len(feats) - 1):
    layers.append(nn.Conv3d(feats[i], feats[i + 1], 3, 1, 1))
    if strides[i] > 1:
        layers += [nn.InstanceNorm3d(feats[i + 1]), nn.LeakyReLU(), nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)]
heads = nn.ModuleDict({"rotation_proj_head": nn.Linear(feats[0], 4), "contrast_proj_head": nn.Linear(feats[0], 512),
                       "recon_proj_head": nn.Sequential(*layers)})
heads.load_state_dict({k: v for k, v in sd.items() if not k.startswith("encoder.")}, strict=True)
out["params"] = sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in heads.parameters())

x = load_file(a["input"])["x"]
with torch.no_grad():
    z = enc(x)[-1]
    tok = z.flatten(2, 4).transpose(1, 2)
    y = {"bottleneck": z, "rotation": heads["rotation_proj_head"](tok[:, 0]), "contrast": heads["contrast_proj_head"](tok[:, 1]),
         "reconstruction": heads["recon_proj_head"](z)}
save_file({k: v.contiguous() for k, v in y.items()}, a["output"])
print(json.dumps(out))
`;

test("swin-pretext-resenc-xs via ssl3d export: encoder loads strictly into upstream ResidualEncoder and the plan's downstream network; heads and outputs match torch", async () => {
  await selectBackend("cpu");
  const hyper = { features: [4, 8, 16], blocks: [1, 2, 1], strides: [1, 2, 2] };
  const net = createNetwork("swin-pretext-resenc-xs", { ...hyper, patchSize: [16, 16, 16], seed: 3 });
  assert.ok(isPretextNetwork(net));
  const dir = tmp("ssl3d-swin-parity-");
  const saved = join(dir, "network.safetensors");
  await saveNetwork(net, saved);
  for (const [format, file] of [
    ["safetensors", "w.safetensors"],
    ["pth-compatible", "w.pth"],
  ] as const) {
    const r = spawnSync(process.execPath, [BIN, "export", saved, "--format", format, "--out", join(dir, file)], {
      encoding: "utf8",
      env: { ...process.env, SSL3D_LOG_LEVEL: "warn" },
    });
    assert.equal(r.status, 0, r.stderr);
  }
  const plan = JSON.parse(readFileSync(join(dir, "adaptation_plan.json"), "utf8")) as Record<string, unknown>;
  assert.equal(plan.key_to_encoder, "encoder.stages");
  assert.equal(plan.key_to_stem, "encoder.stem");
  assert.deepEqual(plan.keys_to_in_proj, ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"]);

  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 16, 1], 0, 1, "float32", 7);
  const xin = tf.tidy(() => tf.transpose(x, [0, 4, 1, 2, 3]));
  writeFileSync(
    join(dir, "x.safetensors"),
    encodeSafetensors(new Map([["x", { shape: xin.shape, data: xin.dataSync() as Float32Array }]])),
  );
  xin.dispose();
  const info = JSON.parse(
    runPython(PY, [
      JSON.stringify({
        safetensors: join(dir, "w.safetensors"),
        pth: join(dir, "w.pth"),
        plan: join(dir, "adaptation_plan.json"),
        hyper,
        input: join(dir, "x.safetensors"),
        output: join(dir, "y.safetensors"),
      }),
    ])
      .trim()
      .split("\n")
      .pop()!,
  ) as { pth_keys_equal: boolean; in_proj_present: boolean; params: number };
  assert.deepEqual(info, { pth_keys_equal: true, in_proj_present: true, params: net.parameterCount() });

  const ref = decodeSafetensors(readFileSync(join(dir, "y.safetensors"))).tensors;
  const o = net.forwardPretext(x, { training: false });
  const z = (net.encode(x, { training: false }) as tf.Tensor5D[])[2]!;
  const toTorch5 = (t: tf.Tensor) => tf.tidy(() => tf.transpose(t, [0, 4, 1, 2, 3]).dataSync() as Float32Array);
  const pairs: [string, Float32Array][] = [
    ["bottleneck", toTorch5(z)],
    ["rotation", o.rotation.dataSync() as Float32Array],
    ["contrast", o.contrast.dataSync() as Float32Array],
    ["reconstruction", toTorch5(o.reconstruction)],
  ];
  for (const [name, ours] of pairs) {
    const r = ref.get(name)!;
    const d = maxAbsDiff(ours, r.data);
    assert.ok(d < 1e-4 * Math.max(1, maxAbs(r.data)), `${name}: max abs diff ${d}, scale ${maxAbs(r.data)}`);
  }
  tf.dispose([x, z, o.rotation, o.contrast, o.reconstruction]);
  net.dispose();
});

const PY_EVA = `
import json, sys, torch
from torch import nn
from einops import rearrange
from safetensors.torch import load_file, save_file
from dynamic_network_architectures.building_blocks.eva import Eva
from dynamic_network_architectures.building_blocks.patch_encode_decode import PatchEmbed
torch.set_num_threads(2)
a = json.loads(sys.argv[1])
sd = load_file(a["weights"])
plan = json.load(open(a["plan"]))
E, P, S = a["embed"], a["patch"], a["shape"]
grid = tuple(s // P for s in S)

class Encoder(nn.Module):  # nnssl EvaMAE without decoder and up-projection (nnssl swinunetr_architecture.py), from upstream building blocks
    def __init__(self):
        super().__init__()
        self.down_projection = PatchEmbed((P, P, P), 1, E)
        self.eva = Eva(embed_dim=E, depth=a["depth"], num_heads=a["heads"], ref_feat_shape=grid, init_values=0.1,
                       scale_attn_inner=True, drop_path_rate=0.2, patch_drop_rate=0)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, E))
    def forward(self, x):
        x = self.down_projection(x)
        B, C, W, H, D = x.shape
        x, _ = self.eva(rearrange(x, "b c w h d -> b (h w d) c"))
        return rearrange(x, "b (h w d) c -> b c w h d", h=W, w=H, d=D)

def sub(prefix):
    return {k[len(prefix) + 1:]: v for k, v in sd.items() if k.startswith(prefix + ".")}
enc = Encoder().eval()
# the downstream use: stem and encoder by the adaptation plan's keys, strictly
enc.eva.load_state_dict(sub(plan["key_to_encoder"]), strict=True)
enc.down_projection.load_state_dict(sub(plan["key_to_stem"]), strict=True)
enc.load_state_dict(sub("encoder"), strict=True)
n = int(round(__import__("math").log2(P)))
feats = [E // 2 ** i for i in range(n + 1)] + [1]
strides = [2] * n + [1]
layers = []
for i in range(len(feats) - 1):
    layers.append(nn.Conv3d(feats[i], feats[i + 1], 3, 1, 1))
    if strides[i] > 1:
        layers += [nn.InstanceNorm3d(feats[i + 1]), nn.LeakyReLU(), nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)]
heads = nn.ModuleDict({"rotation_proj_head": nn.Linear(E, 4), "contrast_proj_head": nn.Linear(E, 512), "recon_proj_head": nn.Sequential(*layers)})
heads.load_state_dict({k: v for k, v in sd.items() if not k.startswith("encoder.")}, strict=True)
x = load_file(a["input"])["x"]
with torch.no_grad():
    z = enc(x)
    tok = z.flatten(2, 4).transpose(1, 2)
    y = {"rotation": heads["rotation_proj_head"](tok[:, 0]), "contrast": heads["contrast_proj_head"](tok[:, 1]), "reconstruction": heads["recon_proj_head"](z)}
save_file({k: v.contiguous() for k, v in y.items()}, a["output"])
print(json.dumps({"params": sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in heads.parameters())}))
`;

test("swin-pretext-primus-xs (upstream token order): encoder.eva / encoder.down_projection load strictly into upstream Eva / PatchEmbed; heads and outputs match torch", async () => {
  await selectBackend("cpu");
  const net = createNetwork("swin-pretext-primus-xs", { patchSize: [16, 16, 16], seed: 5, tokenOrder: "hwd" });
  assert.ok(isPretextNetwork(net));
  const dir = tmp("ssl3d-swin-eva-parity-");
  await exportNetwork(net, join(dir, "w.safetensors"), { format: "safetensors" });
  const x = tf.randomNormal<tf.Rank.R5>([2, 16, 16, 16, 1], 0, 1, "float32", 8);
  const xin = tf.tidy(() => tf.transpose(x, [0, 4, 1, 2, 3]));
  writeFileSync(
    join(dir, "x.safetensors"),
    encodeSafetensors(new Map([["x", { shape: xin.shape, data: xin.dataSync() as Float32Array }]])),
  );
  xin.dispose();
  const args = {
    weights: join(dir, "w.safetensors"),
    plan: join(dir, "adaptation_plan.json"),
    embed: 48,
    patch: 8,
    shape: [16, 16, 16],
    depth: 2,
    heads: 2,
    input: join(dir, "x.safetensors"),
    output: join(dir, "y.safetensors"),
  };
  const info = JSON.parse(
    runPython(PY_EVA, [JSON.stringify(args)])
      .trim()
      .split("\n")
      .pop()!,
  ) as { params: number };
  assert.equal(info.params, net.parameterCount());
  const ref = decodeSafetensors(readFileSync(join(dir, "y.safetensors"))).tensors;
  const o = net.forwardPretext(x, { training: false });
  const pairs: [string, Float32Array][] = [
    ["rotation", o.rotation.dataSync() as Float32Array],
    ["contrast", o.contrast.dataSync() as Float32Array],
    ["reconstruction", tf.tidy(() => tf.transpose(o.reconstruction, [0, 4, 1, 2, 3]).dataSync() as Float32Array)],
  ];
  for (const [name, ours] of pairs) {
    const r = ref.get(name)!;
    const d = maxAbsDiff(ours, r.data);
    assert.ok(d < 1e-4 * Math.max(1, maxAbs(r.data)), `${name}: max abs diff ${d}, scale ${maxAbs(r.data)}`);
  }
  tf.dispose([x, o.rotation, o.contrast, o.reconstruction]);
  net.dispose();
});
