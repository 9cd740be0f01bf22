/**
 * Adversarial tier, hostile checkpoints (issue 13 point 2): `ssl3d import` / `ssl3d export` on archives built to
 * exhaust memory or time. Each case asserts the exit code (3: input data), a one-line message naming the file and
 * the field, that the child's peak memory stays within a fixed margin of a benign import measured in the same run,
 * and that nothing beside the input was written, rewritten or touched (bytes and mtimes).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { encodeSafetensors } from "../../runtime/src/models/safetensors.js";
import { pickle, type PyValue } from "../../runtime/src/models/torch-zip.js";
import { assertSameTree, snapshotTree } from "./helpers/cli.js";
import {
  billionLaughs,
  checkpointPickle,
  deepDict,
  errorLine,
  floats,
  op,
  runCli,
  torchArchive,
  type CliRun,
  type TensorSpec,
} from "./hostile-files.js";

/** Headroom over the benign run: generous for noise, far below what the attacks allocated before (GBs). */
const MARGIN_MIB = 256;

let dir: string;
let baseline: CliRun;

/** Raw ops of a plain value (a complete pickle minus PROTO and STOP), to splice into a checkpoint dict. */
function valueOps(v: PyValue): Buffer {
  const p = pickle(v);
  return p.subarray(2, p.length - 1);
}

const small: TensorSpec = { name: "w", key: "0", numel: 4, shape: [2, 2] };

function write(name: string, bytes: Buffer): string {
  const f = join(dir, name);
  writeFileSync(f, bytes);
  return f;
}

/** Run, then check exit code 3, one error line naming the file (and field), bounded memory, no output written. */
function expectRejected(file: string, args: readonly string[], pattern: RegExp, env: NodeJS.ProcessEnv = {}): CliRun {
  const before = snapshotTree(dir);
  const r = runCli(args, { env });
  const line = errorLine(r);
  assert.equal(r.status, 3, `exit ${r.status} (${r.signal ?? ""}): ${r.stderr}`);
  assert.ok(line.includes(file), `message names the file: ${line}`);
  assert.match(line, pattern);
  assert.equal(
    r.stderr
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("ssl3d: error:")).length,
    1,
    r.stderr,
  );
  assert.ok(
    r.peakMiB < baseline.peakMiB + MARGIN_MIB,
    `peak ${r.peakMiB.toFixed(0)} MiB vs benign ${baseline.peakMiB.toFixed(0)} MiB`,
  );
  // nothing written, and no file beside the input rewritten or touched (bytes and mtimes)
  assertSameTree(before, snapshotTree(dir), dir);
  return r;
}

