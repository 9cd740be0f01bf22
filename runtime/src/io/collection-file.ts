/**
 * Reading and writing `pretrain_data.json`. Reading validates against the schemas of `config/collection.ts` and
 * resolves `$`-relative paths; writing serialises with every key present, paths relative to `$nnssl_raw` /
 * `$nnssl_preprocessed` where they lie under them, atomically (a reader never sees a partial file).
 */
import type { Collection } from "../config/collection.js";
import { parseCollection, resolveCollectionPaths, serializeCollection } from "../config/collection.js";
import { processEnv, type Env } from "../config/settings.js";
import { LIMITS, limit } from "../config/limits.js";
import { ConfigError, Ssl3dError } from "../errors.js";
import { writeJsonAtomic } from "./atomic.js";
import { readRegularFile } from "./regular-file.js";
import { parseStrictJson } from "./strict-json.js";

export interface CollectionIoOptions {
  readonly env?: Env;
}

/**
 * Python's `json.dump` writes `NaN`, `Infinity` and `-Infinity` (e.g. a missing OpenMind image-quality score);
 * read them as null. Strings are left untouched.
 */
export function pythonJsonToJson(text: string): string {
  if (!/NaN|Infinity/.test(text)) return text;
  return text.replace(/"(?:[^"\\]|\\.)*"|-?\bInfinity\b|\bNaN\b/g, (m) => (m.startsWith('"') ? m : "null"));
}

/**
 * Parse (strictly, `io/strict-json.ts`), validate and resolve a collection file. Errors are ConfigErrors naming the
 * file and JSON path.
 */
export async function readCollection(file: string, opts: CollectionIoOptions = {}): Promise<Collection> {
  const env = opts.env ?? processEnv();
  let text: string;
  try {
    text = (
      await readRegularFile(file, {
        what: "collection file",
        maxBytes: limit("documentBytes", env),
        maxBytesEnv: LIMITS.documentBytes.env,
      })
    ).toString("utf8");
  } catch (err) {
    if (err instanceof Ssl3dError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(
      code === "ENOENT"
        ? "collection file not found"
        : code === "EISDIR"
          ? "is a directory, expected pretrain_data.json"
          : `cannot read collection file (${code ?? String(err)})`,
      { file, cause: err },
    );
  }
  // strict: duplicate keys, "__proto__" keys and excessive nesting are errors naming the JSON path
  const doc = parseStrictJson(text, { file, pythonSpecials: true });
  return resolveCollectionPaths(parseCollection(doc, file), { env, file });
}

/** The JSON text `writeCollection` writes (4-space indent like upstream's converter, trailing newline). */
export function collectionJson(c: Collection, env: Env = processEnv()): string {
  return JSON.stringify(serializeCollection(c, env), null, 4) + "\n";
}

/** Write atomically; does not mutate `c`. */
export async function writeCollection(file: string, c: Collection, opts: CollectionIoOptions = {}): Promise<void> {
  const env = opts.env ?? processEnv();
  await writeJsonAtomic(file, serializeCollection(c, env), 4);
}
