/**
 * Failover on real processes: three branches started by hand with `--failover`, concurrent customers, and
 * the primary killed with SIGKILL and kept down while the other two elect a new one and go on taking
 * updates; then it comes back, rejoins as a backup and catches up. The whole history, and every branch's
 * final state, go through the checker.
 *
 * @module
 */

import { assertEquals, assertMatch, assertOk } from "./_assert.ts";
import { Bank, statusUntil, workload } from "./_bank.ts";
import { makeInput, ROOT, runEntry, tempDir } from "./_processes.ts";
import { checkHistory } from "../src/checker.ts";
import { connectAll, finalStates, runCustomers, type TimedResult } from "../src/customer_run.ts";
import { type HistoryFinal, historyOf } from "../src/history.ts";
import type { CustomerEntry, Scenario } from "../src/input.ts";
import { Random } from "../src/random.ts";
import type { BranchClient } from "../src/transport.ts";

const BALANCE = 1_000;
const DEADLINE_MS = 2_000;
/** The bank of these tests: three branches with failover. */
const THREE = { size: 3, balance: BALANCE, deadlineMs: DEADLINE_MS, flags: ["--failover"] };

/**
 * Customers acting at once, with enough attempts to outlast an election: a request whose branch has no
 * primary yet is refused with UNAVAILABLE and retried with the same request id.
 */
function acting(session: { seen: number }) {
  return { deadlineMs: DEADLINE_MS, concurrent: true, session, attempts: 12 };
}

/** Runs `test` against THREE, started, with a client of each branch; stops them all after. */
async function withThree(
  test: (bank: Bank, clients: ReadonlyMap<number, BranchClient>) => Promise<void>,
): Promise<void> {
  await using dir = await tempDir();
  await using bank = new Bank(dir.path, THREE);
  await bank.startAll();
  const clients = connectAll(bank.addresses());
  try {
    await test(bank, clients);
  } finally {
    for (const client of clients.values()) client.close();
  }
}

/**
 * Asserts that the history of the customers of `phases` (answered with `results`) and the final states read
 * from `clients` hold, and returns the final states.
 */
async function assertHolds(
  bank: Bank,
  clients: ReadonlyMap<number, BranchClient>,
  run: { phases: readonly CustomerEntry[][]; results: readonly TimedResult[]; session: { seen: number } },
): Promise<HistoryFinal[]> {
  const finals = await finalStates(clients, run.session, DEADLINE_MS);
  const scenario: Scenario = {
    branches: bank.ids.map((id) => ({ id, balance: BALANCE })),
    customers: run.phases.flat(),
  };
  const checked = checkHistory(historyOf(scenario, run.results, finals));
  assertOk(checked.ok, `${!checked.ok && checked.violation}`);
  assertEquals(new Set(finals.map(({ position }) => position)).size, 1, JSON.stringify(finals));
  return finals;
}

Deno.test("with --failover, a killed primary is replaced by election, and rejoins as a backup; nothing acknowledged is lost", async () => {
  const random = new Random(Number(Deno.env.get("BANK_SEED") ?? 1));
  await withThree(async (bank, clients) => {
    const session = { seen: 0 };
    const options = acting(session);
    const phases = [
      workload(random, 4, [1, 2, 3], 1),
      // Some of these go to branch 1 while it is down: its customers move on to the next branch.
      workload(random, 4, [1, 2, 3], 11),
      workload(random, 4, [1, 2, 3], 21),
    ] as [CustomerEntry[], CustomerEntry[], CustomerEntry[]];
    const results: TimedResult[] = [];
    results.push(...await runCustomers(phases[0], clients, options));
    assertEquals((await (clients.get(1) as BranchClient).status(DEADLINE_MS)).role, "primary");
    // Killed before the phase starts, so that no request of it reaches branch 1 (the durability test and the
    // fault harness kill with requests in flight).
    assertEquals((await bank.branch(1).kill()).signal, "SIGKILL");
    const whileDown = await runCustomers(phases[1], clients, { ...options, moveOn: true });
    results.push(...whileDown);
    const toBranch1 = phases[1].flatMap(({ events }, entry) =>
      events.flatMap((event, index) => event.branch === 1 ? [whileDown[entry]?.recv[index]?.branch] : [])
    );
    assertOk(
      toBranch1.length > 0 && toBranch1.every((branch) => branch === 2 || branch === 3),
      `${toBranch1}`,
    );
    // Branch 1 is still down: one of the others leads a later view.
    const statuses = await Promise.all(
      [2, 3].map((id) => (clients.get(id) as BranchClient).status(DEADLINE_MS)),
    );
    const leader = statuses.find((status) => status.role === "primary");
    assertOk(leader !== undefined && leader.view >= 1, JSON.stringify(statuses));
    // It comes back on its directory, learns of the later view, and is caught up.
    await bank.start(1);
    results.push(...await runCustomers(phases[2], clients, options));
    const back = await statusUntil(
      clients.get(1) as BranchClient,
      (status) => status.role === "backup" && status.view >= leader.view,
    );
    assertEquals([back.role, back.view >= leader.view], ["backup", true], JSON.stringify(back));
    const finals = await assertHolds(bank, clients, { phases, results, session });
    // The positions no reply names: the entry each new primary started its view with, at least.
    assertOk((finals[0]?.noops ?? []).length > 0, JSON.stringify(finals));
    const stopped = await Promise.all(bank.ids.map((id) => bank.branch(id).stop()));
    const logs = stopped.map(({ stderr }) => stderr).join("\n");
    assertMatch(logs, /branch [23]: became primary of view [1-9]/);
  });
});

