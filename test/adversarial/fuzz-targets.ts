/**
 * Fuzz targets of the adversarial tier (property-based with fast-check, fixed seed, bounded runs). Run one target
 * per child process (fuzz.test.ts starts them with a small heap and a time bound):
 *
 *   node --max-old-space-size=512 --import tsx test/adversarial/fuzz-targets.ts <target> [runs]
 *
 * Property of every target: on arbitrary or mutated input the reader either returns or throws one of the
 * runtime's typed errors (`Ssl3dError`: ConfigError/DataError/...), never a TypeError, RangeError or stack
 * overflow. On success the child prints one JSON line `{target, runs, maxRssMiB}`; on a counterexample
 * fast-check's report (seed, path, shrunk input) goes to stderr and the exit code is 1.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import {
  flattenCollection,
  parseCollection,
  resolveCollectionPaths,
  serializeCollection,
} from "../../runtime/src/config/collection.js";
import { Ssl3dError } from "../../runtime/src/errors.js";
import { encodeNifti, parseNiftiHeader, readNifti, readNiftiHeader } from "../../runtime/src/io/nifti.js";
import { parseStrictJson } from "../../runtime/src/io/strict-json.js";
import { parseManifests } from "../../runtime/src/local/manifests.js";
import * as tf from "@tensorflow/tfjs";
import type { Network } from "../../runtime/src/models/architecture.js";
import {
  architectureFromAdaptationPlan,
  networkFromFileSettings,
  readTorchCheckpoint,
} from "../../runtime/src/models/checkpoint-import.js";
import { networkFromSafetensors } from "../../runtime/src/models/network-io.js";
import { architectureKeys, createNetwork } from "../../runtime/src/models/registry.js";
import { decodeSafetensors, encodeSafetensors } from "../../runtime/src/models/safetensors.js";
import { PyOrderedDict, TorchTensor, torchSave } from "../../runtime/src/models/torch-zip.js";
import { ROOT, torchArchive } from "./hostile-files.js";

const SEED = 20261205;
const tmp = mkdtempSync(join(tmpdir(), "ssl3d-fuzz-"));

/** Run `f`; an Ssl3dError is an accepted outcome, anything else fails the property. */
async function typedOnly(f: () => unknown): Promise<void> {
  try {
    await f();
  } catch (err) {
    if (err instanceof Ssl3dError) return;
    throw err;
  }
}

/** Overwrite bytes of `base` at random positions (the mutation generator of the binary targets). */
function mutated(base: Uint8Array, maxEdits = 8): fc.Arbitrary<Uint8Array> {
  const edit = fc.record({
    at: fc.nat({ max: base.length - 1 }),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  });
  return fc.array(edit, { minLength: 1, maxLength: maxEdits }).map((edits) => {
    const b = Uint8Array.from(base);
    for (const e of edits) b.set(e.bytes.subarray(0, b.length - e.at), e.at);
    return b;
  });
}

// ---- NIfTI -------------------------------------------------------------------------------------------------------

const NIFTI_BASE = encodeNifti({
  data: Float32Array.from({ length: 24 }, (_, i) => i),
  shape: [2, 3, 4],
  affine: [2, 0, 0, 1, 0, 2, 0, 2, 0, 0, 2, 3, 0, 0, 0, 1],
});
/** Header fields (offset, kind) worth hitting with extreme values. */
const NIFTI_FIELDS: readonly [number, "i16" | "i32" | "f32"][] = [
  [0, "i32"],
  [40, "i16"],
  [42, "i16"],
  [44, "i16"],
  [46, "i16"],
  [48, "i16"],
  [50, "i16"],
  [70, "i16"],
  [72, "i16"],
  [76, "f32"],
  [80, "f32"],
  [84, "f32"],
  [88, "f32"],
  [108, "f32"],
  [112, "f32"],
  [116, "f32"],
  [252, "i16"],
  [254, "i16"],
  [256, "f32"],
  [260, "f32"],
  [264, "f32"],
  [268, "f32"],
  [280, "f32"],
  [284, "f32"],
  [300, "f32"],
  [324, "f32"],
];

const niftiBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  mutated(NIFTI_BASE),
  fc
    .array(
      fc.record({
        field: fc.constantFrom(...NIFTI_FIELDS),
        v: fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.double()),
      }),
      { minLength: 1, maxLength: 4 },
    )
    .map((sets) => {
      const b = Buffer.from(NIFTI_BASE);
      for (const {
        field: [at, kind],
        v,
      } of sets) {
        if (kind === "f32") b.writeFloatLE(v, at);
        else if (kind === "i16") b.writeInt16LE(Number.isFinite(v) ? Math.trunc(v) % 32768 : 0, at);
        else b.writeInt32LE(Number.isFinite(v) ? Math.trunc(v) | 0 : 0, at);
      }
      return new Uint8Array(b);
    }),
  fc.uint8Array({ maxLength: 600 }),
);

async function fuzzNifti(runs: number): Promise<void> {
  fc.assert(
    fc.property(niftiBytes, (b) => {
      try {
        parseNiftiHeader(b, "fuzz.nii");
        parseNiftiHeader(b, "fuzz.nii", { limits: false });
      } catch (err) {
        if (!(err instanceof Ssl3dError)) throw err;
      }
    }),
    { seed: SEED, numRuns: runs * 4 },
  );
  let n = 0;
  await fc.assert(
    fc.asyncProperty(niftiBytes, fc.boolean(), async (b, gz) => {
      const f = join(tmp, `n${n++}.nii${gz ? ".gz" : ""}`);
      writeFileSync(f, gz ? gzipSync(b) : b);
      await typedOnly(() => readNifti(f));
      await typedOnly(() => readNiftiHeader(f, { limits: false }));
      rmSync(f, { force: true });
    }),
    { seed: SEED, numRuns: runs },
  );
}

// ---- torch.save archives (zip + pickle) --------------------------------------------------------------------------

const CKPT_BASE = torchSave(
  {
    network_weights: new PyOrderedDict(
      new Map([
        ["encoder.w", new TorchTensor("0", [2, 3])],
        ["decoder.encoder.w", new TorchTensor("0", [2, 3])],
        ["b", new TorchTensor("1", [3])],
      ]),
    ),
    nnssl_adaptation_plan: {
      architecture_plans: {
        arch_class_name: "ResidualEncoderUNet",
        arch_kwargs: {
          features_per_stage: [8, 16],
          strides: [1, 2],
          n_blocks_per_stage: [1, 1],
          n_conv_per_stage_decoder: [1],
        },
      },
      pretrain_num_input_channels: 1,
      recommended_downstream_patchsize: [16, 16, 16],
    },
    trainer_name: "fuzz",
    current_epoch: 3,
  },
  new Map([
    ["0", Float32Array.from([1, 2, 3, 4, 5, 6])],
    ["1", Float32Array.from([7, 8, 9])],
  ]),
);

