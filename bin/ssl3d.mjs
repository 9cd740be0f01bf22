#!/usr/bin/env node
// ssl3d launcher (see launch.mjs). Invoked under an nnssl name (nnssl_train, nnssl_plan_and_preprocess, ...) it runs
// the matching sub-command.
import { basename } from "node:path";
import { importEntry, reexecWithPinnedNode } from "./launch.mjs";

if (!reexecWithPinnedNode()) {
  const entry = /** @type {{ main: (argv: string[], invokedAs: string) => Promise<number> }} */ (
    await importEntry("runtime/src/cli/main.ts", "dist/runtime/src/cli/main.js")
  );
  process.exitCode = await entry.main(process.argv.slice(2), basename(process.argv[1] ?? "ssl3d"));
}
