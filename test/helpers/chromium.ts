/**
 * A small Chrome DevTools Protocol client for tests: Debian's headless `chromium` (scripts/setup.d/35-chromium.sh)
 * driven over `--remote-debugging-pipe` (fd 3 in, fd 4 out, NUL-separated JSON), so no port is opened and no browser
 * is downloaded. `renderPage` loads a page, collects console errors and uncaught exceptions, evaluates an expression
 * in it and takes a full-page screenshot.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";

export function chromiumBinary(): string {
  const candidates = [process.env.SSL3D_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter(
    (p): p is string => p !== undefined && p !== "",
  );
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined)
    throw new Error(
      `chromium not found (${candidates.join(", ")}): run 'bash scripts/test-setup.sh' (scripts/setup.d/35-chromium.sh)`,
    );
  return found;
}

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

class Cdp {
  private nextId = 1;
  private buf = "";
  private readonly pending = new Map<number, { res: (r: Record<string, unknown>) => void; rej: (e: Error) => void }>();
  readonly events: CdpMessage[] = [];
  private waiters: { method: string; res: () => void }[] = [];

  constructor(
    private readonly out: Writable,
    input: Readable,
  ) {
    input.on("data", (b: Buffer) => {
      this.buf += b.toString("utf8");
      let i;
      while ((i = this.buf.indexOf("\0")) >= 0) {
        const msg = JSON.parse(this.buf.slice(0, i)) as CdpMessage;
        this.buf = this.buf.slice(i + 1);
        this.onMessage(msg);
      }
    });
  }

  private onMessage(m: CdpMessage): void {
    if (m.id !== undefined) {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error !== undefined) p?.rej(new Error(m.error.message));
      else p?.res(m.result ?? {});
      return;
    }
    this.events.push(m);
    const ready = this.waiters.filter((w) => w.method === m.method);
    this.waiters = this.waiters.filter((w) => w.method !== m.method);
    for (const w of ready) w.res();
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    this.out.write(JSON.stringify({ id, method, params, ...(sessionId === undefined ? {} : { sessionId }) }) + "\0");
    return new Promise((res, rej) => this.pending.set(id, { res, rej }));
  }

  waitFor(method: string, timeoutMs: number): Promise<void> {
    return new Promise((res, rej) => {
      const t = setTimeout(() => {
        rej(new Error(`timed out waiting for ${method}`));
      }, timeoutMs);
      this.waiters.push({
        method,
        res: () => {
          clearTimeout(t);
          res();
        },
      });
    });
  }
}

export interface RenderedPage {
  /** Console messages of level error, uncaught exceptions and browser log entries of level error. */
  readonly errors: string[];
  /** JSON value of the evaluated expression. */
  readonly value: unknown;
  /** Full-page PNG screenshot. */
  readonly screenshot: Buffer;
  readonly width: number;
  readonly height: number;
}

function errorsOf(events: readonly CdpMessage[]): string[] {
  const out: string[] = [];
  for (const e of events) {
    const p = e.params ?? {};
    if (e.method === "Runtime.consoleAPICalled" && (p.type === "error" || p.type === "assert"))
      out.push(`console.${p.type}: ${JSON.stringify(p.args)}`);
    if (e.method === "Runtime.exceptionThrown") out.push(`exception: ${JSON.stringify(p.exceptionDetails)}`);
    if (e.method === "Log.entryAdded") {
      const entry = p.entry as { level?: string; text?: string; url?: string } | undefined;
      if (entry?.level === "error") out.push(`log: ${entry.text ?? ""} ${entry.url ?? ""}`);
    }
  }
  return out;
}

/** Load `url` in headless Chromium at the given viewport width, evaluate `expression`, screenshot the whole page. */
export async function renderPage(
  url: string,
  expression: string,
  opts: { width?: number; timeoutMs?: number } = {},
): Promise<RenderedPage> {
  const width = opts.width ?? 1280;
  const timeout = opts.timeoutMs ?? 60_000;
  const profile = mkdtempSync(join(tmpdir(), "ssl3d-chromium-"));
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--remote-debugging-pipe",
    `--user-data-dir=${profile}`,
    "--hide-scrollbars",
    // no traffic to any host: the page under test is a local file without external resources
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--metrics-recording-only",
    "--mute-audio",
    "about:blank",
  ];
  const child: ChildProcess = spawn(chromiumBinary(), args, { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const toBrowser = child.stdio[3] as Writable;
  toBrowser.on("error", () => undefined); // a browser that died is reported by the pending request, not as EPIPE
  const cdp = new Cdp(toBrowser, child.stdio[4] as Readable);
  const exited = new Promise<void>((res) =>
    child.once("exit", () => {
      res();
    }),
  );
  try {
    const { targetId } = (await cdp.send("Target.createTarget", { url: "about:blank" })) as { targetId: string };
    const { sessionId } = (await cdp.send("Target.attachToTarget", { targetId, flatten: true })) as {
      sessionId: string;
    };
    for (const d of ["Page", "Runtime", "Log"]) await cdp.send(`${d}.enable`, {}, sessionId);
    await cdp.send(
      "Emulation.setDeviceMetricsOverride",
      { width, height: 900, deviceScaleFactor: 1, mobile: false },
      sessionId,
    );
    const loaded = cdp.waitFor("Page.loadEventFired", timeout);
    await cdp.send("Page.navigate", { url }, sessionId);
    await loaded;
    const ev = (await cdp.send(
      "Runtime.evaluate",
      { expression, returnByValue: true, awaitPromise: true },
      sessionId,
    )) as { result: { value?: unknown }; exceptionDetails?: unknown };
    if (ev.exceptionDetails !== undefined) throw new Error(`evaluate failed: ${JSON.stringify(ev.exceptionDetails)}`);
    const metrics = (await cdp.send("Page.getLayoutMetrics", {}, sessionId)) as {
      cssContentSize: { width: number; height: number };
    };
    const height = Math.ceil(metrics.cssContentSize.height);
    const shot = (await cdp.send(
      "Page.captureScreenshot",
      { format: "png", captureBeyondViewport: true, clip: { x: 0, y: 0, width, height, scale: 1 } },
      sessionId,
    )) as { data: string };
    return {
      errors: errorsOf(cdp.events),
      value: ev.result.value,
      screenshot: Buffer.from(shot.data, "base64"),
      width,
      height,
    };
  } catch (err) {
    throw new Error(`${(err as Error).message}\nchromium stderr:\n${stderr.slice(-3000)}`);
  } finally {
    await cdp.send("Browser.close").catch(() => undefined);
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
    rmSync(profile, { recursive: true, force: true });
  }
}
