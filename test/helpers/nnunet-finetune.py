"""Fine-tuning side of an ssl3d export: load it the way the nnU-Net / nnssl tools do and take one training step.

usage: nnunet-finetune.py SPEC_JSON
SPEC: {"mode": "nnunet" | "primus", "weights": exported .pth (nnssl checkpoint dict),
       "plans": nnU-Net plans JSON (mode nnunet), "configuration": "3d_fullres" (mode nnunet),
       "num_classes": int, "seed": int}

mode "nnunet": the network is built from the nnU-Net plans file as nnUNetTrainer does (PlansManager ->
  ConfigurationManager -> nnunetv2.utilities.get_network_from_plans, deep supervision on), and the weights go
  through nnU-Net v2's own pretrained-weights path, `nnunetv2.run.load_pretrained_weights.load_pretrained_weights`
  (what `nnUNetv2_train -pretrained_weights` calls). Then every encoder/stem tensor is compared with the export.
mode "primus": the upstream Primus module (dynamic_network_architectures) is built from the export's adaptation plan
  (architecture init kwargs, the pre-training patch as input shape) and loaded through the adaptation plan's key
  mapping: the checkpoint's `key_to_encoder` / `key_to_stem` subtrees into the network's encoder and stem
  submodules with strict `load_state_dict`, and `key_to_lpe` into the positional embedding (the contract nnssl's
  AbstractBaseTrainer.verify_adaptation_plans checks before pre-training and nnU-Net's nnssl fine-tuning uses).
Both: one SGD step (nnU-Net's optimizer settings) on a random batch of the plan's patch size with a cross-entropy
loss; the encoder must move and the loss be finite.
Prints one JSON line: {"encoder_keys": n, "matched": n, "mismatched": [...], "not_in_export": [...],
"loss": x, "encoder_changed": bool, "patch": [...], "network": class name}.
"""
import importlib.util
import json
import sys
import types

import torch
from torch import nn

torch.set_num_threads(2)
spec = json.loads(sys.argv[1])
torch.manual_seed(spec.get("seed", 0))

# nnU-Net 2.6 imports torch._dynamo (torch >= 2) for its torch.compile check; the Debian torch of the reference venv
# is 1.13, which has no torch.compile, so no module can be an OptimizedModule: an empty class says exactly that.
if importlib.util.find_spec("torch._dynamo") is None:
    shim = types.ModuleType("torch._dynamo")

    class OptimizedModule(nn.Module):  # noqa: D401 - never instantiated under torch < 2
        pass

    shim.OptimizedModule = OptimizedModule
    sys.modules["torch._dynamo"] = shim

ckpt = torch.load(spec["weights"], map_location="cpu", weights_only=False)
pretrained = ckpt["network_weights"]
plan = ckpt["nnssl_adaptation_plan"]


def strip(prefix, d):
    return {k[len(prefix) + 1:]: v for k, v in d.items() if k.startswith(prefix + ".")}


def build_nnunet():
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    cm = PlansManager(spec["plans"]).get_configuration(spec["configuration"])
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, plan["pretrain_num_input_channels"],
                                 spec["num_classes"], allow_init=True, deep_supervision=True)
    load_pretrained_weights(net, spec["weights"], verbose=False)
    return net, list(cm.patch_size)


def build_primus():
    from dynamic_network_architectures.architectures.primus import Primus

    kw = plan["architecture_plans"]["arch_kwargs"]
    patch = list(plan["pretrain_plan"]["configurations"].values())[0]["patch_size"]
    net = Primus(plan["pretrain_num_input_channels"], kw["embed_dim"], tuple(kw["patch_embed_size"]),
                 spec["num_classes"], eva_depth=kw["encoder_eva_depth"], eva_numheads=kw["encoder_eva_numheads"],
                 input_shape=tuple(patch), drop_path_rate=kw["drop_path_rate"],
                 scale_attn_inner=kw["scale_attn_inner"], init_values=kw["init_values"])
    # the network's own encoder/stem/LPE locations, the export's from its adaptation plan
    net.get_submodule(net.key_to_encoder).load_state_dict(strip(plan["key_to_encoder"], pretrained), strict=True)
    net.get_submodule(net.key_to_stem).load_state_dict(strip(plan["key_to_stem"], pretrained), strict=True)
    if plan["key_to_lpe"] is not None:
        with torch.no_grad():
            net.get_parameter(net.key_to_lpe).copy_(pretrained[plan["key_to_lpe"]])
    return net, list(patch)


net, patch = build_nnunet() if spec["mode"] == "nnunet" else build_primus()
sd = net.state_dict()
# encoder and stem tensors of the downstream network, compared with the export under the plan's key mapping
prefixes = [(net.key_to_encoder, plan["key_to_encoder"]), (net.key_to_stem, plan["key_to_stem"])]
encoder_keys, matched, mismatched, missing = 0, 0, [], []
for ours, theirs in prefixes:
    for k, v in sd.items():
        if not k.startswith(ours + "."):
            continue
        encoder_keys += 1
        src = theirs + k[len(ours):]
        if src not in pretrained:
            missing.append(src)
        elif pretrained[src].shape != v.shape or not torch.equal(pretrained[src].float(), v.float()):
            mismatched.append(k)
        else:
            matched += 1

# one fine-tuning step
before = {k: v.clone() for k, v in sd.items() if k.startswith(net.key_to_encoder + ".")}
opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
net.train()
x = torch.randn(2, plan["pretrain_num_input_channels"], *patch)
target = torch.randint(0, spec["num_classes"], (2, *patch))
out = net(x)
out = out[0] if isinstance(out, (list, tuple)) else out  # deep supervision: the full-resolution output first
loss = nn.functional.cross_entropy(out, target)
loss.backward()
opt.step()
after = net.state_dict()
changed = any(not torch.equal(before[k], after[k]) for k in before)
print(json.dumps({"encoder_keys": encoder_keys, "matched": matched, "mismatched": mismatched, "not_in_export": missing,
                  "loss": float(loss), "encoder_changed": changed, "patch": patch, "network": type(net).__name__,
                  "output_shape": list(out.shape)}))
