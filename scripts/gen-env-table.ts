/**
 * Generates the README's table of the environment variables the runtime honours from `SETTINGS` in
 * runtime/src/config/settings.ts (the single source), between the markers below. Usage:
 * `node --import tsx scripts/gen-env-table.ts [--check]`; --check compares with README.md and exits 1 on drift
 * (scripts/verify-generated.sh runs it in CI).
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { settingsMarkdown } from "../runtime/src/config/settings.js";
import { writeFileAtomic } from "../runtime/src/io/atomic.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const README = "README.md";
export const BEGIN =
  "<!-- BEGIN GENERATED: environment variables (scripts/gen-env-table.ts from runtime/src/config/settings.ts; run `npm run generate`) -->";
export const END = "<!-- END GENERATED: environment variables -->";

/** `readme` with the text between the markers replaced by the generated table; an Error when a marker is missing. */
export function withEnvTable(readme: string, table = settingsMarkdown()): string {
  const b = readme.indexOf(BEGIN);
  const e = readme.indexOf(END);
  if (b === -1 || e === -1 || e < b)
    throw new Error(
      `${README}: the markers of the generated environment table are missing or out of order (${BEGIN} ... ${END})`,
    );
  return `${readme.slice(0, b + BEGIN.length)}\n\n${table.trimEnd()}\n\n${readme.slice(e)}`;
}

async function main(): Promise<void> {
  const file = join(root, README);
  const onDisk = readFileSync(file, "utf8");
  const content = withEnvTable(onDisk);
  if (onDisk === content) return;
  if (process.argv.includes("--check")) {
    console.error(
      `${README}: the environment-variable table differs from runtime/src/config/settings.ts: run \`npm run generate\``,
    );
    process.exitCode = 1;
    return;
  }
  await writeFileAtomic(file, content);
  console.log(`wrote the environment table of ${README}`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await main();
