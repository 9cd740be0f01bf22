"""Training-dynamics reference: nnssl's training step, run in PyTorch on fixed batches and masks.

usage: torch-trajectory.py SPEC_JSON
SPEC: {"arch": "resenc"|"evamae", "kwargs": {...} (as torch-models.py), "weights": initial weights (safetensors,
       loaded strictly), "data": safetensors with "x.<i>" (B,C,X,Y,Z) per step i and "mask.<i>" (B,1,X,Y,Z; 1 visible,
       CNN MAE) or "keep.<i>" (B,K kept token indices in the network's flattening order, EvaMAE) or "target.<i>"
       (Models Genesis: the uncorrupted crops),
       "method": "mae"|"models-genesis"|"simclr", "steps": N, "iters_per_epoch": I,
       "optimizer": {"kind": "sgd-nesterov", "lr", "momentum", "weight_decay"} |
                    {"kind": "adamw", "lr", "betas", "eps", "weight_decay"},
       "schedule": {"kind": "poly", "epochs", "exponent"} | {"kind": "warmup-poly", "epochs", "warmup", "exponent"},
       "clip": max grad norm or null, "threads": torch intra-op threads, "output": safetensors of the final weights}
Prints one JSON line per step ({"step", "epoch", "lr", "loss", "grad_norm"}) and a last line {"done": true}.

What it reproduces (nnssl, src/nnssl/training/nnsslTrainer/):
- AbstractTrainer.on_train_epoch_start: the scheduler sets the LR once per epoch, `lr_scheduler.step(current_epoch)`.
  CNN trainers (AbstractTrainer.configure_optimizers): SGD(lr, momentum, nesterov=True, weight_decay) with
  PolyLRScheduler (lr/lr_scheduler/polylr.py): lr0 · (1 − epoch/epochs)^0.9.
  Eva trainers (masked_image_modeling/BaseEvaMAETrainer.configure_optimizers): AdamW(betas=(0.9, 0.98),
  amsgrad=False) with Lin_incr_LRScheduler (lr0/W · (epoch + 1)) for epochs < W, then the SAME optimizer (moments
  kept) with PolyLRScheduler_offset (lr0 · (1 − (epoch − W)/(epochs − W))^0.9) (lr_scheduler/warmup.py). Upstream
  asks for `fused=True`, which torch has only for CUDA; the unfused update is the same arithmetic.
- train_step: zero_grad(set_to_none=True); forward; loss; backward; clip_grad_norm_(parameters, clip); step. fp32 on
  CPU (no autocast, no GradScaler, as upstream on a non-CUDA device).
- MAE (BaseMAETrainer.train_step): output = network(data · mask); MAEMSELoss (training/loss/mse_loss.py):
  Σ((output − data)² · (1 − mask)) / Σ(1 − mask).
- EvaMAE (BaseEvaMAETrainer.train_step): output, keep = network(data) with the given kept tokens; the loss mask
  marks the voxels of dropped tokens. Deviation (stated in docs/parity.md): it is built in the network's flattening
  order (the tokens actually dropped), not with upstream's create_mask reshape, which transposes axes 0 and 1 when
  the network flattens (h w d) (ssl3d does not reproduce that quirk, docs/training.md).
- Models Genesis (models_genesis/ModelGenesisTrainer.train_step): output = network(input); torch.nn.MSELoss()
  (mean over all voxels) against the uncorrupted target.
- SimCLR (simCLR/simCLRTrainer.train_step): embeddings of all crops (references first, then their partners);
  z_i, z_j = F.normalize of the two halves; NTXentLoss (training/loss/contrastive_loss.py): cosine similarities of
  cat(z_j, z_i), logits = (positive, the 2N − 2 negatives of the row) / temperature, cross-entropy with label 0
  summed over the 2N rows, divided by 2N.
"""
import importlib.util
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

_spec = importlib.util.spec_from_file_location("torch_models", os.path.join(os.path.dirname(__file__), "torch-models.py"))
torch_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(torch_models)


def lr_at(s, lr0, epoch):
    if s["kind"] == "poly":
        return lr0 * (1 - epoch / s["epochs"]) ** s["exponent"]
    w = s["warmup"]
    if epoch < w:
        return lr0 / w * (epoch + 1)
    return lr0 * (1 - max(0, epoch - w) / (s["epochs"] - w)) ** s["exponent"]


