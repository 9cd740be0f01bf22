"""Parity helper: load an ssl3d export strictly into the upstream PyTorch module and run it.

usage: torch-models.py SPEC_JSON
SPEC: {"arch": "resenc"|"primus"|"evamae"|"evasimmim"|"spark"|"voco"|"vocoeva", "kwargs": {...}, "weights": path (.pth or .safetensors),
       "input": path (safetensors with key "x", NCDHW), "output": path (safetensors to write, key "y"),
       "keep_indices": optional [[...]] (evamae), "token_mask": optional [[...]] (evasimmim: per sample, 1 visible /
       0 masked, token grid flattened row-major = (w h d))}
Prints one JSON line: {"missing": [...], "unexpected": [...], "upstream_only": [...], "ours_only": [...], "params": N}.
Importable (test/helpers/torch-trajectory.py uses `build`): the command runs only as __main__.
"""
import json
import pickle
import pickletools
import sys
import zipfile

import torch
from torch import nn
from safetensors.torch import load_file, save_file



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
    if arch == "primusx":
        from dynamic_network_architectures.architectures.primus import PrimusX
        return PrimusX(**kw)
    if arch == "evamae":
        return EvaMAERef(**kw)
    if arch == "evasimmim":
        return EvaSimMIMRef(**kw)
    if arch == "spark":
        return SparkRef(kw)
    if arch == "voco":
        return VoCoRef(**kw)
    if arch == "vocoeva":
        return VoCoEvaRef(**kw)
    raise SystemExit(f"unknown arch {arch}")


def _sparse_in(x, m, weight, bias, eps):
    """Instance norm with mean and biased variance over the voxels where m == 1; 0 elsewhere."""
    n = m.sum(dim=(2, 3, 4), keepdim=True).clamp_min(1)
    mean = (x * m).sum(dim=(2, 3, 4), keepdim=True) / n
    var = (((x - mean) * m) ** 2).sum(dim=(2, 3, 4), keepdim=True) / n
    y = (x - mean) / torch.sqrt(var + eps) * weight.view(1, -1, 1, 1, 1) + bias.view(1, -1, 1, 1, 1)
    return y * m


class _Affine(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))


class SparkRef(nn.Module):
    """SparK-3D forward (nnssl `src/nnssl/architectures/spark_model.py`), written for the parity test on the upstream ResidualEncoderUNet: forward hooks
    multiply every encoder Conv3d / AvgPool3d output by the mask at its resolution and recompute every encoder
    InstanceNorm3d output with visible-voxel statistics; then densify (sparse IN, mask token, 3³ projection) and the
    upstream decoder. kw: the "resenc" kwargs plus "mask" (safetensors, key "m", (B,1,X,Y,Z), 1 visible) and "block"
    (mask block edge; all ones where the stride exceeds it). State-dict keys: encoder.*, decoder.* (incl.
    decoder.encoder.*), densify_norms.*, densify_projs.*, mask_tokens.* (as nnssl's SparK3D minus architecture.*)."""

    def __init__(self, kw):
        super().__init__()
        unet = build("resenc", kw)
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.m = load_file(kw["mask"])["m"]
        self.block = kw["block"]
        feats = kw["features_per_stage"]
        self.densify_norms = nn.ModuleList([_Affine(c) for c in feats])
        self.densify_projs = nn.ModuleList([nn.Identity()] + [nn.Conv3d(c, c, 3, padding=1, bias=True) for c in feats[1:]])
        self.mask_tokens = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1, 1)) for c in feats])
        for mod in self.encoder.modules():
            if isinstance(mod, (nn.Conv3d, nn.AvgPool3d)):
                mod.register_forward_hook(lambda _m, _i, out: out * self.mask_at(out))
            elif isinstance(mod, nn.InstanceNorm3d):
                mod.register_forward_hook(lambda m, inp, _o: _sparse_in(inp[0], self.mask_at(inp[0]), m.weight, m.bias, m.eps))

    def mask_at(self, t):
        f = self.m.shape[2] // t.shape[2]
        if f > self.block:
            return torch.ones_like(t[:, :1])
        return self.m[:, :, ::f, ::f, ::f]

    def forward(self, x):
        dense = []
        for i, s in enumerate(self.encoder(x)):
            m = self.mask_at(s)
            h = _sparse_in(s, m, self.densify_norms[i].weight, self.densify_norms[i].bias, 1e-5)
            h = torch.where(m == 1, h, self.mask_tokens[i].expand_as(h))
            dense.append(self.densify_projs[i](h))
        return self.decoder(dense)


