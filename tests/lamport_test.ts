import { assertEquals, assertOk } from "./_assert.ts";
import { clockViolations, LamportClock, type ProcessEvents } from "../src/lamport.ts";
import { renderClockFiles } from "../src/clock_files.ts";

const customer1 = { type: "customer", id: 1 } as const;
const branch1 = { type: "branch", id: 1 } as const;
const branch2 = { type: "branch", id: 2 } as const;
const deposit = { interface: "deposit", about: { customer: 1, request: 7 } } as const;

Deno.test("LamportClock.send() ticks by one; receive() takes max(own, carried) + 1", () => {
  const clock = new LamportClock();
  assertEquals(clock.send(branch1, { message: "request", ...deposit }), 1);
  assertEquals(clock.send(branch1, { message: "request", ...deposit }), 2);
  assertEquals(clock.receive(branch1, 10, { message: "reply", ...deposit }), 11);
  assertEquals(clock.receive(branch1, 3, { message: "reply", ...deposit }), 12);
  assertEquals(clock.time, 12);
});

Deno.test("LamportClock.receive() takes a missing or malformed clock as none, like a local event", () => {
  const clock = new LamportClock();
  clock.send(branch1, { message: "request", ...deposit });
  for (const carried of [0, -5, 1.5, Number.NaN, 2 ** 60]) {
    const before = clock.time;
    assertEquals(clock.receive(branch1, carried, { message: "reply", ...deposit }), before + 1, `${carried}`);
  }
});

Deno.test("LamportClock records only when asked, and only messages of a customer's request", () => {
  const silent = new LamportClock();
  silent.send(branch1, { message: "request", ...deposit });
  assertEquals(silent.events(), []);
  const recording = new LamportClock({ record: true });
  recording.send(branch2, { message: "read", interface: "query", about: undefined });
  recording.receive(branch2, 5, { message: "entry", ...deposit });
  assertEquals(recording.events(), [
    { clock: 6, kind: "recv", peer: branch2, message: "entry", ...deposit, sent: 5 },
  ]);
});

/** A deposit at backup 2, forwarded to primary 1 and sent back as an entry: every process's events. */
function forwardedDeposit(): ProcessEvents[] {
  const customer = new LamportClock({ record: true });
  const backup = new LamportClock({ record: true });
  const primary = new LamportClock({ record: true });
  const request = customer.send(branch2, { message: "request", ...deposit });
  backup.receive(customer1, request, { message: "request", ...deposit });
  const forward = backup.send(branch1, { message: "forward", ...deposit });
  primary.receive(branch2, forward, { message: "forward", ...deposit });
  const entry = primary.send(branch2, { message: "entry", ...deposit });
  backup.receive(branch1, entry, { message: "entry", ...deposit });
  const ack = backup.send(branch1, { message: "ack", ...deposit });
  primary.receive(branch2, ack, { message: "ack", ...deposit });
  const answer = primary.send(branch2, { message: "answer", ...deposit });
  backup.receive(branch1, answer, { message: "answer", ...deposit });
  const reply = backup.send(customer1, { message: "reply", ...deposit });
  customer.receive(branch2, reply, { message: "reply", ...deposit });
  return [
    { process: customer1, events: customer.events() },
    { process: branch1, events: primary.events() },
    { process: branch2, events: backup.events() },
  ];
}

Deno.test("clockViolations() accepts the events of clocks that follow the rules", () => {
  assertEquals(clockViolations(forwardedDeposit()), []);
});

Deno.test("clockViolations() finds a receive not above its send, a clock that does not grow, a send never made", () => {
  const [customer, primary, backup] = forwardedDeposit() as [ProcessEvents, ProcessEvents, ProcessEvents];
  // The backup's receive of the customer's request, given the request's own clock.
  const early = backup.events.map((event, index) =>
    index === 0 ? { ...event, clock: event.sent ?? 0 } : event
  );
  const problems = clockViolations([customer, primary, { ...backup, events: early }]);
  assertOk(
    problems.some((problem) => problem.includes("not above its message's clock")),
    problems.join("\n"),
  );
  const swapped = [primary.events[1], primary.events[0], ...primary.events.slice(2)];
  const unordered = clockViolations([
    customer,
    { ...primary, events: swapped as typeof primary.events },
    backup,
  ]);
  assertOk(
    unordered.some((problem) => problem.includes("not above the event before it")),
    unordered.join("\n"),
  );
  const noSend = clockViolations([{ ...customer, events: customer.events.slice(1) }, primary, backup]);
  assertOk(noSend.some((problem) => problem.includes("no request sent by customer 1")), noSend.join("\n"));
});

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
