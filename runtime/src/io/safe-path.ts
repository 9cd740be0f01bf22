/**
 * Nothing escapes its root. Two checks, used by every stage that turns a user-given name into a path or writes and
 * deletes below one of the nnssl roots (docs/limits-and-safety.md, "Paths and roots"):
 *
 * - `checkSafeName`: a name that becomes ONE path component (an image `name`, `subject_id`, `session_id`,
 *   `dataset_index`, `collection_name`, plans / configuration / trainer / run names) must be a plain file name: not
 *   empty, not `.` or `..`, no `/`, `\` or control characters (NUL included), at most 200 bytes (room for the
 *   `__anon.zarr` / `.tmp-<pid>-<hex>` suffixes within the usual 255-byte limit). Violations are ConfigErrors naming the
 *   file and the field.
 * - `assertInside` / `assertInsideReal`: a path about to be written or deleted lies under its root, lexically and
 *   (for the real check) after resolving symbolic links of its existing ancestors, so a symlinked folder inside the
 *   root cannot redirect a write outside it.
 *
 * Leaf module (node:fs and node:path only): the operator may import it.
 */
import { realpathSync } from "node:fs";
import * as path from "node:path";
import { ConfigError, type ErrorContext } from "../errors.js";

/** Longest accepted path component in bytes (leaves room for suffixes below the 255-byte file-name limit). */
export const MAX_NAME_BYTES = 200;

/** Why `name` is not a safe single path component, or undefined when it is. */
export function unsafeNameReason(name: string): string | undefined {
  if (name === "") return "is empty";
  if (name === "." || name === "..") return `"${name}" is a relative folder reference`;
  if (name.includes("/") || name.includes("\\")) return `${JSON.stringify(name)} contains a path separator`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return `${JSON.stringify(name)} contains a control character`;
  if (Buffer.byteLength(name, "utf8") > MAX_NAME_BYTES) return `is longer than ${MAX_NAME_BYTES} bytes`;
  return undefined;
}

/** Throw a ConfigError (naming `what`, the file and the field) unless `name` is a safe single path component. */
export function checkSafeName(name: string, what: string, ctx: ErrorContext = {}): string {
  const reason = unsafeNameReason(name);
  if (reason !== undefined)
    throw new ConfigError(
      `${what} ${reason}; it becomes a file name and must be a plain name (no "/", "\\", "..", control characters)`,
      ctx,
    );
  return name;
}

function isUnder(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === "" || (rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/** `p` resolved; a ConfigError when it is not `root` itself or below it (lexically). */
export function assertInside(root: string, p: string, ctx: ErrorContext = {}): string {
  const r = path.resolve(root);
  const abs = path.resolve(r, p);
  if (!isUnder(r, abs))
    throw new ConfigError(`refusing to write or delete ${abs}: it is outside its root ${r}`, {
      file: ctx.file ?? abs,
      field: ctx.field,
    });
  return abs;
}

/** The real path of `p`'s deepest existing ancestor (or of `p`), joined with the not-yet-existing rest. */
function realPathOfNearest(p: string): string {
  let cur = p;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(realpathSync(cur), ...rest.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return p;
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/**
 * Like `assertInside`, and also after resolving symbolic links: the real folder a write lands in must be below the
 * real root. The last component itself is not resolved (renaming over a symlink replaces the link, not its target).
 */
export function assertInsideReal(root: string, p: string, ctx: ErrorContext = {}): string {
  const abs = assertInside(root, p, ctx);
  const realRoot = realPathOfNearest(path.resolve(root));
  const realParent = realPathOfNearest(path.dirname(abs));
  if (!isUnder(realRoot, realParent)) {
    throw new ConfigError(
      `refusing to write or delete ${abs}: its folder resolves (through a symbolic link) to ${realParent}, outside its root ${realRoot}`,
      { file: ctx.file ?? abs, field: ctx.field },
    );
  }
  return abs;
}

/** `root/segments...` with every segment checked as a safe name and the result checked to lie under `root`. */
export function childPath(root: string, segments: readonly string[], ctx: ErrorContext = {}): string {
  for (const s of segments) checkSafeName(s, "path component", ctx);
  return assertInside(root, path.join(root, ...segments), ctx);
}
