/** Worker-thread entry of the preprocessing pool: runs one task per message, replies with the result or error. */
import { parentPort } from "node:worker_threads";
import { Ssl3dError } from "../errors.js";
import { handlers, type TaskKind } from "./tasks.js";

interface Request {
  readonly id: number;
  readonly kind: TaskKind;
  readonly input: unknown;
}

const port = parentPort;
if (port === null) throw new Error("worker.ts must run in a worker thread");
port.on("message", (msg: Request) => {
  const handler = handlers[msg.kind] as (input: unknown) => Promise<unknown>;
  handler(msg.input).then(
    (result) => {
      port.postMessage({ id: msg.id, ok: true, result });
    },
    (err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      port.postMessage({
        id: msg.id,
        ok: false,
        error: {
          name: e.name,
          message: e.message,
          file: err instanceof Ssl3dError ? err.file : undefined,
          stack: e.stack,
        },
      });
    },
  );
});
