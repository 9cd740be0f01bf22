/** The operator's root logger: pino JSON to stderr; level from SSL3D_LOG_LEVEL (default info). */
import { pino, type Logger } from "pino";

export function createLogger(name = "ssl3d-operator"): Logger {
  return pino({ name, level: process.env.SSL3D_LOG_LEVEL ?? "info" }, pino.destination(2));
}
