import { assertEquals, assertOk } from "./_assert.ts";
import { runHarness } from "./_fault_harness.ts";
import { tempDir } from "./_processes.ts";

Deno.test("five real branches with failover, killed, restarted, paused and resumed under concurrent customers, lose nothing", async () => {
  const seed = Number(Deno.env.get("BANK_SEED") ?? 1);
  await using dir = await tempDir();
  const report = await runHarness({ seed, root: dir.path });
  // Timing is real: a seed gives the same schedule of faults, not the same run.
  const faults = report.faults.map(({ kind, branch }) => `${kind} ${branch}`).join(", ");
  assertOk(report.violation === undefined, `seed ${seed} (${faults}): ${report.violation}`);
  assertOk(report.updates > 0, `seed ${seed}: no update succeeded`);
  // The first fault killed the primary, and the bank served again under a new one while it was down.
  assertEquals(report.recoveriesMs.length >= 1, true, faults);
});
