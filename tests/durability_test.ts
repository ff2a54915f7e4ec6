/**
 * Durability from the outside: three real branch processes, each with its own data directory, under a
 * seeded concurrent workload, one of them killed with SIGKILL while requests are in flight and started
 * again on the same directory and port. The whole history, and every branch's final state, go through
 * the checker (src/checker.ts): no acknowledged update is missing anywhere, none is applied twice.
 *
 * @module
 */

import { assertEquals, assertMatch, assertOk } from "./_assert.ts";
import { Bank, statusUntil, workload } from "./_bank.ts";
import { runEntry, tempDir } from "./_processes.ts";
import { Random } from "../src/random.ts";
import { checkHistory } from "../src/checker.ts";
import { connectAll, finalStates, runCustomers, type TimedResult } from "../src/customer_run.ts";
import { historyOf } from "../src/history.ts";
import type { CustomerEntry, Scenario } from "../src/input.ts";
import { Storage } from "../src/storage.ts";
import { BranchClient, type RpcError, type WireResponse } from "../src/transport.ts";

const BALANCE = 1_000;
const DEADLINE_MS = 2_000;
/** The bank these tests run: three branches, 1 the primary. */
const THREE = { size: 3, balance: BALANCE, deadlineMs: DEADLINE_MS };

/**
 * What happens to the victim: killed with SIGKILL and started again on its directory; the same with its
 * directory deleted first; or paused with SIGSTOP and resumed with SIGCONT.
 */
type Fault = "kill" | "wipe" | "pause";

/**
 * Runs three phases of concurrent customers against the bank: the second with `victim` hit by `fault` as
 * it starts, and brought back once the phase is over (at once, for the primary); the third while it
 * catches up. Returns the history, checked, with every branch's final state (read once each has applied
 * everything answered).
 */
async function runWithFault(
  bank: Bank,
  victim: number,
  to: readonly number[],
  seed: number,
  fault: Fault = "kill",
) {
  const random = new Random(seed);
  const clients = connectAll(new Map([1, 2, 3].map((id) => [id, bank.address(id)])));
  try {
    const session = { seen: 0 };
    // Enough attempts to outlast a restart: a request to a branch that is down, or whose primary is,
    // fails with UNAVAILABLE or a deadline, and is retried with the same request id.
    const options = { deadlineMs: DEADLINE_MS, concurrent: true, session, attempts: 12 };
    const phases = [workload(random, 4, to, 1), workload(random, 4, to, 11), workload(random, 4, to, 21)];
    const results: TimedResult[] = [];
    results.push(...await runCustomers(phases[0] as CustomerEntry[], clients, options));
    // A backup no customer talks to may be sent entries up to 100 ms late (see sendAtOnce): the fault
    // waits until the victim holds part of the log, so that it comes back with something of its own.
    const victimHolds = await statusUntil(
      clients.get(victim) as BranchClient,
      ({ position }) => position > 0,
    );
    assertOk(
      victimHolds.position > 0,
      `branch ${victim} never held an entry: ${JSON.stringify(victimHolds)}`,
    );
    const running = runCustomers(phases[1] as CustomerEntry[], clients, options);
    const branch = bank.branch(victim);
    const bringBack = async () => {
      if (fault === "pause") return branch.signal("SIGCONT");
      if (fault === "wipe") await Deno.remove(`${bank.root}/branch-${victim}`, { recursive: true });
      await bank.start(victim);
    };
    if (fault === "pause") branch.signal("SIGSTOP");
    else assertEquals((await branch.kill()).signal, "SIGKILL");
    if (victim === 1) await bringBack(); // Without its primary, nothing can finish.
    results.push(...await running);
    if (victim !== 1) await bringBack();
    results.push(...await runCustomers(phases[2] as CustomerEntry[], clients, options));
    const scenario: Scenario = {
      branches: [1, 2, 3].map((id) => ({ id, balance: BALANCE })),
      customers: phases.flat(),
    };
    // The restarted branch serves once its primary has linked to it again (and caught it up).
    await Promise.all([...clients.values()].map((client) => client.waitUntilServing(10 * DEADLINE_MS)));
    const finals = await finalStates(clients, session, DEADLINE_MS);
    const history = historyOf(scenario, results, finals);
    const checked = checkHistory(history);
    assertOk(checked.ok, `seed ${seed}: ${!checked.ok && checked.violation}`);
    assertEquals(
      new Set(finals.map(({ position }) => position)).size,
      1,
      `seed ${seed}: ${JSON.stringify(finals)}`,
    );
    return { history, finals };
  } finally {
    for (const client of clients.values()) client.close();
  }
}