/** Pickle opcodes the reader knows (plus a few it does not), with plausible argument bytes. */
const opcode: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc
    .constantFrom(
      0x28,
      0x7d,
      0x5d,
      0x29,
      0x8f,
      0x74,
      0x85,
      0x86,
      0x87,
      0x6c,
      0x64,
      0x91,
      0x90,
      0x73,
      0x75,
      0x61,
      0x65,
      0x94,
      0x4e,
      0x88,
      0x89,
      0x52,
      0x81,
      0x92,
      0x62,
      0x51,
      0x30,
      0x31,
      0x32,
      0x2e,
      0x93,
      0x00,
      0xff,
    )
    .map((o) => Uint8Array.of(o)),
  fc
    .tuple(fc.constantFrom(0x71, 0x68, 0x4b, 0x8c, 0x43, 0x55, 0x80), fc.nat({ max: 255 }))
    .map(([o, a]) => Uint8Array.of(o, a)),
  fc.tuple(fc.constantFrom(0x72, 0x6a, 0x4a, 0x58, 0x42, 0x54), fc.integer({ min: -5, max: 40 })).map(([o, a]) => {
    const b = Buffer.alloc(5);
    b[0] = o;
    b.writeInt32LE(a, 1);
    return new Uint8Array(b);
  }),
  fc
    .constantFrom("storage", "cpu", "0", "network_weights", "nnssl_adaptation_plan")
    .map((s) => new Uint8Array(Buffer.concat([Buffer.from([0x8c, s.length]), Buffer.from(s)]))),
  fc
    .constantFrom(
      "c torch._utils\n_rebuild_tensor_v2\n",
      "c torch\nFloatStorage\n",
      "c collections\nOrderedDict\n",
      "c builtins\nlist\n",
      "c _codecs\nencode\n",
      "c os\nsystem\n",
    )
    .map((s) => new Uint8Array(Buffer.from(s.replace("c ", "c"), "latin1"))),
);

const checkpointBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  mutated(CKPT_BASE, 6),
  fc
    .array(opcode, { maxLength: 80 })
    .map(
      (ops) =>
        new Uint8Array(
          torchArchive(Buffer.concat([Buffer.from([0x80, 2]), ...ops, Buffer.from([0x2e])]), [
            { name: "0", data: Buffer.alloc(24) },
          ]),
        ),
    ),
  fc.uint8Array({ maxLength: 400 }).map((b) => Uint8Array.from([0x50, 0x4b, 0x03, 0x04, ...b])),
);

async function fuzzCheckpoints(runs: number): Promise<void> {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(checkpointBytes, async (b) => {
      const f = join(tmp, `c${n++}.pth`);
      writeFileSync(f, b);
      await typedOnly(async () => {
        const ck = await readTorchCheckpoint(f);
        if (ck.adaptationPlan !== null) architectureFromAdaptationPlan(ck.adaptationPlan, ck.stateDict, f);
      });
      rmSync(f, { force: true });
    }),
    { seed: SEED, numRuns: runs },
  );
}

// ---- safetensors -------------------------------------------------------------------------------------------------

const SAFE_BASE = encodeSafetensors(
  new Map([
    ["a", { shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }],
    ["b", { shape: [3], data: Float32Array.from([5, 6, 7]) }],
  ]),
  { "ssl3d.architecture": "resenc-xs", "ssl3d.options": "{}" },
);

function withHeader(header: string, data: Uint8Array): Uint8Array {
  const h = Buffer.from(header, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return new Uint8Array(Buffer.concat([len, h, data]));
}

const tensorEntry = fc.record({
  dtype: fc.oneof(fc.constantFrom("F32", "F16", "BF16", "I64", "U8", "BOOL", "F64"), fc.string()),
  shape: fc.oneof(fc.array(fc.integer({ min: -2, max: 20 }), { maxLength: 4 }), fc.jsonValue()),
  data_offsets: fc.oneof(fc.tuple(fc.integer({ min: -4, max: 80 }), fc.integer({ min: -4, max: 80 })), fc.jsonValue()),
});

const safetensorsBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  mutated(SAFE_BASE, 6),
  fc
    .tuple(
      fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(tensorEntry, fc.jsonValue())),
      fc.uint8Array({ maxLength: 80 }),
    )
    .map(([h, d]) => withHeader(JSON.stringify(h), d)),
  fc.tuple(fc.json(), fc.uint8Array({ maxLength: 40 })).map(([h, d]) => withHeader(h, d)),
  fc.uint8Array({ maxLength: 64 }),
);

