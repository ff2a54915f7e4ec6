import { assertEquals, assertOk } from "./_assert.ts";
import { runHarness } from "./_fault_harness.ts";
import { tempDir } from "./_processes.ts";

Deno.test("five real branches killed, restarted, paused and resumed under concurrent customers lose nothing", async () => {
  const seed = Number(Deno.env.get("BANK_SEED") ?? 1);
  await using dir = await tempDir();
  const report = await runHarness({ seed, root: dir.path, faults: 4 });
  assertOk(report.violation === undefined, `seed ${seed}: ${report.violation}`);
  assertEquals(report.faults.length, 4);
  assertEquals(report.requests, 8 * 40);
  assertOk(report.updates > 0);
});