Deno.test("a backup killed with SIGKILL mid-run recovers from its disk and catches up; no acknowledged update is lost", async () => {
  const seed = Number(Deno.env.get("BANK_SEED") ?? 1);
  await using dir = await tempDir();
  await using bank = new Bank(dir.path, THREE);
  await bank.startAll();
  // Customers use the branches that stay up: with two disks of three, every update still commits.
  const { history } = await runWithFault(bank, 3, [1, 2], seed);
  assertEquals(history.requests.length, 72);
  const primary = await bank.branch(1).stop();
  // It came back with what it had on its disk, and was sent only what it missed.
  const relinked = [
    ...primary.stderr.matchAll(/backup 3 linked at position (\d+); sending it (\d+) entries/g),
  ].at(-1);
  assertOk(relinked !== undefined, primary.stderr);
  assertOk(Number(relinked[1]) > 0 && Number(relinked[2]) > 0, primary.stderr);
  assertMatch(primary.stderr, /backup 3 caught up at position \d+/);
});

Deno.test("the primary killed with SIGKILL mid-run recovers from its disk; retried requests apply once", async () => {
  const seed = Number(Deno.env.get("BANK_SEED") ?? 1) + 1;
  await using dir = await tempDir();
  await using bank = new Bank(dir.path, THREE);
  await bank.startAll();
  // Customers use the backups: their forwards fail while the primary is down, and are retried.
  const { history } = await runWithFault(bank, 1, [2, 3], seed);
  assertEquals(history.requests.length, 72);
});

Deno.test("a backup paused with SIGSTOP mid-run, then resumed, catches up; so does one whose directory was deleted", async () => {
  const seed = Number(Deno.env.get("BANK_SEED") ?? 1) + 2;
  for (const fault of ["pause", "wipe"] as const) {
    await using dir = await tempDir();
    await using bank = new Bank(dir.path, THREE);
    await bank.startAll();
    const { finals } = await runWithFault(bank, 3, [1, 2], seed, fault);
    assertEquals(
      new Set(finals.map(({ balance }) => balance)).size,
      1,
      `${fault}: ${JSON.stringify(finals)}`,
    );
  }
});

Deno.test("a backup of the quorum that stops answering, its link still up, does not stop commits", async () => {
  await using dir = await tempDir();
  await using bank = new Bank(dir.path, THREE);
  await bank.startAll();
  const primary = new BranchClient(bank.address(1));
  const paused = bank.branch(2);
  try {
    await primary.waitUntilServing(DEADLINE_MS);
    // Entries go at once to backup 2 (the lower id of two equally far along) and are held for backup 3,
    // which no customer talks to. With 2 paused, 3 must be sent what was held for it, and then be sent
    // entries at once, being further along.
    paused.signal("SIGSTOP");
    for (let request = 1; request <= 5; request++) {
      const deposit = {
        id: 0,
        interface: "deposit",
        money: 10,
        amount: 10,
        customer_id: 7,
        request_id: request,
      };
      const { success, balance } = await primary.deliver(deposit, DEADLINE_MS);
      assertEquals([success, balance], [true, BALANCE + 10 * request]);
    }
    const { commit, backups } = await primary.status(DEADLINE_MS);
    assertEquals(commit, 5);
    assertEquals(backups.find(({ id }) => id === 3)?.matched, 5);
  } finally {
    paused.signal("SIGCONT");
    primary.close();
  }
});

