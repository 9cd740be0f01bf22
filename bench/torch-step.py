"""Baseline for bench/models.ts: one PyTorch CPU training step (forward, MSE loss, backward, SGD-Nesterov update)
of the upstream module (dynamic-network-architectures) with the given kwargs, or of one nn.Conv3d (arch conv3d); prints median seconds (reps 0: the
single first step) and peak RSS in MiB as JSON."""
import json
import resource
import statistics
import sys
import time

import torch
from torch import nn

spec = json.loads(sys.argv[1])
torch.set_num_threads(int(spec.get("threads", 2)))
torch.manual_seed(0)
kw = spec["kwargs"]
if spec["arch"] == "resenc":
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
    net = ResidualEncoderUNet(
        kw["input_channels"], kw["n_stages"], kw["features_per_stage"], nn.Conv3d, 3, kw["strides"],
        kw["n_blocks_per_stage"], kw["num_classes"], kw["n_conv_per_stage_decoder"], conv_bias=True,
        norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True})
elif spec["arch"] == "conv3d":
    net = nn.Conv3d(kw["input_channels"], kw["out_channels"], 3, padding=1, bias=True)
else:
    from dynamic_network_architectures.architectures.primus import Primus
    net = Primus(**kw)
net.train()
opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99, nesterov=True)
b, s = spec["batch"], spec["size"]
x = torch.randn(b, kw.get("input_channels", 1), *s)
t = torch.randn(b, kw.get("out_channels", spec["out"]), *s)
times = []
setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
for i in range(spec["reps"] + 1):
    t0 = time.perf_counter()
    opt.zero_grad()
    loss = torch.mean((net(x) - t) ** 2)
    loss.backward()
    opt.step()
    if i > 0 or spec["reps"] == 0:
        times.append(time.perf_counter() - t0)
print(json.dumps({"median": statistics.median(times), "min": min(times), "max": max(times), "n": len(times),
                  "seconds": times[0], "maxRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "setupRssMiB": setup}))
