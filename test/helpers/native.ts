/**
 * How tests treat a missing native kernel addon: a failure (CI builds it in scripts/setup.d/30-native.sh, so a
 * missing or broken build must not turn ~200 kernel tests into silent skips), unless SSL3D_TEST_ALLOW_NO_NATIVE=1
 * asks for the no-compiler path on purpose; then the native-only tests are skipped with that reason.
 */
export function nativeSkipReason(available: boolean): string | false {
  if (available) return false;
  if (process.env.SSL3D_TEST_ALLOW_NO_NATIVE === "1") return "native addon not built (SSL3D_TEST_ALLOW_NO_NATIVE=1)";
  throw new Error(
    "the native kernel addon is not built or failed to load: run `npm run build:native` " +
      "(SSL3D_TEST_ALLOW_NO_NATIVE=1 tests the no-compiler path on purpose)",
  );
}
