/**
 * A small Dockerfile reader for the delivery tests: instructions with continuation lines joined, the global ARG
 * defaults, stages, and the `# ci: skip <reason>` marker that the clean-folder emulation honours. Also a
 * .dockerignore matcher (last matching pattern wins; a pattern also matches everything below a directory).
 */
export interface Instruction {
  readonly line: number;
  readonly op: string;
  /** Flags such as --from=build or --mount=type=cache,... */
  readonly flags: readonly string[];
  /** The rest of the instruction after the flags, continuation lines joined with single spaces. */
  readonly args: string;
  /** Set when the instruction is preceded by `# ci: skip <reason>`. */
  readonly ciSkip?: string;
}

export interface Stage {
  readonly name: string;
  readonly base: string;
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  readonly args: Readonly<Record<string, string>>;
  readonly stages: readonly Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split("\n");
  const instructions: Instruction[] = [];
  let skip: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const trimmed = raw.trim();
    if (trimmed === "") continue;
    if (trimmed.startsWith("#")) {
      const m = /^#\s*ci:\s*skip\s+(.*)$/.exec(trimmed);
      if (m !== null) skip = m[1]!;
      continue;
    }
    const start = i;
    let full = trimmed;
    while (full.endsWith("\\") && i + 1 < lines.length) {
      i++;
      const next = lines[i]!.trim();
      if (next.startsWith("#")) continue;
      full = `${full.slice(0, -1).trimEnd()} ${next}`;
    }
    const m = /^(\w+)\s+(.*)$/.exec(full);
    if (m === null) throw new Error(`Dockerfile:${start + 1}: cannot parse '${full}'`);
    const op = m[1]!.toUpperCase();
    let rest = m[2]!;
    const flags: string[] = [];
    for (
      let f = /^(--\S+)\s+/.exec(rest);
      f !== null && op !== "ENTRYPOINT" && op !== "CMD";
      f = /^(--\S+)\s+/.exec(rest)
    ) {
      flags.push(f[1]!);
      rest = rest.slice(f[0].length);
    }
    instructions.push({ line: start + 1, op, flags, args: rest, ...(skip === undefined ? {} : { ciSkip: skip }) });
    skip = undefined;
  }
  const args: Record<string, string> = {};
  const stages: { name: string; base: string; instructions: Instruction[] }[] = [];
  for (const ins of instructions) {
    if (ins.op === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (m === null) throw new Error(`Dockerfile:${ins.line}: bad FROM`);
      stages.push({ name: m[2] ?? String(stages.length), base: m[1]!, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.op !== "ARG") throw new Error(`Dockerfile:${ins.line}: ${ins.op} before the first FROM`);
      const m = /^(\w+)(?:=(.*))?$/.exec(ins.args);
      if (m !== null) args[m[1]!] = m[2] ?? "";
    } else {
      stages.at(-1)!.instructions.push(ins);
    }
  }
  return { args, stages };
}

/** Resolve ${ARG} references with the global ARG defaults. */
export function expandArgs(s: string, args: Readonly<Record<string, string>>): string {
  return s.replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a?: string, b?: string) => args[a ?? b ?? ""] ?? m);
}

/** Words of a COPY/ADD argument list (no JSON form). */
export function words(s: string): string[] {
  return s.split(/\s+/).filter((w) => w !== "");
}

function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      re += ".*";
      i++;
      if (glob[i + 1] === "/") i++;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}(/.*)?$`);
}

/** A .dockerignore: `ignored(path)` for a path relative to the build context. */
export function dockerignore(text: string): { ignored: (path: string) => boolean } {
  const rules = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+/, "").replace(/\/+$/, "");
      return { negate, re: globToRegExp(pattern) };
    });
  return {
    ignored(path: string): boolean {
      let out = false;
      for (const r of rules) if (r.re.test(path)) out = !r.negate;
      return out;
    },
  };
}
