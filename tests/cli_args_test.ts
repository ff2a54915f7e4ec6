import {
  addressFlag,
  addressFlags,
  basePort,
  DURATION_MAX_MS,
  durationFlag,
  integerFlag,
  PORT_MAX,
  UsageError,
} from "../src/cli_args.ts";
import { assertEquals, assertThrows } from "./_assert.ts";

const refusal = (run: () => unknown) => assertThrows(run, UsageError).message;

Deno.test("addressFlag() takes ports 1 to 65535, and 0 where the system may pick one", () => {
  assertEquals(addressFlag("--peer", "127.0.0.1:1"), "127.0.0.1:1");
  assertEquals(addressFlag("--peer", `127.0.0.1:${PORT_MAX}`), "127.0.0.1:65535");
  assertEquals(addressFlag("--listen", "127.0.0.1:0", 0), "127.0.0.1:0");
  assertEquals(
    refusal(() => addressFlag("--peer", "127.0.0.1:0")),
    '--peer: port 0 of "127.0.0.1:0" is not between 1 and 65535',
  );
  assertEquals(
    refusal(() => addressFlag("--listen", "127.0.0.1:65536", 0)),
    '--listen: port 65536 of "127.0.0.1:65536" is not between 0 and 65535',
  );
  assertEquals(
    refusal(() => addressFlag("--listen", "localhost", 0)),
    '--listen: expected HOST:PORT, got "localhost"',
  );
});

Deno.test("addressFlags() maps ids to addresses, refusing a malformed value, a repeated id or a port past 65535", () => {
  assertEquals(
    [...addressFlags("branch", ["1=127.0.0.1:50001", "2=[::1]:50002"])],
    [[1, "127.0.0.1:50001"], [2, "[::1]:50002"]],
  );
  assertEquals(
    refusal(() => addressFlags("branch", ["one=127.0.0.1:1"])),
    '--branch: expected ID=HOST:PORT, got "one=127.0.0.1:1"',
  );
  assertEquals(
    refusal(() => addressFlags("branch", ["1=127.0.0.1:1", "1=127.0.0.1:2"])),
    "--branch: branch 1 given twice",
  );
  assertEquals(
    refusal(() => addressFlags("branch", ["1=127.0.0.1:99999"])),
    '--branch: port 99999 of "127.0.0.1:99999" is not between 1 and 65535',
  );
});

Deno.test("basePort() is the original's base + id layout, up to port 65535 and not past it", () => {
  assertEquals(basePort(50_000, 3), 50_003);
  assertEquals(basePort(65_534, 1), PORT_MAX);
  assertEquals(
    refusal(() => basePort(65_534, 2)),
    "--port-base: branch 2 would listen on port 65536 (65534 + 2), past 65535",
  );
});

Deno.test("integerFlag() takes a non-negative safe integer, or the fallback when absent", () => {
  assertEquals(integerFlag("balance", "400", 0), 400);
  assertEquals(integerFlag("balance", undefined, 7), 7);
  for (const value of ["-1", "1.5", "1e3", "", "9007199254740992"]) {
    assertEquals(
      refusal(() => integerFlag("balance", value, 0)),
      `--balance: expected a non-negative integer, got "${value}"`,
    );
  }
});

Deno.test("durationFlag() takes 1 ms up to the longest a timer takes, not 0 and not beyond", () => {
  assertEquals(durationFlag("deadline-ms", "1", 10_000), 1);
  assertEquals(durationFlag("deadline-ms", undefined, 10_000), 10_000);
  assertEquals(durationFlag("deadline-ms", String(DURATION_MAX_MS), 10_000), 2_147_483_647);
  assertEquals(refusal(() => durationFlag("deadline-ms", "0", 10_000)), "--deadline-ms: must be at least 1");
  // setTimeout fires at once for a longer one, so main would report its start-up as timed out at once.
  assertEquals(
    refusal(() => durationFlag("start-timeout-ms", "3000000000", 30_000)),
    "--start-timeout-ms: must be at most 2147483647 (about 24 days), got 3000000000",
  );
});
