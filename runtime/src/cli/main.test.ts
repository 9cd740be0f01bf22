import assert from "node:assert/strict";
import { test } from "node:test";
import type { CliCommand } from "./command.js";
import { commandForAlias, commandIndex, translateLegacyFlags } from "./main.js";

const fake: CliCommand = {
  name: "train",
  aliases: ["nnssl_train"],
  legacyFlags: { "-tr": "--trainer", "-np": "--num-processes" },
  register: () => undefined,
};

test("nnssl executable names map to their sub-command", () => {
  assert.equal(commandForAlias("/usr/bin/nnssl_train", [fake])?.name, "train");
  assert.equal(commandForAlias("ssl3d", [fake]), undefined);
});

test("single-dash nnssl flags are rewritten, other arguments untouched", () => {
  assert.deepEqual(translateLegacyFlags(["train", "1", "onemmiso", "-tr", "X", "-np=4", "-t"], fake), [
    "train",
    "1",
    "onemmiso",
    "--trainer",
    "X",
    "--num-processes=4",
    "-t",
  ]);
});

test("the sub-command is found after global options (and a global option's value)", () => {
  assert.equal(commandIndex(["plan-and-preprocess", "-d", "1"]), 0);
  assert.equal(commandIndex(["--verbose", "plan-and-preprocess", "-np", "1"]), 1);
  assert.equal(commandIndex(["--log-format", "json", "--verbose", "train", "1"]), 3);
  assert.equal(commandIndex(["--verbose"]), -1);
});