class _GivenKeep(nn.Module):
    """Stands in for timm's PatchDropout inside the upstream Eva: keeps the given token indices."""

    def __init__(self, keep):
        super().__init__()
        self.keep = keep

    def forward(self, x):
        idx = self.keep.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        return x.gather(1, idx), self.keep


class EvaMAERef(nn.Module):
    """nnssl EvaMAE's module tree and forward (`src/nnssl/architectures/evaMAE_module.py`) composed from the upstream building blocks (nnssl itself
    is not on PyPI): down_projection, eva (with token dropping), mask_token, decoder Eva, up_projection."""

    def __init__(self, input_channels, embed_dim, patch_embed_size, output_channels, encoder_eva_depth,
                 encoder_eva_numheads, decoder_eva_depth, decoder_eva_numheads, input_shape, init_values,
                 scale_attn_inner, drop_path_rate, token_order):
        super().__init__()
        from dynamic_network_architectures.building_blocks.eva import Eva
        from dynamic_network_architectures.building_blocks.patch_encode_decode import LayerNormNd, PatchDecode, PatchEmbed
        grid = tuple(i // p for i, p in zip(input_shape, patch_embed_size))
        common = dict(embed_dim=embed_dim, ref_feat_shape=grid, init_values=init_values,
                      scale_attn_inner=scale_attn_inner, drop_path_rate=drop_path_rate)
        self.down_projection = PatchEmbed(patch_embed_size, input_channels, embed_dim)
        # decoder_eva_depth 0 (Models Genesis on Primus): no decoder, no token dropping, encoder + PatchDecode
        self.use_decoder = decoder_eva_depth > 0
        self.eva = Eva(depth=encoder_eva_depth, num_heads=encoder_eva_numheads, patch_drop_rate=0.5 if self.use_decoder else 0, **common)
        self.up_projection = PatchDecode(patch_embed_size, embed_dim, output_channels, norm=LayerNormNd, activation=nn.GELU)
        if self.use_decoder:
            self.decoder = Eva(depth=decoder_eva_depth, num_heads=decoder_eva_numheads, patch_drop_rate=0, **common)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.order = "b c w h d -> b (h w d) c" if token_order == "hwd" else "b c w h d -> b (w h d) c"
        self.inverse = "b (h w d) c -> b c w h d" if token_order == "hwd" else "b (w h d) c -> b c w h d"
        self.keep = None

    def forward(self, x):
        from einops import rearrange
        x = self.down_projection(x)
        B, C, W, H, D = x.shape
        x = rearrange(x, self.order)
        if not self.use_decoder:
            enc, _ = self.eva(x)
            return self.up_projection(rearrange(enc, self.inverse, w=W, h=H, d=D))
        self.eva.patch_drop = _GivenKeep(self.keep)
        enc, keep = self.eva(x)
        n = W * H * D
        restored = self.mask_token.expand(B, n, C).clone()
        for b in range(B):
            restored[b, keep[b]] = enc[b]
        dec, _ = self.decoder(restored)
        return self.up_projection(rearrange(dec, self.inverse, w=W, h=H, d=D))


class EvaSimMIMRef(nn.Module):
    """nnssl EvaSimMIM's module tree and forward (`src/nnssl/architectures/evaSimMIM_module.py`), composed from the upstream building blocks: tokens in
    (w h d) order, masked ones (mask 0) replaced by mask_token before the full-length Eva encoder, PatchDecode."""

    def __init__(self, input_channels, embed_dim, patch_embed_size, output_channels, encoder_eva_depth,
                 encoder_eva_numheads, input_shape, init_values, scale_attn_inner, drop_path_rate):
        super().__init__()
        from dynamic_network_architectures.building_blocks.eva import Eva
        from dynamic_network_architectures.building_blocks.patch_encode_decode import LayerNormNd, PatchDecode, PatchEmbed
        self.grid = tuple(i // p for i, p in zip(input_shape, patch_embed_size))
        self.down_projection = PatchEmbed(patch_embed_size, input_channels, embed_dim)
        self.eva = Eva(embed_dim=embed_dim, depth=encoder_eva_depth, num_heads=encoder_eva_numheads, ref_feat_shape=self.grid,
                       init_values=init_values, scale_attn_inner=scale_attn_inner, drop_path_rate=drop_path_rate)
        self.up_projection = PatchDecode(patch_embed_size, embed_dim, output_channels, norm=LayerNormNd, activation=nn.GELU)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.token_mask = None

    def forward(self, x):
        from einops import rearrange
        x = self.down_projection(x)
        B, C, W, H, D = x.shape
        tokens = rearrange(x, "b c w h d -> b (w h d) c")
        # the sparse mask (B, 1, W, H, D) of the trainer, flattened the same way
        m = self.token_mask.view(B, 1, W, H, D).flatten(start_dim=2).transpose(1, 2)
        tokens = tokens * m + self.mask_token * (1 - m)
        enc, _ = self.eva(tokens)
        return self.up_projection(rearrange(enc, "b (w h d) c -> b c w h d", w=W, h=H, d=D))


class VoCoRef(nn.Module):
    """nnssl VoCoArchitecture's module tree and forward (`src/nnssl/architectures/voco_architecture.py`; nnssl is not on PyPI): `encoder` = the
    ResidualEncoder of dynamic-network-architectures' ResidualEncoderUNet (the intended encoder_only network, spec
    6.10), `adaptive_pool`, `projector.layer{1,2,3}` = Linear → InstanceNorm1d(affine=False) → ReLU, twice, then Linear."""

    def __init__(self, input_channels, n_stages, features_per_stage, strides, n_blocks_per_stage, head_dim):
        super().__init__()
        from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
        unet = ResidualEncoderUNet(
            input_channels, n_stages, features_per_stage, nn.Conv3d, 3, strides, n_blocks_per_stage, 1,
            [1] * (n_stages - 1), conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
            nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False)
        self.encoder = unet.encoder
        self.adaptive_pool = nn.AdaptiveAvgPool3d((1, 1, 1))

        def block(i, o, last=False):
            if last:
                return nn.Sequential(nn.Linear(i, o))
            return nn.Sequential(nn.Linear(i, o), nn.InstanceNorm1d(o, affine=False, track_running_stats=False), nn.ReLU(inplace=True))

        self.projector = nn.Module()
        self.projector.layer1 = block(sum(features_per_stage), head_dim)
        self.projector.layer2 = block(head_dim, head_dim)
        self.projector.layer3 = block(head_dim, head_dim, last=True)

    def forward(self, x):
        out = self.encoder(x)
        flat = torch.concat([self.adaptive_pool(o) for o in out], dim=1).reshape(x.shape[0], -1)
        return self.projector.layer3(self.projector.layer2(self.projector.layer1(flat)))


class VoCoEvaRef(nn.Module):
    """nnssl VoCoEvaArchitecture's module tree and forward (`voco_architecture.py`): `encoder` = EvaMAE without decoder and with
    do_up_projection=False (an Identity), `adaptive_pool` over its [B, C, W, H, D] output, the same projector."""

    def __init__(self, head_dim, **evamae):
        super().__init__()
        self.encoder = EvaMAERef(decoder_eva_depth=0, decoder_eva_numheads=0, output_channels=1, **evamae)
        self.encoder.up_projection = nn.Identity()
        self.adaptive_pool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.projector = nn.Module()
        c = evamae["embed_dim"]
        norm = lambda: nn.InstanceNorm1d(head_dim, affine=False, track_running_stats=False)
        self.projector.layer1 = nn.Sequential(nn.Linear(c, head_dim), norm(), nn.ReLU(inplace=True))
        self.projector.layer2 = nn.Sequential(nn.Linear(head_dim, head_dim), norm(), nn.ReLU(inplace=True))
        self.projector.layer3 = nn.Sequential(nn.Linear(head_dim, head_dim))

    def forward(self, x):
        flat = self.adaptive_pool(self.encoder(x)).reshape(x.shape[0], -1)
        return self.projector.layer3(self.projector.layer2(self.projector.layer1(flat)))


def main():
    torch.set_num_threads(2)
    spec = json.loads(sys.argv[1])
    net = build(spec["arch"], spec["kwargs"]).eval()
    if spec.get("token_mask") is not None:
        net.token_mask = torch.tensor(spec["token_mask"], dtype=torch.float32)
    if spec.get("keep_indices") is not None:
        net.keep = torch.tensor(spec["keep_indices"], dtype=torch.long)
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
    if spec["arch"] == "evamae":
        # the stand-in PatchDropout has no state; nnssl's EvaMAE has the same keys
        pass
    ours = set(sd.keys())
    res = net.load_state_dict(sd, strict=True)
    x = load_file(spec["input"])["x"]
    with torch.no_grad():
        y = net(x)
    save_file({"y": y.contiguous()}, spec["output"])
    print(json.dumps({"missing": list(res.missing_keys), "unexpected": list(res.unexpected_keys),
                      "upstream_only": sorted(upstream - ours), "ours_only": sorted(ours - upstream),
                      "params": sum(p.numel() for p in net.parameters())}))


if __name__ == "__main__":
    main()
