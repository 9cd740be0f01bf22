#!/usr/bin/env node
// `npm run setup:tensorflow -- --variant cpu|gpu [--force]`: builds the bindings of @tensorflow/tfjs-node (cpu) or
// @tensorflow/tfjs-node-gpu (gpu) from source against the libtensorflow that the TensorFlow 2.21 wheels on PyPI carry,
// instead of the libtensorflow 2.9.1 tarball their install scripts download from storage.googleapis.com (which these
// machines cannot reach, and which predates CUDA 12 and Hopper GPUs). docs/decisions/0059-libtensorflow-from-pypi.md.
//
// 1. pip downloads the pinned, hash-checked wheels of scripts/tensorflow/requirements-<variant>.txt (no install, no
//    dependency resolution; the wheels' Python code is never used).
// 2. Only what tfjs needs is unpacked into $SSL3D_CACHE/tensorflow/<variant>-<hash>/: libtensorflow_cc.so.2,
//    libtensorflow_framework.so.2 and the C API headers, plus (gpu) every nvidia/*/lib folder of the CUDA 12 wheels,
//    laid out as in a Python site-packages folder so TensorFlow's own RUNPATH entries ($ORIGIN/../nvidia/...) work.
// 3. The package's deps/lib becomes a directory symlink to that folder (a per-file symlink would make glibc expand
//    $ORIGIN to deps/lib and break those RUNPATH entries) and node-gyp (npm's own) builds binding/*.cc unchanged.
// Idempotent: both steps are skipped while their stamps match. `npm ci` never runs the packages' install scripts
// (package.json `allowScripts`), so it neither needs this nor attempts the unreachable download.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");

export const VARIANTS = {
  cpu: { pkg: "@tensorflow/tfjs-node", requirements: "requirements-cpu.txt" },
  gpu: { pkg: "@tensorflow/tfjs-node-gpu", requirements: "requirements-gpu.txt" },
};
/** Where the wheels are fetched for: the libraries are the same for every CPython tag, so one is pinned. */
const PIP_TARGET = [
  "--platform",
  "manylinux_2_27_x86_64",
  "--platform",
  "manylinux_2_17_x86_64",
  "--platform",
  "manylinux2014_x86_64",
  "--python-version",
  "3.12",
  "--implementation",
  "cp",
  "--only-binary=:all:",
];
/**
 * The CUDA libraries TensorFlow 2.21 loads by name: it registers a GPU only when cudart, cublas, cublasLt, cufft,
 * cusolver, cusparse and cudnn open (XLA's xla/tsl/platform/default/dlopen_checker.cc); cuDNN 9 opens its sub-libraries
 * by name; cusolver/cusparse need nvJitLink; cuDNN's runtime-compiled engines nvrtc. The driver's libcuda.so.1 comes
 * from the host.
 */
export const CUDA_LIBRARIES = [
  "libcudart.so.12",
  "libcublas.so.12",
  "libcublasLt.so.12",
  "libcufft.so.11",
  "libcusolver.so.11",
  "libcusparse.so.12",
  "libcudnn.so.9",
  "libcudnn_graph.so.9",
  "libcudnn_ops.so.9",
  "libcudnn_cnn.so.9",
  "libcudnn_adv.so.9",
  "libcudnn_engines_precompiled.so.9",
  "libcudnn_engines_runtime_compiled.so.9",
  "libcudnn_heuristic.so.9",
  "libnvJitLink.so.12",
  "libnvrtc.so.12",
];
/** The file in a package's deps/ folder listing the folders the dynamic loader must search (read by bin/launch.mjs). */
export const LOADER_PATH_FILE = "ssl3d-loader-path";
/** @param {string} msg */
const log = (msg) => {
  process.stderr.write(`[setup:tensorflow] ${msg}\n`);
};
/** @typedef {keyof typeof VARIANTS} Variant */

class SetupError extends Error {}

/**
 * @param {string[]} argv
 * @returns {{ variant: Variant, force: boolean, projectDir: string }}
 */
