/** Names of the images scripts/cluster/build-images.sh builds from the Dockerfile and imports into the local cluster. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "./chart.js";

export const APP_VERSION = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string })
  .version;
export const RUNTIME_CPU_IMAGE = `docker.io/ssl3d/runtime-cpu:${APP_VERSION}`;
export const OPERATOR_IMAGE = `docker.io/ssl3d/operator:${APP_VERSION}`;
