#!/usr/bin/env node
// Starts the ssl3d operator (operator/src/main.ts) via launch.mjs: pinned Node >= 22.19 (@kubernetes/client-node 2.x
// needs it), tsx in a checkout, the compiled dist/ in an image.
import { importEntry, reexecWithPinnedNode } from "./launch.mjs";

if (!reexecWithPinnedNode(["SIGINT", "SIGTERM", "SIGHUP"])) {
  await importEntry("operator/src/main.ts", "dist/operator/src/main.js");
}
