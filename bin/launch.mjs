// Shared by the bin/ launchers: re-execute with the project's pinned Node when the running one is older than the
// supported 22.19 (the `node` devDependency), then import the TypeScript entry through tsx in a checkout, or the
// compiled dist/ entry in an image built with `npm run build`.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * True when this process was handed to the pinned Node (the caller must then do nothing else).
 * @param {NodeJS.Signals[]} signals forwarded to the child
 * @returns {boolean}
 */
export function reexecWithPinnedNode(signals = ["SIGINT", "SIGTERM", "SIGUSR1", "SIGHUP"]) {
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  const tooOld = major < 22 || (major === 22 && minor < 19);
  const pinned = join(root, "node_modules", "node", "bin", "node");
  if (!tooOld || !existsSync(pinned) || process.env.SSL3D_REEXEC === "1") {
    if (tooOld) process.stderr.write(`ssl3d: warning: Node ${process.version} is older than the supported >=22.19; run 'npm ci' to install the pinned Node\n`);
    return false;
  }
  const child = spawn(pinned, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, SSL3D_REEXEC: "1" },
  });
  for (const sig of signals) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
  return true;
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
