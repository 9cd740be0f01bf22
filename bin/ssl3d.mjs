#!/usr/bin/env node
// ssl3d launcher. Runs the TypeScript sources through tsx when they and tsx are present (a checkout), else the
// compiled dist/ (an image built with `npm run build`). If the running Node is older than the supported minimum
// and the project's pinned Node (devDependency `node`) is installed, re-executes itself with that Node.
// Invoked under an nnssl name (nnssl_train, nnssl_plan_and_preprocess, ...) it runs the matching sub-command.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
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
  for (const sig of ["SIGINT", "SIGTERM", "SIGUSR1", "SIGHUP"]) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
} else {
  if (tooOld) process.stderr.write(`ssl3d: warning: Node ${process.version} is older than the supported >=22.19; run 'npm ci' to install the pinned Node\n`);
  const src = join(root, "runtime", "src", "cli", "main.ts");
  const dist = join(root, "dist", "runtime", "src", "cli", "main.js");
  let entry = dist;
  if (existsSync(src) && process.env.SSL3D_USE_DIST !== "1") {
    try {
      const { register } = await import("tsx/esm/api");
      register();
      entry = src;
    } catch {
      entry = dist;
    }
  }
  const { main } = await import(pathToFileURL(entry).href);
  const code = await main(process.argv.slice(2), basename(process.argv[1] ?? "ssl3d"));
  process.exitCode = code;
}
