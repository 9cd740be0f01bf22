import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger, forPeople } from "./log.js";

test("forPeople: a TTY gets sentences unless --log-format json; pipes never", () => {
  createLogger({ level: "silent" });
  assert.equal(forPeople({ isTTY: true }), true);
  assert.equal(forPeople({ isTTY: false }), false);
  assert.equal(forPeople({}), false);
  createLogger({ level: "silent", json: true });
  assert.equal(forPeople({ isTTY: true }), false);
  createLogger({ level: "silent" });
});
