#!/usr/bin/env node
// Starts the ssl3d operator (operator/src/main.ts): through tsx in a checkout, else the compiled dist/ of an image.
// Like bin/ssl3d.mjs, re-executes itself with the project's pinned Node when the running one is older than 22.19
// (@kubernetes/client-node 2.x needs it).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const [major, minor] = process.versions.node.split(".").map(Number);
const tooOld = major < 22 || (major === 22 && minor < 19);
const pinned = join(root, "node_modules", "node", "bin", "node");

if (tooOld && existsSync(pinned) && process.env.SSL3D_REEXEC !== "1") {
  const child = spawn(pinned, [...process.execArgv, process.argv[1], ...process.argv.slice(2)], {
    stdio: "inherit",
    env: { ...process.env, SSL3D_REEXEC: "1" },
  });
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
} else {
  const src = join(root, "operator", "src", "main.ts");
  const built = join(root, "dist", "operator", "src", "main.js");
  if (existsSync(src) && existsSync(join(root, "node_modules", "tsx"))) {
    const { register } = await import("tsx/esm/api");
    register();
    await import(pathToFileURL(src).href);
  } else {
    await import(pathToFileURL(built).href);
  }
}
