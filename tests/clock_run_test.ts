/**
 * Lamport clocks on real runs: real branch processes over gRPC, every recorded event checked for the
 * happens-before property, and main.ts --clock-output's three files checked against each other.
 */

import { assertEquals, assertMatch, assertOk } from "./_assert.ts";
import { Bank } from "./_bank.ts";
import { makeInput, runEntry, tempDir } from "./_processes.ts";
import { connectAll, finalStates, runCustomers, waitUntilServing } from "../src/customer_run.ts";
import type { CustomerEntry } from "../src/input.ts";
import { clockViolations, type LamportClock, type ProcessEvents } from "../src/lamport.ts";
import { decodeClockEvent } from "../src/wire_codec.ts";

const BRANCHES = 10;
const CUSTOMERS = 10;

/** Customer `id`: a deposit at its own branch, a withdrawal at the next one, a query at the one after. */
function customerEntry(id: number): CustomerEntry {
  const at = (offset: number) => ((id - 1 + offset) % BRANCHES) + 1;
  return {
    id,
    events: [
      { id: id * 10 + 1, interface: "deposit", amount: 10, branch: at(0) },
      { id: id * 10 + 2, interface: "withdraw", amount: 5, branch: at(1) },
      { id: id * 10 + 3, interface: "query", amount: 0, branch: at(2) },
    ],
  };
}

Deno.test("every message of a run with 10 branches and 10 customers at once is received at a clock above its send", async () => {
  await using dir = await tempDir();
  await using bank = new Bank(dir.path, {
    size: BRANCHES,
    balance: 100,
    deadlineMs: 5_000,
    flags: ["--record-clocks"],
  });
  await bank.startAll();
  const clients = connectAll(bank.addresses());
  try {
    await waitUntilServing(clients, 30_000);
    const clocks = new Map<number, LamportClock>();
    const session = { seen: 0 };
    const entries = Array.from({ length: CUSTOMERS }, (_, index) => customerEntry(index + 1));
    await runCustomers(entries, clients, { deadlineMs: 5_000, concurrent: true, clocks, session });
    await finalStates(clients, session, 5_000);
    const processes: ProcessEvents[] = [...clocks].map(([id, clock]) => ({
      process: { type: "customer", id },
      events: clock.events(),
    }));
    for (const [id, client] of clients) {
      const events = (await client.events(5_000)).map((wire) => {
        const event = decodeClockEvent(wire);
        assertOk(event.ok, `branch ${id}: ${!event.ok && event.refusal.message}`);
        return event.value;
      });
      processes.push({ process: { type: "branch", id }, events });
    }
    assertEquals(clockViolations(processes), []);
    // Every request reached its branch, and every update each backup (as an entry from the primary).
    // Counted once each: a retry, or entries sent again after a link broke, would be events of their own.
    const received = (message: string) =>
      new Set(
        processes.flatMap(({ process, events }) =>
          events.filter((event) => event.kind === "recv" && event.message === message).map((event) =>
            `${process.id}:${event.about.customer}/${event.about.request}`
          )
        ),
      ).size;
    assertEquals(received("request"), 30);
    assertEquals(received("entry"), 20 * 9);
    // Branches read at the primary's commit position: each of the 9 queries at a backup asked a read index.
    assertEquals(received("read"), 9);
    // The check reads the real clocks: one receive moved back to its message's clock is caught.
    const backup = processes.find(({ process }) =>
      process.type === "branch" && process.id === 2
    ) as ProcessEvents;
    const index = backup.events.findIndex((event) => event.kind === "recv");
    const tampered = backup.events.map((event, at) =>
      at === index ? { ...event, clock: event.sent ?? 0 } : event
    );
    const problems = clockViolations(processes.map((p) => p === backup ? { ...p, events: tampered } : p));
    assertOk(problems.length > 0, "a receive at its send's clock went unnoticed");
  } finally {
    for (const client of clients.values()) client.close();
  }
});

interface CourseEvent {
  readonly "customer-request-id": number;
  readonly logical_clock: number;
  readonly interface: string;
  readonly comment: string;
}

interface CourseProcess {
  readonly id: number;
  readonly type: string;
  readonly events: readonly CourseEvent[];
}

