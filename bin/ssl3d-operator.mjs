#!/usr/bin/env node
// Starts the ssl3d operator (operator/src/main.ts): through tsx in a checkout, else the compiled dist/ of an image.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "operator", "src", "main.ts");
const built = join(root, "dist", "operator", "src", "main.js");
if (existsSync(src) && existsSync(join(root, "node_modules", "tsx"))) {
  const { register } = await import("tsx/esm/api");
  register();
  await import(pathToFileURL(src).href);
} else {
  await import(pathToFileURL(built).href);
}
