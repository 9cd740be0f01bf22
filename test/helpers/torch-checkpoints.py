"""Writes real PyTorch checkpoints (torch.save from the venv's torch) for the import tests, plus the upstream module's
output on a given input.

usage: torch-checkpoints.py SPEC_JSON
SPEC: {"arch": "resenc"|"primus", "kwargs": {...}, "out": dir, "input": safetensors path with key "x" (NCDHW),
       "seed": int}
Writes into `out`:
  nnssl.pth      an nnssl-style checkpoint dict (network_weights, optimizer_state after one SGD step with momentum,
                 grad_scaler_state None, logging lists, _best_ema, current_epoch, init_args incl. a torch.device,
                 trainer_name, nnssl_adaptation_plan) in torch's default pickle protocol
  state_p4.pth   the bare state dict with pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL)
  half.pth       the state dict in float16, one tensor stored as a non-contiguous (transposed) view
  y.safetensors  the module's output on x (key "y", NCDHW), eval mode
Prints one JSON line: {"keys": n, "params": n}.
"""
import json
import sys

import torch
from torch import nn
from safetensors.torch import load_file, save_file

torch.set_num_threads(2)
spec = json.loads(sys.argv[1])
torch.manual_seed(spec.get("seed", 0))
kw = spec["kwargs"]
if spec["arch"] == "resenc":
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
    net = ResidualEncoderUNet(
        kw["input_channels"], kw["n_stages"], kw["features_per_stage"], nn.Conv3d, 3, kw["strides"],
        kw["n_blocks_per_stage"], kw["num_classes"], kw["n_conv_per_stage_decoder"], conv_bias=True,
        norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True}, deep_supervision=False)
    plan = {
        "architecture_plans": {"arch_class_name": "ResidualEncoderUNet", "arch_kwargs": {
            "n_stages": kw["n_stages"], "features_per_stage": kw["features_per_stage"],
            "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * kw["n_stages"],
            "strides": [[s, s, s] for s in kw["strides"]], "n_blocks_per_stage": kw["n_blocks_per_stage"],
            "n_conv_per_stage_decoder": kw["n_conv_per_stage_decoder"], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True}},
            "arch_kwargs_requiring_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "pretrain_plan": {"configurations": {"onemmiso": {"patch_size": spec["patch"], "spacing": [1.0, 1.0, 1.0]}}},
        "pretrain_num_input_channels": kw["input_channels"],
        "recommended_downstream_patchsize": spec["patch"],
        "key_to_encoder": "encoder.stages", "key_to_stem": "encoder.stem",
        "keys_to_in_proj": ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"], "key_to_lpe": None,
    }
else:
    from dynamic_network_architectures.architectures.primus import Primus
    net = Primus(**kw)
    plan = None

# one optimizer step so that the optimizer state holds momentum buffers, as a real checkpoint does
opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
x = load_file(spec["input"])["x"]
net.train()
loss = net(x).pow(2).mean()
loss.backward()
opt.step()
opt.zero_grad()
net.eval()
with torch.no_grad():
    y = net(x)
save_file({"y": y.contiguous()}, f"{spec['out']}/y.safetensors")

sd = net.state_dict()
ckpt = {
    "network_weights": sd,
    "optimizer_state": opt.state_dict(),
    "grad_scaler_state": None,
    "logging": {"train_losses": [0.9, 0.8], "val_losses": [0.95, 0.85], "lrs": [0.01, 0.0099],
                "epoch_start_timestamps": [1.0, 2.0], "epoch_end_timestamps": [1.5, 2.5]},
    "_best_ema": 0.85,
    "current_epoch": 2,
    "init_args": {"plan": {"plans_name": "nnsslPlans"}, "configuration_name": "onemmiso", "fold": "all",
                  "pretrain_json": {"collection_name": "demo", "datasets": {}}, "device": torch.device("cpu")},
    "trainer_name": "BaseMAETrainer_BS8",
}
if plan is not None:
    ckpt["nnssl_adaptation_plan"] = plan
torch.save(ckpt, f"{spec['out']}/nnssl.pth")
torch.save(sd, f"{spec['out']}/state_p4.pth", pickle_protocol=4)
half = {k: v.half() for k, v in sd.items()}
# a non-contiguous view: stored with its first two axes swapped, viewed back (same shape, permuted strides)
first = next(k for k, v in half.items() if v.dim() >= 2 and v.shape[0] > 1 and v.shape[1] > 1)
t = half[first]
perm = [1, 0] + list(range(2, t.dim()))
half[first] = t.permute(*perm).contiguous().permute(*perm)
torch.save(half, f"{spec['out']}/half.pth")
print(json.dumps({"keys": len(sd), "params": sum(p.numel() for p in net.parameters()), "noncontiguous": first,
                  "is_contiguous": half[first].is_contiguous()}))