function fuzzSafetensors(runs: number): void {
  fc.assert(
    fc.property(safetensorsBytes, (b) => {
      try {
        decodeSafetensors(Buffer.from(b), "fuzz.safetensors");
      } catch (err) {
        if (!(err instanceof Ssl3dError)) throw err;
      }
    }),
    { seed: SEED, numRuns: runs * 4 },
  );
}

// ---- pretrain_data.json ------------------------------------------------------------------------------------------

const COLLECTION_BASE = JSON.stringify(
  {
    collection_index: 1,
    collection_name: "c",
    datasets: {
      ds: {
        dataset_index: "ds",
        name: null,
        dataset_info: { note: [1, { x: null }] },
        subjects: {
          "sub-1": {
            subject_id: "sub-1",
            subject_info: null,
            sessions: {
              s: {
                session_id: "s",
                session_info: null,
                images: [
                  {
                    name: "a.nii.gz",
                    image_path: "$nnssl_raw/a.nii.gz",
                    modality: "T1w",
                    image_info: { derived_from: "x" },
                    associated_masks: { anonymization_mask: null, anatomy_mask: "../m.nii.gz" },
                  },
                ],
              },
            },
          },
        },
      },
    },
  },
  null,
  2,
);

/** Text edits: insert, delete or replace a short random string at a random position. */
function mutatedText(base: string): fc.Arbitrary<string> {
  const piece = fc.oneof(
    fc.string({ maxLength: 6 }),
    fc.constantFrom(
      '"__proto__"',
      '"sub-1": {}',
      ",",
      "{",
      "}",
      "[",
      "]",
      '"',
      "NaN",
      "-Infinity",
      "\\u0000",
      '"subjects"',
      ": null",
    ),
  );
  const edit = fc.record({ at: fc.nat({ max: base.length }), del: fc.nat({ max: 8 }), ins: piece });
  return fc.array(edit, { minLength: 1, maxLength: 5 }).map((edits) => {
    let s = base;
    for (const e of edits) s = s.slice(0, Math.min(e.at, s.length)) + e.ins + s.slice(Math.min(e.at, s.length) + e.del);
    return s;
  });
}

function fuzzCollections(runs: number): void {
  const env = { nnssl_raw: "/data/raw" };
  const text = fc.oneof(
    mutatedText(COLLECTION_BASE),
    fc.json(),
    fc.string({ maxLength: 200 }),
    fc.jsonValue().map((v) => JSON.stringify({ collection_index: 1, collection_name: "c", datasets: v })),
  );
  fc.assert(
    fc.property(text, (t) => {
      let doc: unknown;
      try {
        doc = parseStrictJson(t, { file: "pretrain_data.json", pythonSpecials: true });
      } catch (err) {
        if (!(err instanceof Ssl3dError)) throw err;
        return;
      }
      // differential: what the strict reader accepts without Python specials, JSON.parse reads identically
      if (!/NaN|Infinity/.test(t)) {
        const plain = JSON.parse(t) as unknown;
        if (JSON.stringify(plain) !== JSON.stringify(doc))
          throw new Error(`strict reader and JSON.parse differ on ${JSON.stringify(t)}`);
      }
      try {
        const c = resolveCollectionPaths(parseCollection(doc, "pretrain_data.json"), {
          env,
          file: "/data/raw/D/pretrain_data.json",
        });
        flattenCollection(c);
        JSON.stringify(serializeCollection(c, env));
      } catch (err) {
        if (!(err instanceof Ssl3dError)) throw err;
      }
    }),
    { seed: SEED, numRuns: runs * 4 },
  );
}

// ---- manifests (ssl3d run) ---------------------------------------------------------------------------------------

