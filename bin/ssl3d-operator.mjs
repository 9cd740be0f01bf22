#!/usr/bin/env node
// Starts the ssl3d operator (operator/src/main.ts) via launch.mjs: pinned Node >= 22.19 (@kubernetes/client-node 2.x
// needs it), tsx in a checkout, the compiled dist/ in an image.
import { importEntry, reexecWithPinnedNode, watchLauncher } from "./launch.mjs";

// The operator never loads TensorFlow: only an old Node makes it re-execute, never the GPU build's loader path.
if (!reexecWithPinnedNode(["SIGINT", "SIGTERM", "SIGHUP"], { gpuLoaderPath: false })) {
  watchLauncher();
  await importEntry("operator/src/main.ts", "dist/operator/src/main.js");
}