Deno.test("main.ts --clock-output writes the course's files for its input shape, each receive above its send", async () => {
  await using dir = await tempDir();
  // The exercise's shape: "customer-requests" and "customer-request-id".
  const customers = Array.from({ length: CUSTOMERS }, (_, index) => {
    const { id, events } = customerEntry(index + 1);
    return {
      id,
      type: "customer",
      "customer-requests": events.map((event) => ({
        "customer-request-id": event.id,
        interface: event.interface,
        ...(event.interface === "query" ? {} : { money: event.amount }),
        branch: event.branch,
      })),
    };
  });
  await Deno.writeTextFile(`${dir.path}/in.json`, makeInput(BRANCHES, 100, customers));
  const run = await runEntry("main.ts", ["in.json", "--clock-output", "clocks"], dir.path);
  assertEquals(run.code, 0, run.stderr);
  const read = async (name: string) => JSON.parse(await Deno.readTextFile(`${dir.path}/clocks/${name}`));
  const customerFile: CourseProcess[] = await read("customer_events.json");
  const branchFile: CourseProcess[] = await read("branch_events.json");
  const all: (CourseEvent & { id: number; type: string })[] = await read("all_events.json");

  assertEquals(customerFile.map(({ id }) => id), customers.map(({ id }) => id));
  assertEquals(branchFile.map(({ id }) => id), Array.from({ length: BRANCHES }, (_, index) => index + 1));
  for (const { id, events } of [...customerFile, ...branchFile]) {
    const clocks = events.map((event) => event.logical_clock);
    assertOk(clocks.every((clock, at) => at === 0 || clock > (clocks[at - 1] as number)), `${id}: ${clocks}`);
  }
  for (const { id, events } of customerFile) {
    assertEquals(events.map((event) => event.comment), events.map(() => `event_sent from customer ${id}`));
  }
  const sendOf = (type: string, id: number, request: number, comment: string) =>
    (type === "customer" ? customerFile : branchFile).find((process) => process.id === id)?.events.find((
      event,
    ) => event["customer-request-id"] === request && event.comment === comment);
  const propagations = new Set<string>();
  for (const branch of branchFile) {
    for (const event of branch.events) {
      const match = /^event_recv from (customer|branch) (\d+)$/.exec(event.comment);
      if (match === null) continue;
      const [, type, from] = match as unknown as [string, string, string];
      const comment = type === "customer"
        ? `event_sent from customer ${from}`
        : `event_sent to branch ${branch.id}`;
      const send = sendOf(type, Number(from), event["customer-request-id"], comment);
      assertOk(send !== undefined, `branch ${branch.id}: no send for ${JSON.stringify(event)}`);
      assertOk(
        event.logical_clock > send.logical_clock,
        `branch ${branch.id}: ${JSON.stringify([send, event])}`,
      );
      if (type === "branch") {
        assertMatch(event.interface, /^propogate_(deposit|withdraw)$/);
        propagations.add(`${branch.id} from ${from}: ${event["customer-request-id"]}`);
      }
    }
  }
  // Each of the 20 updates goes to the 9 backups; the 18 of them made at a backup go to the primary first.
  assertEquals(propagations.size, 20 * 9 + 18);
  // all_events: every event of both files, grouped by request, by clock within a group.
  assertEquals(
    all.length,
    [...customerFile, ...branchFile].reduce((sum, { events }) => sum + events.length, 0),
  );
  const groups: number[] = [];
  for (const [at, event] of all.entries()) {
    const previous = all[at - 1];
    if (previous?.["customer-request-id"] === event["customer-request-id"]) {
      assertOk(event.logical_clock >= previous.logical_clock, JSON.stringify([previous, event]));
    } else groups.push(event["customer-request-id"]);
  }
  assertEquals(groups.length, new Set(groups).size);
});

Deno.test("main.ts --clock-output naming a file is refused in one line, before any process starts", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(
    `${dir.path}/in.json`,
    makeInput(2, 100, [{ id: 1, type: "customer", events: [] }]),
  );
  await Deno.writeTextFile(`${dir.path}/clocks`, "not a directory");
  await Deno.writeTextFile(`${dir.path}/output.txt`, "earlier");
  const run = await runEntry("main.ts", ["in.json", "--clock-output", "clocks"], dir.path);
  assertEquals(run.code, 2);
  assertMatch(run.stderr, /^clocks: cannot write clock files: not a directory\n$/);
  assertEquals(await Deno.readTextFile(`${dir.path}/output.txt`), "earlier");
  assertEquals(await Deno.readTextFile(`${dir.path}/clocks`), "not a directory");
});