function fuzzManifests(runs: number): void {
  const base = readFileSync(join(ROOT, "examples", "laptop.yaml"), "utf8");
  const bomb = (levels: number): string => {
    let s = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (let l = 1; l <= levels; l++)
      s += `a${l}: &a${l} [${Array.from({ length: 10 }, () => `*a${l - 1}`).join(", ")}]\n`;
    return `apiVersion: ssl3d.io/v1alpha1\nkind: Collection\nmetadata: {name: x}\nspec:\n  ${s.replace(/\n/g, "\n  ")}`;
  };
  const text = fc.oneof(
    mutatedText(base),
    fc.string({ maxLength: 300 }),
    fc.integer({ min: 1, max: 9 }).map(bomb),
    fc
      .jsonValue()
      .map(
        (v) => `apiVersion: ssl3d.io/v1alpha1\nkind: PretrainRun\nmetadata: {name: r}\nspec: ${JSON.stringify(v)}\n`,
      ),
  );
  fc.assert(
    fc.property(text, (t) => {
      try {
        parseManifests(t, "fuzz.yaml");
      } catch (err) {
        if (!(err instanceof Ssl3dError)) throw err;
      }
    }),
    { seed: SEED, numRuns: runs * 2 },
  );
}

// ---- networks from architecture settings (adaptation plan, safetensors metadata, --options) --------------------

/** The network budget of the child: small, so a build that passes it is cheap and one beyond it must be refused. */
const NET_PARAMS = 3_000_000;
const NET_TENSORS = 3_000;

/** Values a setting read from a file may hold: sane, extreme, wrong-typed. */
const settingValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer({ min: 0, max: 64 }),
  fc.constantFrom(
    -1,
    0,
    1,
    2,
    3,
    1.5,
    48,
    96,
    1e6,
    2 ** 31,
    2 ** 53,
    1e300,
    Number.NaN,
    Infinity,
    -Infinity,
    "8",
    "x",
    null,
    true,
    {},
    "whd",
  ),
  fc.array(fc.oneof(fc.integer({ min: 0, max: 64 }), fc.constantFrom(-1, 1e6, 2 ** 31, 0.5, "2", null)), {
    maxLength: 8,
  }),
  fc.constantFrom(
    [1_000_000, 1_000_000],
    Array<number>(2000).fill(1),
    [
      [2, 2, 2],
      [1, 1, 1],
    ],
    [16, 16, 16],
    [2 ** 20, 2 ** 20, 2 ** 20],
    [8, 8, 8],
    [32, 32, 32],
  ),
);

const OPTION_KEYS = [
  "inChannels",
  "outChannels",
  "patchSize",
  "seed",
  "features",
  "blocks",
  "strides",
  "decoderConvs",
  "stemChannels",
  "encoderOnly",
  "embedDim",
  "depth",
  "heads",
  "tokenPatch",
  "dropPathRate",
  "initValues",
  "decoderDepth",
  "tokenOrder",
  "unknownOption",
];
const networkOptions: fc.Arbitrary<Record<string, unknown>> = fc.dictionary(
  fc.constantFrom(...OPTION_KEYS),
  settingValue,
  { maxKeys: 6 },
);

const ADAPTATION_KWARGS = [
  "features_per_stage",
  "strides",
  "n_blocks_per_stage",
  "n_conv_per_stage_decoder",
  "embed_dim",
  "encoder_eva_depth",
  "encoder_eva_numheads",
  "patch_embed_size",
  "init_values",
];
const adaptationPlan: fc.Arbitrary<Record<string, unknown>> = fc.record({
  architecture_plans: fc.record({
    arch_class_name: fc.oneof(
      fc.constantFrom("ResidualEncoderUNet", "ResEncL", "PrimusS", "PrimusM", "PrimusB", "PrimusL", "Primus", "EvaMAE"),
      fc.string({ maxLength: 8 }),
    ),
    arch_kwargs: fc.dictionary(fc.constantFrom(...ADAPTATION_KWARGS), settingValue, { maxKeys: 6 }),
  }),
  pretrain_num_input_channels: settingValue,
  recommended_downstream_patchsize: settingValue,
});

/** Outcomes of the network builds: built within the budget, refused by the budget, refused otherwise (typed). */
const outcomes = { built: 0, budget: 0, other: 0 };

