/**
 * Model test through the real system: seeded random workloads run by main.ts with --history, and every
 * history checked by the checker (src/checker.ts), which trusts nothing the branches say of themselves.
 */

import { assertEquals, assertOk } from "./_assert.ts";
import { makeInput, runEntry, tempDir } from "./_processes.ts";
import { Random } from "../src/random.ts";
import { checkHistory } from "../src/checker.ts";
import { type History, parseHistory } from "../src/history.ts";

/** Customers 1..4, each entry a few random events at random branches of three. */
function randomCustomers(random: Random): unknown[] {
  return Array.from({ length: 6 }, () => ({
    id: 1 + random.below(4),
    type: "customer",
    events: Array.from({ length: 4 }, () => {
      const kind = random.pick(["query", "deposit", "withdraw"] as const);
      return { interface: kind, money: random.below(120), dest: 1 + random.below(3) };
    }),
  }));
}

for (const mode of ["one at a time", "--concurrent"]) {
  Deno.test(`main.ts --history writes what the checker accepts, for seeded random workloads (${mode})`, async () => {
    const base = Number(Deno.env.get("BANK_SEED") ?? 1);
    await using dir = await tempDir();
    for (let seed = base; seed < base + 3; seed++) {
      const input = makeInput(3, 100, randomCustomers(new Random(seed)));
      await Deno.writeTextFile(`${dir.path}/in.json`, input);
      const flags = mode === "--concurrent" ? ["--concurrent"] : [];
      const run = await runEntry("main.ts", ["in.json", "--history", "history.jsonl", ...flags], dir.path);
      assertEquals(run.code, 0, `seed ${seed}: ${run.stderr}`);
      const history = parseHistory(await Deno.readTextFile(`${dir.path}/history.jsonl`), "history.jsonl");
      assertEquals(history.requests.length, 24, `seed ${seed}`);
      const result = checkHistory(history);
      assertOk(result.ok, `seed ${seed} (rerun with BANK_SEED=${seed}): ${!result.ok && result.violation}`);
      // The check reads the real replies: one changed balance is caught.
      const query = history.requests.findIndex((request) => request.interface === "query");
      if (query >= 0) {
        const requests = history.requests.map((request, index) =>
          index === query ? { ...request, balance: request.balance + 1 } : request
        );
        const tampered: History = { ...history, requests };
        assertOk(!checkHistory(tampered).ok, `seed ${seed}: a tampered history passed`);
      }
    }
  });
}
