/**
 * native/build.mjs (run by npm's install hook) on a fresh copy: it builds the addon from scratch, the result loads
 * and computes, a second run reuses the cached output, and a machine without a compiler still "installs" (exit 0,
 * one log line, no addon). Builds the portable variant (no oneDNN, no OpenBLAS) so the fallback code is compiled
 * and exercised on every machine, including those where the default build links oneDNN.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

const repo = join(import.meta.dirname, "..");
const hasCompiler = ["c++", "g++", "clang++"].some((c) => spawnSync(c, ["--version"]).status === 0);
const dir = mkdtempSync(join(tmpdir(), "ssl3d-native-build-"));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function copyTree(): string {
  const root = join(dir, `clone-${Math.random().toString(36).slice(2)}`);
  cpSync(join(repo, "native", "src"), join(root, "native", "src"), { recursive: true });
  cpSync(join(repo, "native", "build.mjs"), join(root, "native", "build.mjs"));
  // node-api-headers resolves from the copy's node_modules, as in a fresh `npm ci`.
  cpSync(join(repo, "node_modules", "node-api-headers"), join(root, "node_modules", "node-api-headers"), {
    recursive: true,
  });
  symlinkSync(join(repo, "package.json"), join(root, "package.json"));
  return root;
}

function build(root: string, env: Record<string, string> = {}): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [join(root, "native", "build.mjs")], {
    encoding: "utf8",
    env: { ...process.env, SSL3D_NATIVE_NO_DNNL: "1", SSL3D_NATIVE_NO_BLAS: "1", ...env },
    timeout: 300_000,
  });
  return { status: r.status, out: r.stdout + r.stderr };
}

test("without a compiler the install hook exits 0 with one clear line and builds nothing", () => {
  const root = copyTree();
  const r = build(root, { CXX: "/nonexistent/c++" });
  assert.equal(r.status, 0);
  assert.match(r.out, /no C\+\+ compiler found.*stock tfjs kernels/);
  assert.equal(existsSync(join(root, "native", "build", "ssl3d_native.node")), false);
});

test("SSL3D_NATIVE_REQUIRE=1 (test setup, CI) turns a missing addon into exit 1", () => {
  const root = copyTree();
  const r = build(root, { CXX: "/nonexistent/c++", SSL3D_NATIVE_REQUIRE: "1" });
  assert.equal(r.status, 1);
  assert.match(r.out, /no C\+\+ compiler found/);
  assert.match(r.out, /SSL3D_NATIVE_REQUIRE=1: no up-to-date addon, failing/);
});

test("SSL3D_NATIVE=0 skips the build", () => {
  const root = copyTree();
  const r = build(root, { SSL3D_NATIVE: "0" });
  assert.equal(r.status, 0);
  assert.match(r.out, /skipped \(SSL3D_NATIVE=0\)/);
  assert.equal(existsSync(join(root, "native", "build")), false);
});

test(
  "a fresh copy builds the portable addon, which loads and computes; a rerun reuses it",
  { skip: !hasCompiler && "no C++ compiler on this machine" },
  () => {
    const root = copyTree();
    const first = build(root);
    assert.equal(first.status, 0);
    assert.match(first.out, /built .*ssl3d_native\.node .*oneDNN no, OpenBLAS no/);
    const addonPath = join(root, "native", "build", "ssl3d_native.node");
    const addon = createRequire(import.meta.url)(addonPath) as {
      info(): { dnnl: boolean; blas: boolean };
      matmul(
        a: Float32Array,
        b: Float32Array,
        c: Float32Array,
        m: number,
        n: number,
        k: number,
        ta: boolean,
        tb: boolean,
        ia: Int32Array,
        ib: Int32Array,
      ): void;
    };
    assert.deepEqual([addon.info().dnnl, addon.info().blas], [false, false]);
    const c = new Float32Array(4);
    addon.matmul(
      Float32Array.from([1, 2, 3, 4, 5, 6]),
      Float32Array.from([1, 0, 0, 1, 1, 1]),
      c,
      2,
      2,
      3,
      false,
      false,
      Int32Array.from([0]),
      Int32Array.from([0]),
    );
    assert.deepEqual(Array.from(c), [4, 5, 10, 11]);
    const second = build(root);
    assert.equal(second.status, 0);
    assert.match(second.out, /up to date/);
  },
);
