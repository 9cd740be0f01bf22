#!/usr/bin/env node
// Builds the optional ssl3d native kernel addon (native/build/ssl3d_native.node) with the system C++ compiler.
// Run by npm's `install` hook; it NEVER fails the install: without a compiler (or with SSL3D_NATIVE=0) it prints one
// line and exits 0, and ssl3d then uses the stock tfjs kernels. No network: Node-API headers come from the
// `node-api-headers` npm package. Optional accelerators, detected by a tiny compile+link probe:
//   oneDNN (Debian libdnnl-dev) for Conv3D and its backprops, OpenBLAS (libopenblas-dev) for GEMM.
// Re-running is cheap: the output is reused while a hash of sources, flags and probes is unchanged.
// Env: SSL3D_NATIVE=0 skip; CXX compiler; SSL3D_NATIVE_NO_DNNL=1 / SSL3D_NATIVE_NO_BLAS=1 build without them;
//      SSL3D_NATIVE_FORCE=1 rebuild even when cached; SSL3D_NATIVE_REQUIRE=1 exits 1 when no addon results (test
//      setup and CI, where a missing addon must fail instead of skipping the kernel tests);
//      SSL3D_NATIVE_SANITIZE=1 builds with ASan + UBSan into native/build-sanitize/ instead.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "src");
// SSL3D_NATIVE_SANITIZE=1: an AddressSanitizer + UndefinedBehaviorSanitizer build in its own folder (the CI job
// scripts/native-sanitize.test.ts runs the kernel tests against it); the production build is left alone.
const sanitize = process.env.SSL3D_NATIVE_SANITIZE === "1";
const SANITIZE_FLAGS = [
  "-fsanitize=address,undefined",
  "-fno-sanitize-recover=undefined",
  "-fno-omit-frame-pointer",
  "-g",
];
const out = join(here, sanitize ? "build-sanitize" : "build");
const target = join(out, "ssl3d_native.node");
/** @param {string} msg */
const log = (msg) => {
  console.log(`[ssl3d-native] ${msg}`);
};

function findCompiler() {
  const candidates = process.env.CXX ? [process.env.CXX] : ["c++", "g++", "clang++"];
  for (const c of candidates) {
    const r = spawnSync(c, ["--version"], { encoding: "utf8" });
    if (r.status === 0) return c;
  }
  return null;
}

function napiInclude() {
  try {
    const req = createRequire(import.meta.url);
    const dir = join(dirname(req.resolve("node-api-headers/package.json")), "include");
    if (existsSync(join(dir, "node_api.h"))) return dir;
  } catch {
    /* fall through */
  }
  const fromNode = join(dirname(process.execPath), "..", "include", "node");
  return existsSync(join(fromNode, "node_api.h")) ? fromNode : null;
}

/**
 * Whether `code` compiles and links with `flags`.
 * @param {string} cxx
 * @param {string} code
 * @param {string[]} flags
 */
function probe(cxx, code, flags) {
  const dir = join(out, "probe");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "probe.cc");
  writeFileSync(file, code);
  const r = spawnSync(cxx, ["-std=c++17", file, "-o", join(dir, "probe"), ...flags], { encoding: "utf8" });
  return r.status === 0;
}

