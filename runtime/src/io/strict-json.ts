/**
 * A strict JSON reader for documents users write by hand or by script (`pretrain_data.json`). `JSON.parse` keeps
 * the last of two equal keys and turns a `"__proto__"` key into a special property, so a duplicated subject id
 * silently drops a subject; this scanner reports both as errors naming the JSON path, and refuses nesting deeper
 * than `SSL3D_JSON_MAX_DEPTH` (default 64) with a clear error instead of overflowing a later recursive consumer.
 * It is iterative (no recursion per nesting level) and otherwise accepts exactly RFC 8259 JSON, plus, when asked,
 * Python's `NaN`, `Infinity` and `-Infinity` (what `json.dump` writes), read as null.
 */
import { formatJsonPath } from "../config/collection.js";
import { limit } from "../config/limits.js";
import { ConfigError } from "../errors.js";

export interface StrictJsonOptions {
  /** File named in errors. */
  readonly file: string;
  /** Deepest allowed nesting of objects/arrays (default `limit("jsonDepth")`). */
  readonly maxDepth?: number;
  /** Read Python's NaN / Infinity / -Infinity as null. */
  readonly pythonSpecials?: boolean;
}

interface Frame {
  readonly value: Record<string, unknown> | unknown[];
  readonly isArray: boolean;
  /** Key or index of this container in its parent (undefined for the root). */
  readonly key: string | number | undefined;
  readonly keys: Set<string>;
  pendingKey: string;
}

const NESTED = Symbol("nested");
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class StrictJsonScanner {
  private pos = 0;
  private readonly stack: Frame[] = [];
  private readonly maxDepth: number;

  constructor(
    private readonly text: string,
    private readonly opts: StrictJsonOptions,
  ) {
    this.maxDepth = opts.maxDepth ?? limit("jsonDepth");
  }

  private fail(msg: string, extraKey?: string | number): never {
    const path = this.stack.filter((f) => f.key !== undefined).map((f) => f.key!);
    if (extraKey !== undefined) path.push(extraKey);
    const before = this.text.slice(0, this.pos);
    const line = before.split("\n").length;
    const col = this.pos - before.lastIndexOf("\n");
    throw new ConfigError(`${msg} (line ${line}, column ${col})`, {
      file: this.opts.file,
      field: path.length === 0 ? undefined : formatJsonPath(path),
    });
  }

  private syntax(msg: string, extraKey?: string | number): never {
    return this.fail(`invalid JSON: ${msg}`, extraKey);
  }

  private ws(): void {
    const t = this.text;
    for (;;) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else return;
    }
  }

  private string(): string {
    const t = this.text;
    const start = this.pos++;
    let escaped = false;
    for (;;) {
      if (this.pos >= t.length) this.syntax("unterminated string");
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) break;
      if (c < 0x20) this.syntax("control character in a string");
      if (c === 0x5c) {
        escaped = true;
        this.pos++;
      }
      this.pos++;
    }
    this.pos++;
    const raw = t.slice(start, this.pos);
    if (!escaped) return raw.slice(1, -1);
    try {
      return JSON.parse(raw) as string;
    } catch {
      return this.syntax("invalid escape in a string");
    }
  }

  private literal(word: string): boolean {
    if (this.text.startsWith(word, this.pos)) {
      this.pos += word.length;
      return true;
    }
    return false;
  }

  /** A scalar value, or NESTED after opening a container (pushed on the stack). */
  private startValue(key: string | number | undefined): unknown {
    this.ws();
    const c = this.text[this.pos];
    if (c === "{" || c === "[") {
      if (this.stack.length >= this.maxDepth)
        this.fail(`nested deeper than ${this.maxDepth} levels (limit SSL3D_JSON_MAX_DEPTH)`, key);
      this.pos++;
      const isArray = c === "[";
      this.stack.push({ value: isArray ? [] : {}, isArray, key, keys: new Set(), pendingKey: "" });
      return NESTED;
    }
    if (c === '"') return this.string();
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(this.text);
    if (m !== null && m[0] !== "-") {
      this.pos += m[0].length;
      return Number(m[0]);
    }
    if (this.literal("true")) return true;
    if (this.literal("false")) return false;
    if (this.literal("null")) return null;
    if (
      this.opts.pythonSpecials === true &&
      (this.literal("NaN") || this.literal("Infinity") || this.literal("-Infinity"))
    )
      return null;
    return this.syntax(
      this.pos >= this.text.length
        ? "unexpected end of the document"
        : `unexpected ${JSON.stringify(this.text.slice(this.pos, this.pos + 10))}`,
      key,
    );
  }

  /** Read `"key":` inside the object on top of the stack; duplicates and `__proto__` are errors. */
  private key(frame: Frame): string {
    this.ws();
    if (this.text[this.pos] !== '"') this.syntax("expected a string key");
    const k = this.string();
    if (k === "__proto__") this.fail('key "__proto__" is not allowed', k);
    if (frame.keys.has(k))
      this.fail(`duplicate key ${JSON.stringify(k)} (JSON keeps only the last one; every key must be unique)`, k);
    frame.keys.add(k);
    frame.pendingKey = k;
    this.ws();
    if (this.text[this.pos] !== ":") this.syntax(`expected ":" after key ${JSON.stringify(k)}`, k);
    this.pos++;
    return k;
  }

  parse(): unknown {
    let value = this.startValue(undefined);
    for (;;) {
      if (value === NESTED) {
        const top = this.stack[this.stack.length - 1]!;
        this.ws();
        if (this.text[this.pos] === (top.isArray ? "]" : "}")) {
          this.pos++;
          this.stack.pop();
          value = top.value;
          continue;
        }
        value = top.isArray ? this.startValue(0) : this.startValue(this.key(top));
        continue;
      }
      const top = this.stack[this.stack.length - 1];
      if (top === undefined) break;
      if (top.isArray) (top.value as unknown[]).push(value);
      else (top.value as Record<string, unknown>)[top.pendingKey] = value; // never "__proto__" (refused above)
      this.ws();
      const c = this.text[this.pos];
      if (c === ",") {
        this.pos++;
        value = top.isArray ? this.startValue((top.value as unknown[]).length) : this.startValue(this.key(top));
      } else if (c === (top.isArray ? "]" : "}")) {
        this.pos++;
        this.stack.pop();
        value = top.value;
      } else {
        this.syntax(
          c === undefined
            ? "unexpected end of the document"
            : `expected "," or "${top.isArray ? "]" : "}"}", got ${JSON.stringify(c)}`,
        );
      }
    }
    this.ws();
    if (this.pos < this.text.length) this.syntax("unexpected text after the JSON value");
    return value;
  }
}

/** Parse `text` strictly; a ConfigError naming the file, the JSON path and the line/column on any problem. */
export function parseStrictJson(text: string, opts: StrictJsonOptions): unknown {
  return new StrictJsonScanner(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text, opts).parse();
}
