/**
 * `npm run setup:tensorflow` (scripts/setup-tensorflow.mjs): argument errors are one line; a second run is a cached
 * no-op; and (GPU variant, opt-in: built by `npm run setup:tensorflow -- --variant gpu`, about 2.9 GB of wheels) the
 * loader path it records makes every CUDA library TensorFlow needs resolvable by name (dlopen, as TensorFlow does),
 * every unpacked library's dependencies resolve except the host driver's libcuda.so.1 (ldd), while without that
 * path cusolver does not resolve (the silent CPU fallback the path prevents); and `--backend node-gpu` on this
 * GPU-less machine loads TensorFlow 2.21 and falls back to the CPU with the reason logged.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { tfjsNodeMissing, tfjsNodePackageDir } from "../runtime/src/models/backend/select.js";

const repo = join(import.meta.dirname, "..");
// a plain ESM script without type declarations (it runs before any TypeScript tooling is installed)
const setupModule = "./setup-tensorflow.mjs";
const { CUDA_LIBRARIES, LOADER_PATH_FILE, prefixFor } = (await import(setupModule)) as {
  CUDA_LIBRARIES: readonly string[];
  LOADER_PATH_FILE: string;
  prefixFor: (variant: string) => string;
};
const script = join(repo, "scripts", "setup-tensorflow.mjs");
const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "NODE_TEST_CONTEXT"));
const gpuBuilt = tfjsNodeMissing("@tensorflow/tfjs-node-gpu") === undefined;
const cpuBuilt = tfjsNodeMissing("@tensorflow/tfjs-node") === undefined;

function setup(args: string[]): { status: number | null; err: string } {
  const r = spawnSync(process.execPath, [script, ...args], {
    cwd: repo,
    env: childEnv,
    encoding: "utf8",
    timeout: 1_200_000,
  });
  return { status: r.status, err: r.stderr };
}

test("bad arguments: exit 1 with one line naming the flag", () => {
  const r = setup(["--variant", "tpu"]);
  assert.equal(r.status, 1);
  assert.equal(r.err.trim().split("\n").length, 1);
  assert.match(r.err, /--variant must be cpu or gpu, got "tpu"/);
});

test(
  "a second run of the cpu variant is a cached no-op that still verifies the binding loads",
  { skip: !cpuBuilt && "cpu variant not built" },
  () => {
    const t0 = Date.now();
    const r = setup(["--variant", "cpu"]);
    assert.equal(r.status, 0, r.err);
    assert.match(r.err, /libtensorflow cached in/);
    assert.match(r.err, /binding up to date/);
    assert.match(r.err, /loads TensorFlow 2\.21\.\d+ \(no GPU device/);
    assert.ok(Date.now() - t0 < 60_000, "no download or build on the second run");
  },
);

/**
 * Which of `libs` the dynamic loader resolves by name in a fresh process with LD_LIBRARY_PATH = `path` (a library
 * that is found but needs the host driver's libcuda.so.1, absent on a machine without a GPU, counts as resolvable).
 */
function resolvable(libs: readonly string[], path: string | undefined): Record<string, boolean> {
  const code =
    `const out = {}; for (const l of ${JSON.stringify(libs)}) { try { process.dlopen({ exports: {} }, l); out[l] = true; }` +
    ` catch (e) { const m = String(e.message); out[l] = !/cannot open shared object file/.test(m) || m.startsWith("libcuda.so.1:"); } }` +
    " console.log(JSON.stringify(out));";
  const env = { ...childEnv };
  if (path === undefined) delete env.LD_LIBRARY_PATH;
  else env.LD_LIBRARY_PATH = path;
  const r = spawnSync(process.execPath, ["-e", code], { env, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, boolean>;
}

const gpuSkip = !gpuBuilt && "GPU variant not built (opt-in: npm run setup:tensorflow -- --variant gpu)";

test(
  "GPU variant: the recorded loader path makes every CUDA library TensorFlow needs resolvable",
  { skip: gpuSkip },
  () => {
    const deps = join(tfjsNodePackageDir("@tensorflow/tfjs-node-gpu")!, "deps");
    const path = readFileSync(join(deps, LOADER_PATH_FILE), "utf8").trim();
    const prefix = prefixFor("gpu");
    assert.ok(
      path.split(":").every((d) => d.startsWith(join(prefix, "nvidia"))),
      `${path}: only the CUDA folders of ${prefix}`,
    );
    const withPath = resolvable(CUDA_LIBRARIES, path);
    assert.deepEqual(
      Object.entries(withPath)
        .filter(([, ok]) => !ok)
        .map(([l]) => l),
      [],
      "unresolvable with the loader path",
    );
    // the failure this prevents: TensorFlow's own RUNPATH lacks cusolver/nvJitLink/nvrtc
    const without = resolvable(["libcusolver.so.11", "libnvJitLink.so.12"], undefined);
    assert.deepEqual(without, { "libcusolver.so.11": false, "libnvJitLink.so.12": false });
    // ldd: every unpacked library's dependencies resolve, except the host driver's libcuda.so.1
    const missing = new Set<string>();
    for (const dir of path.split(":")) {
      for (const f of readdirSync(dir).filter((n) => /\.so(\.\d+)*$/.test(n))) {
        const r = spawnSync("ldd", [join(dir, f)], { env: { ...childEnv, LD_LIBRARY_PATH: path }, encoding: "utf8" });
        for (const m of r.stdout.matchAll(/^\s*(\S+) => not found/gm))
          if (m[1] !== "libcuda.so.1") missing.add(`${f}: ${m[1]}`);
      }
    }
    assert.deepEqual([...missing], []);
  },
);

test(
  "GPU variant without a GPU: --backend node-gpu runs TensorFlow 2.21 on the CPU and logs why",
  { skip: gpuSkip },
  () => {
    const code = `import { selectBackend } from "./runtime/src/models/backend/select.ts";
    const c = await selectBackend("node-gpu"); console.log(JSON.stringify(c));`;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
      cwd: repo,
      env: { ...childEnv, SSL3D_LOG_LEVEL: "info" },
      encoding: "utf8",
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const c = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
      name: string;
      tfBackend: string;
      tfVersion: string;
      gpu: boolean;
    };
    assert.deepEqual([c.name, c.tfBackend, c.gpu], ["node-gpu", "tensorflow", false]);
    assert.match(c.tfVersion, /^2\.21\./);
    assert.match(r.stdout + r.stderr, /node-gpu\b.*on the CPU: TensorFlow registered no GPU device/);
  },
);