Deno.test("with --failover, a backup whose data directory is deleted rejoins empty and is rebuilt from the primary", async () => {
  await withThree(async (bank, clients) => {
    const session = { seen: 0 };
    const options = acting(session);
    const random = new Random(7);
    const phases = [workload(random, 3, [1, 2], 1), workload(random, 3, [1, 2], 11)] as [
      CustomerEntry[],
      CustomerEntry[],
    ];
    const results = await runCustomers(phases[0], clients, options);
    const before = await statusUntil(clients.get(3) as BranchClient, (status) => status.position > 0);
    assertOk(before.position > 0, JSON.stringify(before));
    await bank.branch(3).kill();
    await Deno.remove(`${bank.root}/branch-3`, { recursive: true });
    results.push(...await runCustomers(phases[1], clients, options));
    await bank.start(3);
    const primary = await (clients.get(1) as BranchClient).status(DEADLINE_MS);
    const rebuilt = await statusUntil(
      clients.get(3) as BranchClient,
      (status) => status.position === primary.position,
    );
    assertEquals([rebuilt.role, rebuilt.position, rebuilt.balance], [
      "backup",
      primary.position,
      primary.balance,
    ]);
    await assertHolds(bank, clients, { phases, results, session });
    const primaryLog = (await bank.branch(1).stop()).stderr;
    assertMatch(primaryLog, /backup 3 linked at position 0; sending it \d+ entries/);
  });
});

Deno.test("main.ts --failover answers as without it, and a concurrent run's history holds", async () => {
  await using dir = await tempDir();
  const plain = await runEntry("main.ts", [`${ROOT}/Input.json`, "--output", `${dir.path}/plain.txt`]);
  assertEquals(plain.code, 0, plain.stderr);
  const failover = await runEntry("main.ts", [
    `${ROOT}/Input.json`,
    "--failover",
    "--output",
    `${dir.path}/failover.txt`,
  ]);
  assertEquals(failover.code, 0, failover.stderr);
  assertEquals(
    await Deno.readTextFile(`${dir.path}/failover.txt`),
    await Deno.readTextFile(`${dir.path}/plain.txt`),
  );
  // Eight customers at once on five branches, every branch told where every other listens.
  const customers = Array.from({ length: 8 }, (_, index) => ({
    id: index + 1,
    type: "customer",
    events: [
      { interface: "deposit", money: 10 + index, dest: index % 5 + 1 },
      { interface: "withdraw", money: 300, dest: (index + 2) % 5 + 1 },
      { interface: "query", dest: (index + 3) % 5 + 1 },
    ],
  }));
  await Deno.writeTextFile(`${dir.path}/eight.json`, makeInput(5, 100, customers));
  const flags = [
    "--failover",
    "--concurrent",
    "--output",
    `${dir.path}/eight.txt`,
    "--history",
    `${dir.path}/h.jsonl`,
  ];
  const run = await runEntry("main.ts", [`${dir.path}/eight.json`, ...flags]);
  assertEquals(run.code, 0, run.stderr);
  const check = await runEntry("main.ts", ["check", `${dir.path}/h.jsonl`]);
  assertEquals(check.code, 0, check.stdout + check.stderr);
});

Deno.test("with --failover, the lowest id restarted with its data directory deleted takes no update alone, and rejoins", async () => {
  // It cannot tell this from a bank's first start: it takes itself for view 0's primary, of a new log, which
  // the others refuse. It must take no update meanwhile (its log would meet the bank's), and take the bank's
  // log when the others' new primary links to it.
  await withThree(async (bank, clients) => {
    const session = { seen: 0 };
    const random = new Random(11);
    const phases = [workload(random, 3, [1, 2, 3], 1), workload(random, 3, [1, 2, 3], 11)] as [
      CustomerEntry[],
      CustomerEntry[],
    ];
    const results = await runCustomers(phases[0], clients, acting(session));
    await bank.branch(1).kill();
    await Deno.remove(`${bank.root}/branch-1`, { recursive: true });
    await bank.start(1);
    const deposit = { id: 0, interface: "deposit", money: 5, amount: 5, customer_id: 99, request_id: 1 };
    const alone = await (clients.get(1) as BranchClient).deliver(deposit, DEADLINE_MS).catch((e) => e);
    assertMatch(String(alone), /UNAVAILABLE/);
    results.push(...await runCustomers(phases[1], clients, { ...acting(session), moveOn: true }));
    const leader = await statusUntil(clients.get(2) as BranchClient, (status) => status.view >= 1);
    const leading = leader.role === "primary"
      ? leader
      : await (clients.get(3) as BranchClient).status(DEADLINE_MS);
    const rejoined = await statusUntil(
      clients.get(1) as BranchClient,
      (status) => status.role === "backup" && status.position === leading.position,
    );
    assertEquals(
      [rejoined.role, rejoined.balance],
      ["backup", leading.balance],
      JSON.stringify([rejoined, leading]),
    );
    await assertHolds(bank, clients, { phases, results, session });
  });
});
