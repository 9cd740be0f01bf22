// ESLint flat config: typescript-eslint strict type-checked rules for all TypeScript in the repo.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "dist/**",
      "node_modules/**",
      "native/build/**",
      ".cache/**",
      "helm/**",
      "crds/**",
      "**/*.cjs",
      "eslint.config.js",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/switch-exhaustiveness-check": "error",
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true, allowBoolean: true }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-non-null-assertion": "off",
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
  {
    // The contract module (api/) is shared by the runtime and the operator: zod and plain TypeScript only.
    files: ["api/**/*.ts"],
    ignores: ["**/*.test.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/runtime/**", "**/operator/**"],
              message: "api/ is imported by the runtime and the operator, never the other way round.",
            },
            {
              group: ["@kubernetes/*", "@tensorflow/*", "kubernetes-models", "kubernetes-models/*"],
              message: "api/ carries no Kubernetes client and no TensorFlow.",
            },
          ],
        },
      ],
    },
  },
  {
    // The launchers and the addon build script are JavaScript, type-checked through tsconfig's checkJs; tsc reports
    // undefined names there (typescript-eslint's advice), so ESLint's no-undef, which knows no Node globals, is off.
    files: ["**/*.mjs"],
    rules: { "no-undef": "off" },
  },
  {
    // The runtime never imports the operator (the operator image carries no TensorFlow, and vice versa).
    files: ["runtime/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["**/operator/**"], message: "The runtime never imports the operator." }] },
      ],
    },
  },
  {
    // One module reads the environment: every variable the runtime honours is listed and typed in
    // runtime/src/config/settings.ts, which generates the README's table (ADR 0079).
    files: ["runtime/src/**/*.ts"],
    ignores: ["**/*.test.ts", "runtime/src/config/settings.ts"],
    rules: {
      "no-restricted-properties": [
        "error",
        {
          object: "process",
          property: "env",
          message:
            "Read environment variables through runtime/src/config/settings.ts (envString, envInt, processEnv, childEnv).",
        },
      ],
    },
  },
  {
    // The operator may import only the runtime's zod-only config schemas, never TensorFlow-bearing code.
    files: ["operator/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/runtime/src/!(config)/**", "**/runtime/src/!(config)"],
              message: "The operator may import only runtime/src/config/*.",
            },
            { group: ["@tensorflow/*"], message: "The operator image carries no TensorFlow." },
          ],
        },
      ],
    },
  },
  {
    files: ["**/*.test.ts", "test/**/*.ts", "bench/**/*.ts", "scripts/**/*.ts"],
    rules: {
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          allowForKnownSafeCalls: [
            { from: "package", package: "node:test", name: ["test", "it", "describe", "suite"] },
          ],
        },
      ],
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
    },
  },
);