Deno.test("a retry after the primary restarts gets the first answer, for a deposit and a failed withdrawal", async () => {
  await using dir = await tempDir();
  await using bank = new Bank(dir.path, THREE);
  await bank.startAll();
  const client = new BranchClient(bank.address(2));
  try {
    await client.waitUntilServing(DEADLINE_MS);
    const deposit = { id: 0, interface: "deposit", money: 25, amount: 25, customer_id: 7, request_id: 1 };
    const withdrawal = { ...deposit, interface: "withdraw", money: 5_000, amount: 5_000, request_id: 2 };
    const first = [await client.deliver(deposit, DEADLINE_MS), await client.deliver(withdrawal, DEADLINE_MS)];
    assertEquals(first.map(({ success, balance }) => [success, balance]), [[true, 1_025], [false, 1_025]]);
    await bank.branch(1).kill();
    // With the primary down, an update is refused, never answered from a backup's replica: UNAVAILABLE once
    // the backup has seen its link go, or the deadline if the forward went out on the link just before.
    const down = await client.deliver({ ...deposit, request_id: 9 }, DEADLINE_MS).catch((error) => error);
    assertOk(["UNAVAILABLE", "DEADLINE_EXCEEDED"].includes((down as RpcError).code), String(down));
    await bank.start(1);
    await client.waitUntilServing(DEADLINE_MS);
    // Enough to make the withdrawal succeed now, if it were decided again.
    const more = { ...deposit, money: 5_000, amount: 5_000, request_id: 3 };
    assertEquals((await retrying(() => client.deliver(more, DEADLINE_MS))).balance, 6_025);
    const again = [await client.deliver(deposit, DEADLINE_MS), await client.deliver(withdrawal, DEADLINE_MS)];
    // The same answers, each in a reply of its own (with a clock of its own).
    const withoutClock = ({ clock: _clock, ...reply }: WireResponse) => reply;
    assertEquals(again.map(withoutClock), first.map(withoutClock));
    const query = { id: 0, interface: "query", money: 0, amount: 0, customer_id: 7, request_id: 0 };
    assertEquals((await client.deliver(query, DEADLINE_MS)).balance, 6_025);
  } finally {
    client.close();
  }
});

/** `call`, retried every 100 ms for up to 10 s while it fails (the backup relinking to the new primary). */
async function retrying<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt === 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

Deno.test("updates that arrive together are written together: fewer transactions than entries", async () => {
  await using dir = await tempDir();
  await using bank = new Bank(dir.path, THREE);
  await bank.startAll();
  const client = new BranchClient(bank.address(1));
  try {
    await client.waitUntilServing(DEADLINE_MS);
    const deposit = { id: 0, interface: "deposit", money: 1, amount: 1, customer_id: 7 };
    const replies = await Promise.all(
      Array.from(
        { length: 50 },
        (_, index) => client.deliver({ ...deposit, request_id: index + 1 }, DEADLINE_MS),
      ),
    );
    assertEquals(Math.max(...replies.map(({ position }) => position)), 50);
  } finally {
    client.close();
  }
  const primary = await bank.branch(1).stop();
  const written = primary.stderr.match(/wrote (\d+) entries in (\d+) transactions?/);
  assertOk(written !== null, primary.stderr);
  assertEquals(Number(written[1]), 50);
  assertOk(Number(written[2]) < 50, written[0]);
});

