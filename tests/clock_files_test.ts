import { assertEquals } from "./_assert.ts";
import { forwardedDeposit } from "./_clocks.ts";
import { renderClockFiles } from "../src/clock_files.ts";
import type { ProcessEvents } from "../src/lamport.ts";

const customer1 = { type: "customer", id: 1 } as const;
const branch1 = { type: "branch", id: 1 } as const;
const deposit = { interface: "deposit", about: { customer: 1, request: 7 } } as const;

Deno.test("renderClockFiles() writes the course's three files, with its spelling, sorted and grouped", () => {
  const files = renderClockFiles(forwardedDeposit(), () => 3);
  assertEquals(JSON.parse(files["customer_events.json"]), [
    {
      id: 1,
      type: "customer",
      events: [
        {
          "customer-request-id": 3,
          logical_clock: 1,
          interface: "deposit",
          comment: "event_sent from customer 1",
        },
      ],
    },
  ]);
  const branches = JSON.parse(files["branch_events.json"]);
  assertEquals(branches.map((branch: { id: number }) => branch.id), [1, 2]);
  assertEquals(branches[1].events, [
    {
      "customer-request-id": 3,
      logical_clock: 2,
      interface: "deposit",
      comment: "event_recv from customer 1",
    },
    {
      "customer-request-id": 3,
      logical_clock: 3,
      interface: "propogate_deposit",
      comment: "event_sent to branch 1",
    },
    {
      "customer-request-id": 3,
      logical_clock: 6,
      interface: "propogate_deposit",
      comment: "event_recv from branch 1",
    },
  ]);
  // Acks, answers and replies tick the clocks but are not events of the exercise.
  assertEquals(branches[0].events.map((event: { logical_clock: number }) => event.logical_clock), [4, 5]);
  const all = JSON.parse(files["all_events.json"]);
  assertEquals(all.map((event: { logical_clock: number }) => event.logical_clock), [1, 2, 3, 4, 5, 6]);
  assertEquals(all[0], {
    id: 1,
    "customer-request-id": 3,
    type: "customer",
    logical_clock: 1,
    interface: "deposit",
    comment: "event_sent from customer 1",
  });
  // One element per line, as output.txt.
  assertEquals(files["all_events.json"].split("\n").length, all.length + 3);
});

Deno.test("renderClockFiles() sorts each branch's events by clock, and groups all_events by request", () => {
  const second = { interface: "query", about: { customer: 1, request: 8 } } as const;
  const processes: ProcessEvents[] = [
    {
      process: branch1,
      events: [
        { clock: 9, kind: "recv", peer: customer1, message: "request", ...second, sent: 8 },
        { clock: 4, kind: "recv", peer: customer1, message: "request", ...deposit, sent: 1 },
      ],
    },
    {
      process: customer1,
      events: [
        { clock: 1, kind: "send", peer: branch1, message: "request", ...deposit },
        { clock: 8, kind: "send", peer: branch1, message: "request", ...second },
      ],
    },
  ];
  const files = renderClockFiles(processes, ({ request }) => request === 7 ? 1 : null);
  const [branch] = JSON.parse(files["branch_events.json"]);
  assertEquals(branch.events.map((event: { logical_clock: number }) => event.logical_clock), [4, 9]);
  const all = JSON.parse(files["all_events.json"]);
  assertEquals(
    all.map((event: { "customer-request-id": number | null; logical_clock: number }) => [
      event["customer-request-id"],
      event.logical_clock,
    ]),
    [[null, 8], [null, 9], [1, 1], [1, 4]],
  );
});