function importArgs(file: string, ...extra: string[]): string[] {
  return ["import", file, "--architecture", "resenc-xs", "--non-strict", ...extra];
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), "ssl3d-adv-ckpt-"));
  // benign: a well-formed archive whose one tensor matches no parameter (read fully, network built, exit 3)
  const f = write("benign.pth", torchArchive(checkpointPickle([small]), [{ name: "0", data: floats(4) }]));
  baseline = runCli(importArgs(f));
  assert.equal(baseline.status, 3, baseline.stderr);
  assert.match(errorLine(baseline), /no parameter of resenc-xs matches/);
  assert.ok(Number.isFinite(baseline.peakMiB));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("pickle expansion", () => {
  test("a billion-laughs adaptation plan (40 levels of 10 shared references) stops at the node limit", () => {
    const pkl = checkpointPickle([small], {
      nnssl_adaptation_plan: Buffer.concat([
        op.emptyDict,
        op.str("architecture_plans"),
        billionLaughs(40),
        Buffer.from([0x73]),
      ]),
    });
    assert.ok(pkl.length < 2000, `${pkl.length} bytes`);
    const f = write("laughs.pth", torchArchive(pkl, [{ name: "0", data: floats(4) }]));
    expectRejected(f, importArgs(f), /nnssl_adaptation_plan: .*more than 1000000 nodes.*SSL3D_PICKLE_MAX_NODES/);
  });

  test("the node limit is overridable", () => {
    const pkl = checkpointPickle([small], {
      nnssl_adaptation_plan: Buffer.concat([op.emptyDict, op.str("x"), billionLaughs(3), Buffer.from([0x73])]),
    });
    const f = write("laughs-small.pth", torchArchive(pkl, [{ name: "0", data: floats(4) }]));
    // 10^4 leaves: fine by default, refused with a limit of 500
    expectRejected(f, importArgs(f), /more than 500 nodes/, { SSL3D_PICKLE_MAX_NODES: "500" });
    // by default the plan is read whole (and then found to name no architecture)
    const ok = runCli(importArgs(f));
    assert.match(errorLine(ok), /arch_class_name: unknown architecture class/);
  });

  test("a billion-laughs state-dict key is refused without stringifying it", () => {
    const pkl = checkpointPickle([small], {}, () => billionLaughs(40, 10, 100));
    const f = write("laughs-key.pth", torchArchive(pkl, [{ name: "0", data: floats(4) }]));
    expectRejected(f, importArgs(f), /network_weights: state-dict key \[\[\[.*is not a string/);
  });

  test("a plan that contains itself is a cycle error, not a stack overflow", () => {
    const cyc = Buffer.concat([op.emptyList, op.put(7), op.get(7), op.append]);
    const f = write(
      "cycle.pth",
      torchArchive(
        checkpointPickle([small], {
          nnssl_adaptation_plan: Buffer.concat([op.emptyDict, op.str("p"), cyc, Buffer.from([0x73])]),
        }),
        [{ name: "0", data: floats(4) }],
      ),
    );
    expectRejected(f, importArgs(f), /nnssl_adaptation_plan: .*contains itself/);
  });

  test("a negative BINSTRING length (the reader would step backwards forever) is an error", () => {
    // found by the fuzz tier: BINSTRING's length is a signed int32
    const pkl = Buffer.from([0x80, 0x02, 0x54, 0xfb, 0xff, 0xff, 0xff, 0x2e]);
    const f = write("negative-length.pth", torchArchive(pkl, []));
    expectRejected(f, importArgs(f), /archive\/data\.pkl: pickle: invalid length -5/);
  });

  test("a plan nested 100000 levels deep is refused at the depth limit", () => {
    const f = write(
      "deep.pth",
      torchArchive(checkpointPickle([small], { nnssl_adaptation_plan: deepDict(100_000) }), [
        { name: "0", data: floats(4) },
      ]),
    );
    expectRejected(f, importArgs(f), /nnssl_adaptation_plan: .*deeper than 200 levels.*SSL3D_PICKLE_MAX_DEPTH/);
  });
});

describe("storages and views", () => {
  test("a stride-0 view of 2^30 elements over a 1-element storage fails before allocating", () => {
    const t: TensorSpec = { name: "w", key: "0", numel: 1, shape: [2 ** 30], stride: [0] };
    const f = write("stride0.pth", torchArchive(checkpointPickle([t]), [{ name: "0", data: floats(1) }]));
    expectRejected(f, importArgs(f), /network_weights\.w: tensor view: 1073741824 elements over a storage of 1/);
  });

  test("a declared storage size that the record does not hold", () => {
    const t: TensorSpec = { name: "w", key: "0", numel: 1_000_000_000, shape: [1_000_000_000] };
    const f = write("declared.pth", torchArchive(checkpointPickle([t]), [{ name: "0", data: floats(4) }]));
    expectRejected(
      f,
      importArgs(f),
      /archive\/data\/0: storage declares 1000000000 float32 elements .* holds 16 bytes/,
    );
  });

  test("an offset past the storage end", () => {
    const t: TensorSpec = { name: "w", key: "0", numel: 4, shape: [2, 2], offset: 3 };
    const f = write("offset.pth", torchArchive(checkpointPickle([t]), [{ name: "0", data: floats(4) }]));
    expectRejected(f, importArgs(f), /network_weights\.w: tensor view: exceeds its storage/);
  });

  test("a negative stride and a non-integer shape", () => {
    const neg: TensorSpec = { name: "w", key: "0", numel: 4, shape: [4], stride: [-1], offset: 3 };
    const f = write("negative.pth", torchArchive(checkpointPickle([neg]), [{ name: "0", data: floats(4) }]));
    expectRejected(f, importArgs(f), /tensor view: stride \[-1\] does not match/);
  });

  test("a storage record missing from the archive", () => {
    const f = write("missing.pth", torchArchive(checkpointPickle([small]), []));
    expectRejected(f, importArgs(f), /archive\/data\/0: storage record missing/);
  });
});

describe("decompression", () => {
  test("a record that inflates far beyond its declared size (zip bomb) stops at the declared size", () => {
    const zeros = Buffer.alloc(200 * 2 ** 20);
    const t: TensorSpec = { name: "w", key: "0", numel: 4, shape: [4] };
    const f = write(
      "bomb.pth",
      torchArchive(checkpointPickle([t]), [{ name: "0", data: zeros, method: 8, declaredSize: 16 }]),
    );
    expectRejected(
      f,
      importArgs(f),
      /archive\/data\/0: storage declares 4 float32 elements|archive\/data\/0: deflated entry inflates to more than the 16 bytes/,
    );
  });

  test("an honest 200 MiB record beyond SSL3D_CHECKPOINT_MAX_BYTES is refused before inflating", () => {
    const n = 50 * 2 ** 20;
    const t: TensorSpec = { name: "w", key: "0", numel: n, shape: [n] };
    const f = write(
      "big.pth",
      torchArchive(checkpointPickle([t]), [{ name: "0", data: Buffer.alloc(4 * n), method: 8 }]),
    );
    expectRejected(
      f,
      importArgs(f),
      /archive\/data\/0: inflating archive\/data\/0 needs 200\.0 MiB, beyond .* limit of [\d.]+ MiB.*SSL3D_CHECKPOINT_MAX_BYTES/,
      { SSL3D_CHECKPOINT_MAX_BYTES: String(64 * 2 ** 20) },
    );
  });

  test("a deflated storage shared by 64 tensors is inflated and decoded once", () => {
    const n = 4 * 2 ** 20; // 16 MiB of float32
    const tensors: TensorSpec[] = Array.from({ length: 64 }, (_, i) => ({
      name: `alias${i}`,
      key: "0",
      numel: n,
      shape: [n],
    }));
    const f = write(
      "shared.pth",
      torchArchive(checkpointPickle(tensors), [{ name: "0", data: Buffer.alloc(4 * n), method: 8 }]),
    );
    // 64 separate inflations and decodings would need 2 GiB; once each fits a 100 MiB budget
    const r = runCli(importArgs(f), { env: { SSL3D_CHECKPOINT_MAX_BYTES: String(100 * 2 ** 20) } });
    assert.equal(r.status, 3, r.stderr);
    assert.match(errorLine(r), /no parameter of resenc-xs matches/);
    assert.ok(
      r.peakMiB < baseline.peakMiB + MARGIN_MIB,
      `peak ${r.peakMiB.toFixed(0)} MiB vs ${baseline.peakMiB.toFixed(0)} MiB`,
    );
  });

  test("corrupt deflate data is a data error", () => {
    const bytes = torchArchive(checkpointPickle([small]), [{ name: "0", data: floats(4), method: 8 }]);
    const at = bytes.indexOf(Buffer.from("archive/data/0")) + "archive/data/0".length;
    bytes.fill(0xff, at, at + 8);
    const f = write("corrupt.pth", bytes);
    expectRejected(f, importArgs(f), /archive\/data\/0: (corrupt deflate data|deflated entry inflates)/);
  });
});

describe("architecture settings read from files", () => {
  const plan = (kwargs: Record<string, PyValue>, cls = "ResidualEncoderUNet"): Buffer =>
    valueOps({
      architecture_plans: { arch_class_name: cls, arch_kwargs: kwargs, arch_kwargs_requiring_import: [] },
      pretrain_num_input_channels: 1,
      recommended_downstream_patchsize: [16, 16, 16],
    });

  test("a plan asking for a million blocks per stage fails fast in import", () => {
    const kw = {
      features_per_stage: [8, 16, 32, 64],
      strides: [
        [1, 1, 1],
        [2, 2, 2],
        [2, 2, 2],
        [2, 2, 2],
      ],
      n_blocks_per_stage: [1_000_000, 1_000_000, 1_000_000, 1_000_000],
      n_conv_per_stage_decoder: [1, 1, 1],
    };
    const f = write(
      "blocks.pth",
      torchArchive(checkpointPickle([small], { nnssl_adaptation_plan: plan(kw) }), [{ name: "0", data: floats(4) }]),
    );
    const r = expectRejected(
      f,
      ["import", f],
      /nnssl_adaptation_plan\.architecture_plans: network too large: more than 100000 parameter tensors/,
    );
    assert.ok(r.seconds < 60, `${r.seconds} s`);
  });

  test("a plan with absurd widths fails on the parameter count", () => {
    const kw = {
      features_per_stage: [100_000, 100_000],
      strides: [1, 2],
      n_blocks_per_stage: [1, 1],
      n_conv_per_stage_decoder: [1],
    };
    const f = write(
      "wide.pth",
      torchArchive(checkpointPickle([small], { nnssl_adaptation_plan: plan(kw) }), [{ name: "0", data: floats(4) }]),
    );
    expectRejected(
      f,
      ["import", f],
      /nnssl_adaptation_plan\.architecture_plans: network too large: more than \d+ parameters/,
    );
  });

  test("a Primus plan whose patch size implies 10^9 tokens", () => {
    const p = valueOps({
      architecture_plans: { arch_class_name: "PrimusM", arch_kwargs: null, arch_kwargs_requiring_import: null },
      pretrain_num_input_channels: 1,
      recommended_downstream_patchsize: [8000, 8000, 8000],
    });
    const f = write(
      "tokens.pth",
      torchArchive(checkpointPickle([small], { nnssl_adaptation_plan: p }), [{ name: "0", data: floats(4) }]),
    );
    expectRejected(f, ["import", f], /nnssl_adaptation_plan\.architecture_plans: network too large/);
  });

  test("export of an ssl3d file whose ssl3d.options ask for a million blocks", () => {
    const meta = {
      "ssl3d.architecture": "resenc-xs",
      "ssl3d.options": JSON.stringify({
        features: [8, 16],
        blocks: [1_000_000, 1_000_000],
        strides: [1, 2],
        decoderConvs: [1],
      }),
    };
    const f = write(
      "blocks.safetensors",
      encodeSafetensors(new Map([["x", { shape: [1], data: new Float32Array(1) }]]), meta),
    );
    const r = expectRejected(
      f,
      ["export", f, "--out", join(dir, "out.pth"), "--format", "pth-compatible"],
      /__metadata__\.ssl3d\.options: network too large/,
    );
    assert.ok(r.seconds < 60);
  });

  test("safetensors tensors that overlap (10000 names over one 1 MiB region) are refused", () => {
    const n = 2 ** 18;
    const header: Record<string, unknown> = {
      __metadata__: { "ssl3d.architecture": "resenc-xs", "ssl3d.options": "{}" },
    };
    for (let i = 0; i < 10_000; i++) header[`t${i}`] = { dtype: "F32", shape: [n], data_offsets: [0, 4 * n] };
    let json = JSON.stringify(header);
    while (json.length % 8 !== 0) json += " ";
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    const f = write("overlap.safetensors", Buffer.concat([len, Buffer.from(json), Buffer.alloc(4 * n)]));
    expectRejected(f, ["export", f, "--out", join(dir, "out.pth")], /t\d+\.data_offsets: data_offsets overlap/);
  });
});