function parseArgs(argv) {
  /** @type {{ variant: string | undefined, force: boolean, projectDir: string }} */
  const o = { variant: undefined, force: false, projectDir: repo };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if (a === "--variant") o.variant = argv[++i];
    else if (a.startsWith("--variant=")) o.variant = a.slice("--variant=".length);
    else if (a === "--force") o.force = true;
    else if (a === "--project") o.projectDir = argv[++i] ?? repo;
    else throw new SetupError(`unknown argument "${a}" (usage: setup:tensorflow -- --variant cpu|gpu [--force])`);
  }
  const variant = o.variant ?? "cpu";
  if (variant !== "cpu" && variant !== "gpu") throw new SetupError(`--variant must be cpu or gpu, got "${variant}"`);
  return { ...o, variant };
}

export function cacheRoot() {
  const c = process.env.SSL3D_CACHE;
  return c !== undefined && c !== "" ? c : join(homedir(), ".cache", "ssl3d");
}

/** The unpacked library folder of a variant (content-addressed by its requirements file and what is unpacked). */
/** @param {Variant} variant */
export function prefixFor(variant) {
  const req = readFileSync(join(repo, "scripts", "tensorflow", VARIANTS[variant].requirements));
  const hash = createHash("sha256").update(req).update(EXTRACT_PY).digest("hex").slice(0, 12);
  return join(cacheRoot(), "tensorflow", `${variant}-${hash}`);
}

function findPython() {
  for (const py of [process.env.PYTHON ?? "", "python3", "/usr/bin/python3"].filter((p) => p !== "")) {
    const r = spawnSync(py, ["-m", "pip", "--version"], { encoding: "utf8" });
    if (r.status === 0) return py;
  }
  throw new SetupError("no Python with pip found (set PYTHON, or install it: apt-get install python3-pip)");
}

// Extracts the members tfjs needs from every wheel in argv[1] into argv[2]; prints the unpacked byte count.
const EXTRACT_PY = String.raw`
import os, re, sys, zipfile
wheels, dest = sys.argv[1], sys.argv[2]
keep = re.compile(r"^(tensorflow/libtensorflow_(cc|framework)\.so\.2"
                  r"|tensorflow/include/(tensorflow/c/.*\.h|tensorflow/core/platform/ctstring.*\.h|tsl/platform/ctstring.*\.h|xla/tsl/c/.*\.h)"
                  r"|nvidia/[^/]+/lib/[^/]+\.so[.0-9]*)$")
lic = re.compile(r"^([^/]+\.dist-info/(licenses/)?(LICENSE|License)[^/]*|tensorflow/include/LICENSE)$")
total = 0
for w in sorted(os.listdir(wheels)):
    if not w.endswith(".whl"): continue
    with zipfile.ZipFile(os.path.join(wheels, w)) as z:
        for info in z.infolist():
            n = info.filename
            if info.is_dir(): continue
            if keep.match(n): out = os.path.join(dest, n)
            elif lic.match(n): out = os.path.join(dest, "licenses", w.split("-")[0], os.path.basename(n))
            else: continue
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(info) as src, open(out, "wb") as dst:
                while True:
                    b = src.read(1 << 20)
                    if not b: break
                    dst.write(b)
            if n.endswith(".so") or ".so." in n: os.chmod(out, 0o755)
            total += info.file_size
print(total)
`;

/** Step 1+2: the unpacked libtensorflow (and CUDA libraries) of a variant; downloads only when not cached. */
/**
 * @param {Variant} variant
 * @param {boolean} force
 */
