"""Parity helper: load an ssl3d export strictly into the upstream PyTorch module and run it.

usage: torch-models.py SPEC_JSON
SPEC: {"arch": "resenc"|"primus"|"evamae", "kwargs": {...}, "weights": path (.pth or .safetensors),
       "input": path (safetensors with key "x", NCDHW), "output": path (safetensors to write, key "y"),
       "keep_indices": optional [[...]] (evamae)}
Prints one JSON line: {"missing": [...], "unexpected": [...], "upstream_only": [...], "ours_only": [...], "params": N}.
"""
import json
import pickle
import pickletools
import sys
import zipfile

import torch
from safetensors.torch import load_file, save_file

torch.set_num_threads(2)
spec = json.loads(sys.argv[1])


def build(arch, kw):
    if arch == "resenc":
        from torch import nn
        from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
        return ResidualEncoderUNet(
            kw["input_channels"], kw["n_stages"], kw["features_per_stage"], nn.Conv3d, 3, kw["strides"],
            kw["n_blocks_per_stage"], kw["num_classes"], kw["n_conv_per_stage_decoder"], conv_bias=True,
            norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
            nonlin_kwargs={"inplace": True}, deep_supervision=False)
    if arch == "primus":
        from dynamic_network_architectures.architectures.primus import Primus
        return Primus(**kw)
    raise SystemExit(f"unknown arch {arch}")


net = build(spec["arch"], spec["kwargs"]).eval()
path = spec["weights"]
if path.endswith(".safetensors"):
    sd = load_file(path)
else:
    load_mode = "weights_only"
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch < 2.0's weights-only unpickler lacks BINFLOAT (opcode 71 'G'), which any float in the adaptation
        # plan needs (real nnssl checkpoints have the same property). Then check the pickle by hand: only the
        # globals torch >= 2 allows, no opcodes outside its list, and load it.
        if "Unsupported operand 71" not in str(e) or int(torch.__version__.split(".")[0]) >= 2:
            raise
        with zipfile.ZipFile(path) as z:
            pkl = z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0])
        allowed_globals = {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch FloatStorage"}
        allowed_ops = {"PROTO", "STOP", "GLOBAL", "MARK", "TUPLE", "EMPTY_TUPLE", "REDUCE", "BINPERSID", "BINUNICODE",
                       "BININT", "BININT1", "LONG1", "BINFLOAT", "NONE", "NEWTRUE", "NEWFALSE", "EMPTY_DICT",
                       "EMPTY_LIST", "SETITEMS", "APPENDS"}
        for op, arg, _ in pickletools.genops(pkl):
            assert op.name in allowed_ops, op.name
            if op.name == "GLOBAL":
                assert arg in allowed_globals, arg
        ck = torch.load(path, map_location="cpu", weights_only=False)
        load_mode = "checked_pickle"
    sd = ck["network_weights"]
upstream = set(net.state_dict().keys())
ours = set(sd.keys())
res = net.load_state_dict(sd, strict=True)
x = load_file(spec["input"])["x"]
with torch.no_grad():
    y = net(x)
save_file({"y": y.contiguous()}, spec["output"])
print(json.dumps({"missing": list(res.missing_keys), "unexpected": list(res.unexpected_keys),
                  "upstream_only": sorted(upstream - ours), "ours_only": sorted(ours - upstream),
                  "params": sum(p.numel() for p in net.parameters())}))
