import { assertEquals, assertOk } from "./_assert.ts";
import { forwardedDeposit } from "./_clocks.ts";
import { CARRIED_CLOCK_MAX, clockViolations, LamportClock, type ProcessEvents } from "../src/lamport.ts";

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
  for (const carried of [0, -5, 1.5, Number.NaN, CARRIED_CLOCK_MAX + 1, Number.MAX_SAFE_INTEGER, 2 ** 60]) {
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

Deno.test("LamportClock keeps at most recordMax events, and says its record is not whole after that", () => {
  const clock = new LamportClock({ record: true, recordMax: 2 });
  for (let sent = 0; sent < 2; sent++) clock.send(branch1, { message: "request", ...deposit });
  assertEquals([clock.events().length, clock.overflowed], [2, false]);
  assertEquals(clock.send(branch1, { message: "request", ...deposit }), 3);
  assertEquals([clock.events().length, clock.overflowed], [2, true]);
});

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