export function ensureLibraries(variant, force = false) {
  const prefix = prefixFor(variant);
  const stamp = join(prefix, ".complete");
  if (!force && existsSync(stamp)) {
    log(`${variant}: libtensorflow cached in ${prefix}`);
    return prefix;
  }
  const py = findPython();
  const work = `${prefix}.partial`;
  rmSync(work, { recursive: true, force: true });
  const wheels = join(work, "wheels");
  mkdirSync(wheels, { recursive: true });
  const req = join(repo, "scripts", "tensorflow", VARIANTS[variant].requirements);
  log(`${variant}: downloading the pinned wheels (${req}) ...`);
  const t0 = Date.now();
  const dl = spawnSync(
    py,
    [
      "-m",
      "pip",
      "download",
      "--disable-pip-version-check",
      "--no-cache-dir",
      "--no-deps",
      "--require-hashes",
      "--progress-bar",
      "off",
      ...PIP_TARGET,
      "-d",
      wheels,
      "-r",
      req,
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  if (dl.status !== 0) throw new SetupError(`pip download failed (exit ${dl.status}) for ${req}`);
  const downloaded = readdirSync(wheels).reduce((s, f) => s + lstatSync(join(wheels, f)).size, 0);
  const t1 = Date.now();
  const unpacked = Number(
    execFileSync(py, ["-c", EXTRACT_PY, wheels, join(work, "root")], { encoding: "utf8" }).trim(),
  );
  rmSync(wheels, { recursive: true, force: true });
  const tfDir = join(work, "root", "tensorflow");
  if (!existsSync(join(tfDir, "libtensorflow_cc.so.2")))
    throw new SetupError(`the wheels of ${req} hold no tensorflow/libtensorflow_cc.so.2`);
  // the linker names binding.gyp links with (-ltensorflow -ltensorflow_framework)
  symlinkSync("libtensorflow_cc.so.2", join(tfDir, "libtensorflow.so"));
  symlinkSync("libtensorflow_framework.so.2", join(tfDir, "libtensorflow_framework.so"));
  const facts = {
    variant,
    downloadedBytes: downloaded,
    unpackedBytes: unpacked,
    downloadSeconds: (t1 - t0) / 1000,
    unpackSeconds: (Date.now() - t1) / 1000,
  };
  writeFileSync(join(work, "root", ".complete"), `${JSON.stringify(facts)}\n`);
  rmSync(prefix, { recursive: true, force: true });
  renameSync(join(work, "root"), prefix);
  rmSync(work, { recursive: true, force: true });
  log(
    `${variant}: ${(downloaded / 2 ** 20).toFixed(0)} MiB downloaded in ${facts.downloadSeconds.toFixed(0)} s, ` +
      `${(unpacked / 2 ** 20).toFixed(0)} MiB unpacked in ${facts.unpackSeconds.toFixed(0)} s -> ${prefix}`,
  );
  return prefix;
}

/**
 * Every folder holding CUDA libraries (gpu variant): what the dynamic loader must search for TensorFlow's dlopen calls.
 * Not TensorFlow's own folder: the bindings find it through their RUNPATH, and on LD_LIBRARY_PATH (searched first) it
 * would make the CPU package load the GPU build.
 */
/** @param {string} prefix @returns {string[]} */
export function loaderPath(prefix) {
  const nv = join(prefix, "nvidia");
  return existsSync(nv)
    ? readdirSync(nv)
        .sort()
        .map((d) => join(nv, d, "lib"))
        .filter((d) => existsSync(d))
    : [];
}

function nodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  if (process.env.npm_execpath)
    candidates.push(join(dirname(dirname(process.env.npm_execpath)), "node_modules", "node-gyp", "bin", "node-gyp.js"));
  const npmRoot = spawnSync("npm", ["root", "-g"], { encoding: "utf8" });
  if (npmRoot.status === 0)
    candidates.push(join(npmRoot.stdout.trim(), "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  const found = candidates.find((c) => c !== undefined && c !== "" && existsSync(c));
  if (found === undefined) throw new SetupError("node-gyp not found (it ships with npm; or set npm_config_node_gyp)");
  return found;
}

/** Node headers for node-gyp without a download: the running Node's distribution (the pinned `node` package). */
/** @param {string} projectDir */
function nodeDir(projectDir) {
  const candidates = [
    join(dirname(dirname(realpathSync(process.execPath)))),
    join(projectDir, "node_modules", "node", "node_modules", `node-${process.platform}-${process.arch}`),
  ];
  const found = candidates.find((d) => existsSync(join(d, "include", "node", "common.gypi")));
  if (found === undefined)
    throw new SetupError(`no Node headers found next to ${process.execPath} (run npm ci for the pinned node package)`);
  return found;
}

/** Step 3: build the package's tfjs_binding.node against `prefix`; skipped while its stamp matches. */
/**
 * @param {Variant} variant
 * @param {string} prefix
 * @param {string} projectDir
 * @param {boolean} force
 */
export function buildBinding(variant, prefix, projectDir, force = false) {
  const pkgDir = join(projectDir, "node_modules", ...VARIANTS[variant].pkg.split("/"));
  if (!existsSync(join(pkgDir, "binding.gyp"))) {
    throw new SetupError(
      `${VARIANTS[variant].pkg} is not installed in ${join(projectDir, "node_modules")} (run npm ci with npm >= 11.16: older npm ignores package.json allowScripts, runs the package's download script, which fails here, and removes it)`,
    );
  }
  /** @type {unknown} */
  const pkgJson = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
  const version = /** @type {{ version: string }} */ (pkgJson).version;
  const out = join(pkgDir, "lib", "napi-v8");
  const binding = join(out, "tfjs_binding.node");
  const stampFile = join(out, ".ssl3d-stamp");
  const stamp = `${prefix} ${version} ${readFileSync(join(pkgDir, "binding", "tfjs_backend.cc")).length}`;
  const deps = join(pkgDir, "deps");
  if (
    !force &&
    existsSync(binding) &&
    existsSync(stampFile) &&
    readFileSync(stampFile, "utf8") === stamp &&
    existsSync(join(deps, "lib", "libtensorflow.so"))
  ) {
    writeFileSync(join(deps, LOADER_PATH_FILE), `${loaderPath(prefix).join(":")}\n`);
    log(`${variant}: ${VARIANTS[variant].pkg} binding up to date (${binding})`);
    return binding;
  }
  rmSync(deps, { recursive: true, force: true });
  mkdirSync(deps);
  symlinkSync(join(prefix, "tensorflow"), join(deps, "lib"), "dir");
  symlinkSync(join(prefix, "tensorflow", "include"), join(deps, "include"), "dir");
  writeFileSync(join(deps, LOADER_PATH_FILE), `${loaderPath(prefix).join(":")}\n`);
  log(`${variant}: building ${VARIANTS[variant].pkg} ${version} binding/*.cc against ${prefix} ...`);
  const t0 = Date.now();
  const r = spawnSync(
    process.execPath,
    [
      nodeGyp(),
      "rebuild",
      `--nodedir=${nodeDir(projectDir)}`,
      "--jobs=2",
      "--module_name=tfjs_binding",
      `--module_path=${out}`,
      "--napi_build_version=8",
      "--loglevel=warn",
    ],
    { cwd: pkgDir, stdio: ["ignore", "ignore", "inherit"] },
  );
  if (r.status !== 0 || !existsSync(binding))
    throw new SetupError(`node-gyp failed (exit ${r.status}) building ${pkgDir}`);
  rmSync(join(pkgDir, "build"), { recursive: true, force: true });
  writeFileSync(stampFile, stamp);
  log(`${variant}: built ${binding} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return binding;
}

/** Load the package in a child process (with the loader path) and report TensorFlow's version. */
/**
 * @param {Variant} variant
 * @param {string} projectDir
 * @returns {{ tf: string, gpu: boolean }}
 */
export function verify(variant, projectDir) {
  const pkg = VARIANTS[variant].pkg;
  const deps = join(projectDir, "node_modules", ...pkg.split("/"), "deps");
  const path = readFileSync(join(deps, LOADER_PATH_FILE), "utf8").trim();
  const code =
    `const tf = require(${JSON.stringify(pkg)}); const b = tf.backend();` +
    `console.log(JSON.stringify({ tf: b.binding.TF_Version, gpu: b.isUsingGpuDevice }));`;
  const r = spawnSync(process.execPath, ["-e", code], {
    cwd: projectDir,
    encoding: "utf8",
    env: {
      ...process.env,
      TF_CPP_MIN_LOG_LEVEL: "2",
      LD_LIBRARY_PATH: [path, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":"),
    },
  });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status !== 0 || !last.startsWith("{"))
    throw new SetupError(`${pkg} does not load: ${(r.stderr.trim().split("\n").pop() ?? "").slice(0, 300)}`);
  /** @type {unknown} */
  const parsed = JSON.parse(last);
  const v = /** @type {{ tf: string, gpu: boolean }} */ (parsed);
  log(
    `${variant}: ${pkg} loads TensorFlow ${v.tf} (${v.gpu ? "GPU device registered" : "no GPU device: runs on the CPU"})`,
  );
  return v;
}

/** @param {string[]} argv */
export function main(argv) {
  const o = parseArgs(argv);
  const prefix = ensureLibraries(o.variant, o.force);
  buildBinding(o.variant, prefix, o.projectDir, o.force);
  verify(o.variant, o.projectDir);
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`setup:tensorflow: error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
