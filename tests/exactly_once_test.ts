/**
 * Exactly once, from the outside: the same deposit sent twice, with the same customer_id and request_id,
 * to real branch processes, is applied once, and both sends get the same answer.
 */

import { assertEquals, assertOk } from "./_assert.ts";
import { startBranch } from "./_processes.ts";
import { BranchClient, RpcError } from "../src/transport.ts";

const DEADLINE_MS = 10_000;

Deno.test("a request sent twice to a backup, with the same request_id, is applied once and answered alike", async () => {
  // The backup first: the primary needs its address.
  await using backup = await startBranch(["--id", "2", "--balance", "100", "--peer", "1=127.0.0.1:1"]);
  await using primary = await startBranch(["--id", "1", "--balance", "100", "--peer", `2=${backup.address}`]);
  const client = new BranchClient(backup.address);
  try {
    await client.waitUntilServing(DEADLINE_MS);
    const deposit = { id: 0, interface: "deposit", money: 25, amount: 25, customer_id: 7, request_id: 1 };
    const first = await client.deliver(deposit, DEADLINE_MS);
    const again = await client.deliver(deposit, DEADLINE_MS);
    // Alike but for the clock: each reply is a message of its own.
    const { clock: firstClock = 0, ...firstReply } = first;
    const { clock: againClock = 0, ...againReply } = again;
    assertEquals(firstReply, { interface: "deposit", success: true, money: 125, balance: 125, position: 1 });
    assertEquals(againReply, firstReply);
    assertOk(againClock > firstClock, `clocks ${firstClock}, ${againClock}`);
    // A different request_id is a different deposit.
    const other = await client.deliver({ ...deposit, request_id: 2 }, DEADLINE_MS);
    assertEquals([other.balance, other.position], [150, 2]);
    const reused = await client.deliver({ ...deposit, amount: 26, money: 26 }, DEADLINE_MS).catch((error) =>
      error
    );
    assertEquals(reused instanceof RpcError && reused.code, "INVALID_ARGUMENT");
    const query = { id: 0, interface: "query", money: 0, amount: 0, customer_id: 7, request_id: 0 };
    assertEquals((await client.deliver(query, DEADLINE_MS)).balance, 150);
  } finally {
    client.close();
  }
  for (const branch of [primary, backup]) assertEquals((await branch.stop()).code, 0);
});