def make_optimizer(params, o):
    if o["kind"] == "sgd-nesterov":
        return torch.optim.SGD(params, o["lr"], momentum=o["momentum"], nesterov=True, weight_decay=o["weight_decay"])
    return torch.optim.AdamW(params, o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"],
                             amsgrad=False)


def token_loss_mask(net, keep, shape):
    """(B,1,X,Y,Z) mask, 1 on voxels of dropped tokens: scatter the kept indices into the flat token list, un-flatten
    with the network's own inverse order, repeat each token over its patch."""
    from einops import rearrange
    b = keep.shape[0]
    p = net.down_projection.proj.kernel_size
    grid = [s // q for s, q in zip(shape, p)]
    flat = torch.zeros(b, grid[0] * grid[1] * grid[2])
    flat.scatter_(1, keep, 1.0)
    pattern = "b (h w d) -> b w h d" if net.inverse.startswith("b (h w d)") else "b (w h d) -> b w h d"
    kept = rearrange(flat, pattern, w=grid[0], h=grid[1], d=grid[2])
    for axis, rep in enumerate(p):
        kept = kept.repeat_interleave(rep, dim=axis + 1)
    return (1 - kept).unsqueeze(1)


def nt_xent(zi, zj, temperature):
    n = zi.shape[0]
    reps = torch.cat([zj, zi], dim=0)
    sim = torch.nn.functional.cosine_similarity(reps.unsqueeze(1), reps.unsqueeze(0), dim=-1)
    positives = torch.cat([torch.diag(sim, n), torch.diag(sim, -n)]).view(2 * n, 1)
    eye = torch.eye(2 * n, dtype=torch.bool)
    keep = ~(eye | torch.roll(eye, n, dims=1))
    negatives = sim[keep].view(2 * n, -1)
    logits = torch.cat([positives, negatives], dim=1) / temperature
    labels = torch.zeros(2 * n, dtype=torch.long)
    return torch.nn.functional.cross_entropy(logits, labels, reduction="sum") / (2 * n)


def step_loss(spec, net, data, i):
    x = data[f"x.{i}"]
    if spec["method"] == "models-genesis":
        return torch.nn.functional.mse_loss(net(x), data[f"target.{i}"])
    if spec["method"] == "simclr":
        emb = net(x)
        nref = x.shape[0] // 2
        zi = torch.nn.functional.normalize(emb[:nref], dim=1)
        zj = torch.nn.functional.normalize(emb[nref:], dim=1)
        return nt_xent(zi, zj, spec.get("temperature", 0.5))
    return mae_loss(spec, net, data, i)


def mae_loss(spec, net, data, i):
    if spec["arch"] == "resenc":
        mask = data[f"mask.{i}"]
        x = data[f"x.{i}"]
        out = net(x * mask)
        return torch.sum((out - x) ** 2 * (1 - mask)) / torch.sum(1 - mask)
    x = data[f"x.{i}"]
    keep = data[f"keep.{i}"].to(torch.long)
    net.keep = keep
    out = net(x)
    loss_mask = token_loss_mask(net, keep, x.shape[2:])
    return torch.sum((out - x) ** 2 * loss_mask) / torch.sum(loss_mask)


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(int(spec.get("threads", 2)))
    net = torch_models.build(spec["arch"], spec["kwargs"])
    res = net.load_state_dict(load_file(spec["weights"]), strict=True)
    assert not res.missing_keys and not res.unexpected_keys, res
    net.train()
    data = load_file(spec["data"])
    params = list(net.parameters())
    o = spec["optimizer"]
    opt = make_optimizer(params, o)
    per_epoch = spec["iters_per_epoch"]
    for i in range(spec["steps"]):
        epoch = i // per_epoch
        if i % per_epoch == 0:
            lr = lr_at(spec["schedule"], o["lr"], epoch)
            for g in opt.param_groups:
                g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = step_loss(spec, net, data, i)
        loss.backward()
        clip = spec["clip"]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else float("inf"))
        opt.step()
        print(json.dumps({"step": i, "epoch": epoch, "lr": lr, "loss": loss.item(), "grad_norm": float(norm)}), flush=True)
    save_file({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, spec["output"])
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