Deno.test("main.ts status shows each branch's role and positions, and a backup that is down", async () => {
  await using dir = await tempDir();
  await using bank = new Bank(dir.path, THREE);
  await bank.startAll();
  const addresses = [1, 2, 3].map((id) => bank.address(id));
  const client = new BranchClient(bank.address(1));
  try {
    await client.waitUntilServing(DEADLINE_MS);
    const deposit = { id: 0, interface: "deposit", money: 5, amount: 5, customer_id: 7, request_id: 1 };
    await client.deliver(deposit, DEADLINE_MS);
    // A commit needs two disks of three: wait until backup 3 has said it holds position 1 too.
    await statusUntil(client, (status) => status.backups.every(({ matched }) => matched === 1));
    await bank.branch(3).kill();
    await client.deliver({ ...deposit, request_id: 2 }, DEADLINE_MS);
    const primary = await statusUntil(
      client,
      (status) => !status.backups.some(({ id, live }) => id === 3 && live),
    );
    assertEquals(
      [primary.role, primary.position, primary.commit, primary.balance, primary.backups],
      ["primary", 2, 2, BALANCE + 10, [{ id: 2, live: true, matched: 2 }, {
        id: 3,
        live: false,
        matched: 1,
      }]],
    );
  } finally {
    client.close();
  }
  const run = await runEntry("main.ts", ["status", ...addresses]);
  assertEquals(run.code, 1, "branch 3 is down");
  const lines = run.stdout.trim().split("\n");
  assertEquals(lines.length, 3, run.stdout);
  assertMatch(
    lines[1] as string,
    /^127\.0\.0\.1:\d+ +1 +primary +0 +2 +2 +2 +1010 +yes +2 live at 2, 3 down at 1$/,
  );
  assertMatch(lines[2] as string, /^127\.0\.0\.1:\d+ +2 +backup +0 +2 +\d +2 +1010 +yes +-$/);
  assertMatch(run.stderr, new RegExp(`^status: ${bank.address(3)}: UNAVAILABLE`));
});

Deno.test("a backup far behind is caught up in messages of bounded size", async () => {
  await using dir = await tempDir();
  // The primary's log as a long run would have left it: more entries than one 4 MB message could carry.
  const entries = 120_000;
  const log = Storage.open(`${dir.path}/branch-1`, { id: 1, balance: BALANCE });
  try {
    for (let from = 1; from <= entries; from += 1_000) {
      const batch = Array.from({ length: 1_000 }, (_, index) => from + index);
      log.write({
        entries: batch.map((position) => ({
          view: 0,
          position,
          update: { kind: "deposit", amount: 1 },
          key: `1234567/${position}`,
          commit: position - 1,
        })),
        balances: batch.map((position) => BALANCE + position),
        failures: [],
      });
    }
  } finally {
    log.close();
  }
  await using bank = new Bank(dir.path, THREE);
  await bank.startAll();
  const client = new BranchClient(bank.address(3));
  try {
    await client.waitUntilServing(30_000);
    const query = {
      id: 0,
      interface: "query",
      money: 0,
      amount: 0,
      customer_id: 0,
      request_id: 0,
      after: entries,
    };
    // While it catches up its link may break and be opened again (a batch's answer can come late): the
    // query is retried, as any client retries UNAVAILABLE.
    assertEquals((await retrying(() => client.deliver(query, 30_000))).balance, BALANCE + entries);
  } finally {
    client.close();
  }
});

Deno.test("with --propagation async the primary answers an update that no backup has; with sync it waits", async () => {
  for (const propagation of ["async", "sync"]) {
    await using dir = await tempDir();
    await using bank = new Bank(dir.path, { ...THREE, flags: ["--propagation", propagation] });
    await bank.startAll();
    const primary = new BranchClient(bank.address(1));
    const backups = [bank.branch(2), bank.branch(3)];
    try {
      await primary.waitUntilServing(DEADLINE_MS);
      for (const backup of backups) backup.signal("SIGSTOP");
      const deposit = { id: 0, interface: "deposit", money: 10, amount: 10, customer_id: 7, request_id: 1 };
      const answer = await primary.deliver(deposit, 500).catch((error: RpcError) => error);
      if (propagation === "async") {
        assertEquals("success" in answer ? [answer.success, answer.balance] : answer, [true, BALANCE + 10]);
      } else {
        assertEquals("code" in answer ? answer.code : answer, "DEADLINE_EXCEEDED", "no majority has it");
      }
    } finally {
      for (const backup of backups) backup.signal("SIGCONT");
      primary.close();
    }
  }
});
