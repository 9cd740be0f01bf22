/**
 * config/settings.ts is the one list of the variables the runtime reads: every listed variable is read somewhere
 * (runtime/src, or the native addon), the README's table is generated from the list, and malformed integers name the
 * variable.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { withEnvTable } from "../../../scripts/gen-env-table.js";
import { ConfigError } from "../errors.js";
import { childEnv, envInt, envRaw, envString, SETTINGS, settingsMarkdown, type SettingName } from "./settings.js";

const repo = join(import.meta.dirname, "..", "..", "..");

function sources(dir: string, ext: RegExp): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return n === "build" ? [] : sources(p, ext);
    return ext.test(n) && !n.endsWith(".test.ts") ? [p] : [];
  });
}

test("every listed variable is read by the runtime (no stale rows in the README)", () => {
  const text = [
    ...sources(join(repo, "runtime", "src"), /\.ts$/),
    ...sources(join(repo, "native", "src"), /\.(cc|h)$/),
    join(repo, "api", "pod.ts"),
  ]
    .filter((f) => !f.endsWith(join("config", "settings.ts")))
    .map((f) => readFileSync(f, "utf8"))
    .join("\n");
  for (const name of Object.keys(SETTINGS))
    assert.ok(text.includes(`"${name}"`) || text.includes(`.${name}`), `${name} is listed but nothing reads it`);
});

test("the README's table is the generated one, with every variable", () => {
  const readme = readFileSync(join(repo, "README.md"), "utf8");
  assert.equal(withEnvTable(readme), readme, "README.md is stale: npm run generate");
  for (const name of Object.keys(SETTINGS)) assert.ok(settingsMarkdown().includes(`| \`${name}\` |`), name);
  assert.throws(() => withEnvTable("# no markers\n"), /markers of the generated environment table/);
});

test("readers: empty is unset, integers are checked and errors name the variable", () => {
  const env = { SSL3D_DIST_TIMEOUT_S: "x", PET_NNODES: "", SSL3D_RUN: "r", CUDA_VISIBLE_DEVICES: "" };
  assert.equal(envString("PET_NNODES", env), undefined);
  assert.equal(envRaw("CUDA_VISIBLE_DEVICES", env), "");
  assert.equal(envString("SSL3D_RUN", env), "r");
  assert.equal(envInt("PET_NNODES", 1, 1, env), 1);
  assert.equal(envInt("PET_NODE_RANK", 0, 0, { PET_NODE_RANK: "3" }), 3);
  assert.throws(
    () => envInt("SSL3D_DIST_TIMEOUT_S", 1500, 1, env),
    (e: unknown) =>
      e instanceof ConfigError && e.field === "environment variable SSL3D_DIST_TIMEOUT_S" && /got "x"/.test(e.message),
  );
  assert.throws(() => envInt("PET_NNODES", 1, 1, { PET_NNODES: "0" }), /must be an integer >= 1/);
  const child = childEnv({ SSL3D_RUN: "child" });
  assert.equal(child.SSL3D_RUN, "child");
  assert.equal(child.PATH, process.env.PATH);
  const names: SettingName[] = ["nnssl_raw", "SSL3D_BACKEND"];
  assert.ok(names.every((n) => SETTINGS[n].description.length > 0));
});
