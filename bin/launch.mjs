// Shared by the bin/ launchers: re-execute with the project's pinned Node when the running one is older than the
// supported 22.19 (the `node` devDependency), or with the CUDA library folders of the GPU TensorFlow build on
// LD_LIBRARY_PATH when they are missing (the loader reads it only at process start, and without them TensorFlow
// silently skips the GPU; `npm run setup:tensorflow -- --variant gpu` records them), then import the TypeScript entry
// through tsx in a checkout, or the compiled dist/ entry in an image built with `npm run build`.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Folders of the GPU TensorFlow build (deps/ssl3d-loader-path of tfjs-node-gpu) that LD_LIBRARY_PATH lacks.
 * @param {NodeJS.ProcessEnv} env
 * @returns {string[]}
 */
export function missingLoaderPath(env = process.env) {
  const file = join(root, "node_modules", "@tensorflow", "tfjs-node-gpu", "deps", "ssl3d-loader-path");
  if (!existsSync(file)) return [];
  const have = new Set((env.LD_LIBRARY_PATH ?? "").split(":"));
  return readFileSync(file, "utf8")
    .trim()
    .split(":")
    .filter((d) => d !== "" && !have.has(d));
}

/**
 * True when this process was handed to a child (pinned Node and/or loader path; the caller must then do nothing else).
 * @param {NodeJS.Signals[]} signals forwarded to the child
 * @param {{ gpuLoaderPath?: boolean }} [opts] gpuLoaderPath: false for entries that never load TensorFlow (the operator)
 * @returns {boolean}
 */
export function reexecWithPinnedNode(signals = ["SIGINT", "SIGTERM", "SIGUSR1", "SIGHUP"], opts = {}) {
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  const tooOld = major < 22 || (major === 22 && minor < 19);
  const pinned = join(root, "node_modules", "node", "bin", "node");
  const usePinned = tooOld && existsSync(pinned);
  const missing = opts.gpuLoaderPath === false ? [] : missingLoaderPath();
  if ((!usePinned && missing.length === 0) || process.env.SSL3D_REEXEC === "1") {
    if (tooOld && !usePinned)
      process.stderr.write(
        `ssl3d: warning: Node ${process.version} is older than the supported >=22.19; run 'npm ci' to install the pinned Node\n`,
      );
    return false;
  }
  const ld = [...missing, ...(process.env.LD_LIBRARY_PATH ?? "").split(":").filter((d) => d !== "")].join(":");
  // The child knows this launcher as its parent (SSL3D_PARENT_PID, runtime/src/local/parent-watch.ts): if the
  // launcher dies, even by SIGKILL, the child stops itself instead of running on as an orphan.
  const child = spawn(usePinned ? pinned : process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: {
      ...process.env,
      SSL3D_REEXEC: "1",
      SSL3D_PARENT_PID: String(process.pid),
      ...(missing.length > 0 ? { LD_LIBRARY_PATH: ld } : {}),
    },
  });
  watchOwnParent(child);
  for (const sig of signals) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
  return true;
}

/**
 * In a re-executed process (SSL3D_REEXEC=1) whose entry does not watch its parent itself (the operator; the CLI does in
 * runtime/src/local/parent-watch.ts): SIGTERM to itself once the launcher that started it is gone.
 */
export function watchLauncher() {
  if (process.env.SSL3D_REEXEC === "1") onParentGone(() => process.kill(process.pid, "SIGTERM"));
}

/**
 * When this launcher itself runs under a watching parent (SSL3D_PARENT_PID, set by `ssl3d run` for its children),
 * it passes the parent's death on: the child gets SIGTERM, and this process exits with it.
 * @param {import("node:child_process").ChildProcess} child
 */
function watchOwnParent(child) {
  onParentGone(() => child.kill("SIGTERM"));
}

/**
 * Calls `fn` once this process's parent is no longer the process SSL3D_PARENT_PID names (it died, even by SIGKILL,
 * and this process was re-parented); checks every second without keeping the process alive.
 * @param {() => void} fn
 */
function onParentGone(fn) {
  const v = process.env.SSL3D_PARENT_PID;
  if (v === undefined || !/^\d+$/.test(v)) return;
  const timer = setInterval(() => {
    if (process.ppid === Number(v)) return;
    clearInterval(timer);
    fn();
  }, 1000);
  timer.unref();
}

/**
 * Import `src` (relative to the repo root) through tsx when it and tsx exist, else `dist`.
 * @param {string} src
 * @param {string} dist
 * @returns {Promise<unknown>} the module's namespace
 */
export async function importEntry(src, dist) {
  const srcPath = join(root, src);
  if (existsSync(srcPath) && process.env.SSL3D_USE_DIST !== "1") {
    try {
      const { register } = await import("tsx/esm/api");
      register();
      /** @type {unknown} */
      const mod = await import(pathToFileURL(srcPath).href);
      return mod;
    } catch (err) {
      const e = /** @type {{ code?: string, message?: string } | undefined} */ (err);
      if (e?.code !== "ERR_MODULE_NOT_FOUND" || !String(e.message).includes("tsx")) throw err;
    }
  }
  /** @type {unknown} */
  const mod = await import(pathToFileURL(join(root, dist)).href);
  return mod;
}