/** @returns {boolean} whether an up-to-date addon is in place */
function main() {
  if (process.env.SSL3D_NATIVE === "0") {
    log("skipped (SSL3D_NATIVE=0); the cpu backend uses stock tfjs kernels");
    return false;
  }
  const cxx = findCompiler();
  if (!cxx) {
    log("no C++ compiler found (set CXX); the cpu backend uses stock tfjs kernels (slow)");
    return false;
  }
  const inc = napiInclude();
  if (!inc) {
    log("Node-API headers not found (npm package node-api-headers); using stock tfjs kernels");
    return false;
  }
  mkdirSync(out, { recursive: true });

  const isX86 = process.arch === "x64" || process.arch === "ia32";
  const openmp = probe(cxx, "#include <omp.h>\nint main(){return omp_get_max_threads()>0?0:1;}", ["-fopenmp"]);
  const dnnl =
    process.env.SSL3D_NATIVE_NO_DNNL !== "1" &&
    probe(cxx, "#include <dnnl.hpp>\nint main(){dnnl::engine e(dnnl::engine::kind::cpu,0);return 0;}", ["-ldnnl"]);
  const blas =
    process.env.SSL3D_NATIVE_NO_BLAS !== "1" &&
    probe(
      cxx,
      "#include <cblas.h>\nint main(){openblas_set_num_threads(1);float a=1,b=1,c=0;" +
        "cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);return c==1.f?0:1;}",
      ["-lopenblas"],
    );
  rmSync(join(out, "probe"), { recursive: true, force: true });

  const defs = ["-DNODE_GYP_MODULE_NAME=ssl3d_native", "-DNAPI_VERSION=8"];
  if (dnnl) defs.push("-DSSL3D_HAVE_DNNL");
  if (blas) defs.push("-DSSL3D_HAVE_CBLAS");
  if (isX86) defs.push("-DSSL3D_HAVE_AVX2_TU");
  const common = [
    "-std=c++17",
    sanitize ? "-O1" : "-O3",
    "-fPIC",
    "-fvisibility=hidden",
    "-Wall",
    `-I${inc}`,
    ...defs,
    ...(openmp ? ["-fopenmp"] : []),
    ...(sanitize ? SANITIZE_FLAGS : []),
  ];
  const libs = [
    ...(dnnl ? ["-ldnnl"] : []),
    ...(blas ? ["-lopenblas"] : []),
    ...(openmp ? ["-fopenmp"] : []),
    "-lpthread",
    ...(sanitize ? SANITIZE_FLAGS : []),
  ];
  const units = readdirSync(src)
    .filter((f) => f.endsWith(".cc"))
    .filter((f) => isX86 || f !== "gemm_avx2.cc");

  const hash = createHash("sha256");
  for (const f of readdirSync(src).sort()) hash.update(f).update(readFileSync(join(src, f)));
  hash.update(JSON.stringify({ cxx, common, libs, v: process.versions.modules }));
  const stamp = hash.digest("hex").slice(0, 16);
  const stampFile = join(out, "stamp");
  if (
    process.env.SSL3D_NATIVE_FORCE !== "1" &&
    existsSync(target) &&
    existsSync(stampFile) &&
    readFileSync(stampFile, "utf8") === stamp
  ) {
    log(`up to date (${target})`);
    return true;
  }

  const features = `oneDNN ${dnnl ? "yes" : "no"}, OpenBLAS ${blas ? "yes" : "no"}, OpenMP ${openmp ? "yes" : "no"}`;
  log(`building with ${cxx} (${features}) ...`);
  const t0 = Date.now();
  const objs = [];
  for (const u of units) {
    const obj = join(out, u.replace(/\.cc$/, ".o"));
    const extra = u === "gemm_avx2.cc" ? ["-mavx2", "-mfma"] : [];
    execFileSync(cxx, [...common, ...extra, "-c", join(src, u), "-o", obj], { stdio: "inherit" });
    objs.push(obj);
  }
  const tmp = `${target}.tmp`;
  execFileSync(cxx, ["-shared", "-o", tmp, ...objs, ...libs], { stdio: "inherit" });
  renameSync(tmp, target);
  writeFileSync(stampFile, stamp);
  log(`built ${target} in ${((Date.now() - t0) / 1000).toFixed(1)} s (${features})`);
  return true;
}

let ok = false;
try {
  ok = main();
} catch (e) {
  log(
    `build failed, the cpu backend uses stock tfjs kernels: ${e instanceof Error ? (e.message.split("\n")[0] ?? "") : String(e)}`,
  );
}
const required = process.env.SSL3D_NATIVE_REQUIRE === "1";
if (required && !ok) log("SSL3D_NATIVE_REQUIRE=1: no up-to-date addon, failing");
process.exitCode = required && !ok ? 1 : 0;
