"""PyTorch CPU reference for bench/kernels.ts: the same workloads (NCDHW), printed as one JSON line of seconds.

Usage: python3 bench/kernels_torch.py THREADS REPS [memory SIZE]
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads, reps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)


out = {}


def timed(name, fn, n, warmup=1):
    """Median wall seconds into out[name], median process CPU seconds (all threads) into out[name + "Cpu"]."""
    for _ in range(warmup):
        fn()
    ts, cs = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    out[name] = sorted(ts)[len(ts) // 2]
    out[name + "Cpu"] = sorted(cs)[len(cs) // 2]


class ResBlock(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.c1, self.n1 = nn.Conv3d(f, f, 3, padding=1, bias=False), nn.InstanceNorm3d(f, affine=True)
        self.c2, self.n2 = nn.Conv3d(f, f, 3, padding=1, bias=False), nn.InstanceNorm3d(f, affine=True)

    def forward(self, x):
        r = F.leaky_relu(self.n1(self.c1(x)), 0.01)
        return F.leaky_relu(self.n2(self.c2(r)) + x, 0.01)


class ResUNet(nn.Module):
    def __init__(self, feats=(8, 16, 32, 64), blocks=None):
        super().__init__()
        blocks = blocks or [1] * len(feats)
        self.stem, self.stem_n = nn.Conv3d(1, feats[0], 3, padding=1, bias=False), nn.InstanceNorm3d(feats[0], affine=True)
        self.down = nn.ModuleList([nn.Conv3d(feats[i - 1], feats[i], 3, stride=2, padding=1, bias=False) for i in range(1, len(feats))])
        self.down_n = nn.ModuleList([nn.InstanceNorm3d(f, affine=True) for f in feats[1:]])
        self.blocks = nn.ModuleList([nn.Sequential(*[ResBlock(f) for _ in range(n)]) for f, n in zip(feats, blocks)])
        self.ups = nn.ModuleList([nn.ConvTranspose3d(feats[i + 1], feats[i], 2, stride=2, bias=False) for i in range(len(feats) - 1)])
        self.up_c = nn.ModuleList([nn.Conv3d(2 * feats[i], feats[i], 3, padding=1, bias=False) for i in range(len(feats) - 1)])
        self.up_n = nn.ModuleList([nn.InstanceNorm3d(feats[i], affine=True) for i in range(len(feats) - 1)])
        self.head = nn.Conv3d(feats[0], 2, 1)

    def forward(self, x):
        h = F.leaky_relu(self.stem_n(self.stem(x)), 0.01)
        skips = []
        for i, blk in enumerate(self.blocks):
            if i > 0:
                h = F.leaky_relu(self.down_n[i - 1](self.down[i - 1](h)), 0.01)
            h = blk(h)
            skips.append(h)
        for i in range(len(self.ups) - 1, -1, -1):
            h = F.leaky_relu(self.up_n[i](self.up_c[i](torch.cat([self.ups[i](h), skips[i]], 1))), 0.01)
        return self.head(h)


class Block(nn.Module):
    def __init__(self, c=192, heads=3, mlp=768):
        super().__init__()
        self.heads = heads
        self.ln1, self.qkv, self.proj = nn.LayerNorm(c), nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.ln2, self.fc1, self.fc2 = nn.LayerNorm(c), nn.Linear(c, mlp), nn.Linear(mlp, c)

    def forward(self, x):
        b, t, c = x.shape
        d = c // self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), -1)
        h = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, c))
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h))))


if len(sys.argv) > 3 and sys.argv[3] == "memory":
    import resource

    size = int(sys.argv[4])
    net = ResUNet((32, 64, 128, 256, 320, 320), (1, 3, 4, 6, 6, 6))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    xi = torch.randn(2, 1, size, size, size)
    lab = (torch.rand(2, size, size, size) > 0.5).long()
    setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    opt.zero_grad()
    F.cross_entropy(net(xi), lab).backward()
    opt.step()
    seconds = time.perf_counter() - t0
    print(json.dumps({"maxRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "setupRssMiB": setup, "seconds": seconds}))
    sys.exit(0)

x = torch.randn(2, 32, 32, 32, 32)
w = (torch.randn(32, 32, 3, 3, 3) * 0.05).requires_grad_()
dy = torch.randn(2, 32, 32, 32, 32)
with torch.no_grad():
    timed("convFwd", lambda: F.conv3d(x, w, padding=1), reps)
xg = x.clone().requires_grad_()


def conv_fb():
    xg.grad = None
    w.grad = None
    F.conv3d(xg, w, padding=1).backward(dy)


timed("convFwdBwd", conv_fb, reps)

net = ResUNet()
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
xi = torch.randn(2, 1, 32, 32, 32)
lab = (torch.rand(2, 32, 32, 32) > 0.5).long()


def unet_step():
    opt.zero_grad()
    F.cross_entropy(net(xi), lab).backward()
    opt.step()


timed("resunetStep", unet_step, reps)

blk = Block()
opt2 = torch.optim.SGD(blk.parameters(), lr=0.01, momentum=0.99, nesterov=True)
xt = torch.randn(2, 512, 192)


def vit_step():
    opt2.zero_grad()
    blk(xt).square().mean().backward()
    opt2.step()


timed("vitStep", vit_step, reps)
print(json.dumps(out))
