/**
 * The sanitizer job: the native addon built with AddressSanitizer + UndefinedBehaviorSanitizer
 * (`SSL3D_NATIVE_SANITIZE=1 node native/build.mjs`, into native/build-sanitize/) runs the whole kernel test file
 * (runtime/src/models/backend/native.test.ts) under the ASan runtime preloaded into Node; any memory error or
 * undefined behaviour aborts the child and fails this test. Leak detection is off (V8's heap is not ours).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

const repo = join(import.meta.dirname, "..");
const compiler = ["c++", "g++"].find((c) => spawnSync(c, ["--version"]).status === 0);
const addon = join(repo, "native", "build-sanitize", "ssl3d_native.node");
const runtimeLib = (name: string): string =>
  spawnSync(compiler ?? "c++", [`-print-file-name=${name}`], { encoding: "utf8" }).stdout.trim();

test(
  "kernel tests pass against the ASan + UBSan build of the addon",
  {
    skip:
      compiler === undefined &&
      process.env.SSL3D_TEST_ALLOW_NO_NATIVE === "1" &&
      "no C++ compiler (SSL3D_TEST_ALLOW_NO_NATIVE=1)",
    timeout: 1_800_000,
  },
  () => {
    assert.ok(compiler !== undefined, "no C++ compiler: the sanitizer job cannot build the addon");
    const build = spawnSync(process.execPath, [join(repo, "native", "build.mjs")], {
      encoding: "utf8",
      env: { ...process.env, SSL3D_NATIVE_SANITIZE: "1", SSL3D_NATIVE_REQUIRE: "1" },
    });
    assert.equal(build.status, 0, build.stdout + build.stderr);
    assert.ok(existsSync(addon));
    const asan = runtimeLib("libasan.so"),
      ubsan = runtimeLib("libubsan.so");
    // Instrumented for real: without the ASan runtime first in the process, the addon refuses to load.
    const bare = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(addon)})`], { encoding: "utf8" });
    assert.notEqual(bare.status, 0);
    assert.match(bare.stderr, /ASan runtime does not come first|AddressSanitizer/);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      SSL3D_NATIVE_ADDON: addon,
      LD_PRELOAD: `${asan}:${ubsan}`,
      ASAN_OPTIONS: "detect_leaks=0:abort_on_error=1",
      UBSAN_OPTIONS: "halt_on_error=1:print_stacktrace=1",
    };
    delete env.NODE_TEST_CONTEXT; // a nested `node --test` would otherwise skip its files
    const run = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        "--test",
        "--test-reporter=tap",
        join(repo, "runtime", "src", "models", "backend", "native.test.ts"),
      ],
      {
        encoding: "utf8",
        cwd: repo,
        maxBuffer: 64 << 20,
        env,
      },
    );
    const out = run.stdout + run.stderr;
    assert.doesNotMatch(out, /ERROR: AddressSanitizer|runtime error:/, out.slice(-4000));
    assert.equal(run.status, 0, out.slice(-4000));
    assert.match(out, /# fail 0/);
    assert.doesNotMatch(out, /# pass 0\b/);
  },
);