/** Build, check the budget held and free everything; typed errors are accepted outcomes. */
function buildWithin(build: () => Network): void {
  const before = tf.memory().numTensors;
  let net: Network | undefined;
  try {
    net = build();
    const n = net.parameterCount();
    if (!(n <= NET_PARAMS)) throw new Error(`a network of ${n} parameters was built past the budget of ${NET_PARAMS}`);
    outcomes.built++;
  } catch (err) {
    if (!(err instanceof Ssl3dError)) throw err;
    if (/network too large/.test(err.message)) outcomes.budget++;
    else outcomes.other++;
  } finally {
    net?.dispose();
  }
  const leaked = tf.memory().numTensors - before;
  if (leaked !== 0) throw new Error(`${leaked} tensors left behind by a network build`);
}

function fuzzNetworks(runs: number): void {
  process.env.SSL3D_MAX_NETWORK_PARAMS = String(NET_PARAMS);
  process.env.SSL3D_MAX_NETWORK_TENSORS = String(NET_TENSORS);
  const keys = fc.oneof(fc.constantFrom(...architectureKeys()), fc.string({ maxLength: 8 }));
  // --options / ssl3d.options straight into the registry
  fc.assert(
    fc.property(keys, networkOptions, (key, opts) => {
      buildWithin(() => createNetwork(key, opts));
    }),
    { seed: SEED, numRuns: runs },
  );
  // an nnssl adaptation plan, as `import` reads it
  fc.assert(
    fc.property(adaptationPlan, (plan) => {
      buildWithin(() => {
        const { key, options } = architectureFromAdaptationPlan(plan, new Map(), "fuzz.pth");
        return networkFromFileSettings(
          () => createNetwork(key, options),
          "fuzz.pth",
          "nnssl_adaptation_plan.architecture_plans",
        );
      });
    }),
    { seed: SEED, numRuns: runs },
  );
  // safetensors metadata, as `export` and `--pretrained-weights` read it (no weights: loading fails, typed, freed)
  fc.assert(
    fc.property(
      keys,
      fc.oneof(
        networkOptions.map((o) => JSON.stringify(o)),
        fc.string({ maxLength: 20 }),
      ),
      (key, optsJson) => {
        buildWithin(() =>
          networkFromSafetensors(
            { tensors: new Map(), metadata: { "ssl3d.architecture": key, "ssl3d.options": optsJson } },
            "fuzz.safetensors",
          ),
        );
      },
    ),
    { seed: SEED, numRuns: runs },
  );
  // not vacuous: some settings build a network, some hit the budget (refused before allocating)
  process.stderr.write(`networks: ${JSON.stringify(outcomes)}\n`);
  if (outcomes.built === 0 || outcomes.budget === 0)
    throw new Error(
      `fuzzed settings never ${outcomes.built === 0 ? "built a network" : "reached the network budget"}: ${JSON.stringify(outcomes)}`,
    );
}

// ---- main --------------------------------------------------------------------------------------------------------

const TARGETS: Record<string, (runs: number) => void | Promise<void>> = {
  nifti: fuzzNifti,
  checkpoints: fuzzCheckpoints,
  safetensors: fuzzSafetensors,
  collections: fuzzCollections,
  manifests: fuzzManifests,
  networks: fuzzNetworks,
};

const target = process.argv[2] ?? "";
const runs = Number(process.argv[3] ?? process.env.SSL3D_FUZZ_RUNS ?? 200);
const run = TARGETS[target];
if (run === undefined) {
  process.stderr.write(`usage: fuzz-targets.ts <${Object.keys(TARGETS).join("|")}> [runs]\n`);
  process.exit(2);
}
try {
  await run(runs);
  process.stdout.write(`${JSON.stringify({ target, runs, maxRssMiB: process.resourceUsage().maxRSS / 1024 })}\n`);
} catch (err) {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
