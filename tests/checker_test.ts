import { assertEquals, assertMatch, assertOk } from "./_assert.ts";
import { runEntry, tempDir } from "./_processes.ts";
import { checkHistory } from "../src/checker.ts";
import {
  type History,
  type HistoryFinal,
  type HistoryRequest,
  parseHistory,
  renderHistory,
} from "../src/history.ts";
import { InputError } from "../src/input.ts";

/** One request, sequential in time: the i-th is sent at 10i ms and answered 5 ms later. */
function request(
  i: number,
  fields: Pick<HistoryRequest, "branch" | "interface" | "amount" | "success" | "balance" | "position">,
): HistoryRequest {
  return {
    type: "request",
    customer: 1,
    entry: 0,
    event: i,
    eventId: null,
    invoke: 10 * i,
    complete: 10 * i + 5,
    ...fields,
  };
}

/**
 * Written by hand: two branches start at 100; deposit 50 at branch 2 (position 1), a query at branch 1, a
 * withdrawal of 500 that fails, a withdrawal of 30 at branch 2 (position 2), a query at branch 2.
 */
function goodHistory(): History {
  return {
    branches: [{ id: 1, balance: 100 }, { id: 2, balance: 100 }],
    requests: [
      request(0, { branch: 2, interface: "deposit", amount: 50, success: true, balance: 150, position: 1 }),
      request(1, { branch: 1, interface: "query", amount: 0, success: true, balance: 150, position: 1 }),
      request(2, {
        branch: 1,
        interface: "withdraw",
        amount: 500,
        success: false,
        balance: 150,
        position: 1,
      }),
      request(3, { branch: 2, interface: "withdraw", amount: 30, success: true, balance: 120, position: 2 }),
      request(4, { branch: 2, interface: "query", amount: 0, success: true, balance: 120, position: 2 }),
    ],
    finals: [
      { type: "final", branch: 1, balance: 120, position: 2 },
      { type: "final", branch: 2, balance: 120, position: 2 },
    ],
  };
}

/** The good history with request `index` changed by `change`. */
function withRequest(index: number, change: Partial<HistoryRequest>): History {
  const history = goodHistory();
  const requests = history.requests.map((request, i) => i === index ? { ...request, ...change } : request);
  return { ...history, requests };
}

function violation(history: History): string {
  const result = checkHistory(history);
  assertOk(!result.ok, "the checker accepted a bad history");
  return result.violation;
}

Deno.test("checkHistory() accepts a history that holds, and counts it", () => {
  assertEquals(checkHistory(goodHistory()), { ok: true, summary: { requests: 5, updates: 2 } });
});

Deno.test("checkHistory() rejects two updates at one position", () => {
  assertMatch(violation(withRequest(3, { position: 1, balance: 120 })), /both applied at position 1$/);
});

Deno.test("checkHistory() rejects a gap in the positions", () => {
  assertMatch(
    violation(withRequest(3, { position: 3 })),
    /^positions are not dense: customer 1 event #3 \(withdraw 30 at branch 2\) was applied at position 3/,
  );
});

Deno.test("checkHistory() takes the positions the final states name as no-ops, and nothing else, as holding none", () => {
  // A failover after the deposit: the new primary's first entry is at position 2, the withdrawal at 3.
  const history = goodHistory();
  const moved = (request: HistoryRequest) => request.position === 2 ? { ...request, position: 3 } : request;
  const failedOver: History = {
    ...history,
    requests: history.requests.map(moved),
    finals: history.finals.map((final) => ({ ...final, position: 3, noops: [2] })),
  };
  assertEquals(checkHistory(failedOver), { ok: true, summary: { requests: 5, updates: 2 } });
  assertEquals(parseHistory(renderHistory(failedOver), "history"), failedOver);
  // Without the no-op named, position 2 is a gap.
  assertMatch(
    violation({ ...failedOver, finals: history.finals.map((final) => ({ ...final, position: 3 })) }),
    /^positions are not dense/,
  );
  // An update at a no-op's position, finals that disagree on them, and a no-op past the log are violations.
  assertMatch(
    violation({
      ...failedOver,
      finals: history.finals.map((final) => ({ ...final, position: 3, noops: [3] })),
    }),
    /was applied at position 3, which holds a no-op$/,
  );
  const [one, two] = failedOver.finals as [HistoryFinal, HistoryFinal];
  assertMatch(
    violation({ ...failedOver, finals: [one, { ...two, noops: [1] }] }),
    /^branches 1 and 2 name different no-op positions$/,
  );
  assertMatch(
    violation({ ...failedOver, finals: failedOver.finals.map((final) => ({ ...final, noops: [2, 9] })) }),
    /^positions are not dense: no-op position 9/,
  );
});

Deno.test("checkHistory() rejects a read that misses an update completed before it was sent", () => {
  // The last query is sent after the withdrawal completed, yet reflects only the deposit.
  assertEquals(
    violation(withRequest(4, { position: 1, balance: 150 })),
    "customer 1 event #3 (withdraw 30 at branch 2) completed before customer 1 event #4 (query at branch 2) " +
      "was sent, but reflects position 2 and the later request 1",
  );
});

Deno.test("checkHistory() rejects an update ordered before one that completed before it was sent", () => {
  const history = goodHistory();
  // The two updates swap positions (and their balances follow), against their real-time order.
  const requests = history.requests.map((request, i) =>
    i === 0
      ? { ...request, position: 2, balance: 120 }
      : i === 3
      ? { ...request, position: 1, balance: 70 }
      : request
  );
  assertMatch(violation({ ...history, requests }), /completed before .* was sent, but reflects position 2/);
});

Deno.test("checkHistory() rejects a reply that replaying the log does not give", () => {
  assertEquals(
    violation(withRequest(1, { balance: 999 })),
    "customer 1 event #1 (query at branch 1) answered balance 999; replaying to position 1 gives 150",
  );
});

Deno.test("checkHistory() rejects a replay that goes below zero", () => {
  assertMatch(
    violation(withRequest(3, { amount: 200, balance: 0 })),
    /^replaying position 2 \(customer 1 event #3 \(withdraw 200 at branch 2\)\) takes branch 1 to -50$/,
  );
});

Deno.test("checkHistory() rejects a withdrawal that failed although the balance allowed it", () => {
  assertEquals(
    violation(withRequest(2, { amount: 100 })),
    "customer 1 event #2 (withdraw 100 at branch 1) failed, but the balance 150 allowed it",
  );
});

Deno.test("checkHistory() rejects a query recorded as failed: a query answered at all succeeds", () => {
  assertEquals(
    violation(withRequest(1, { success: false })),
    "customer 1 event #1 (query at branch 1) is recorded as failed, but a query answered at all succeeds",
  );
});

Deno.test("checkHistory() rejects an event recorded twice", () => {
  const history = goodHistory();
  const twice = { ...history, requests: [...history.requests, history.requests[0] as HistoryRequest] };
  assertEquals(violation(twice), "customer 1 event #0 (deposit 50 at branch 2) appears twice");
});

Deno.test("checkHistory() rejects a branch that did not end at the replayed balance and position", () => {
  const history = goodHistory();
  const finals = (change: object) =>
    violation({ ...history, finals: [history.finals[0]!, { ...history.finals[1]!, ...change }] });
  assertEquals(finals({ balance: 130 }), "branch 2 ended with balance 130; replaying the log gives 120");
  assertEquals(finals({ position: 1 }), "branch 2 ended at position 1, but the log has 2 updates");
  assertEquals(violation({ ...history, finals: [history.finals[0]!] }), "branch 2 has no final state");
});

Deno.test("checkHistory() rejects a second final state for a branch, or one for a branch not in the run", () => {
  const history = goodHistory();
  const stale = { ...history.finals[1]!, balance: 100, position: 0 };
  assertEquals(
    violation({ ...history, finals: [...history.finals, stale] }),
    "branch 2 has two final states",
  );
  const stranger = { type: "final", branch: 7, balance: 5, position: 9 } as const;
  assertEquals(
    violation({ ...history, finals: [...history.finals, stranger] }),
    "a final state names branch 7, which is not in the run",
  );
});

Deno.test("checkHistory() rejects branches that start with different balances: no outcome fits them all", () => {
  const history = goodHistory();
  assertEquals(
    violation({ ...history, branches: [{ id: 1, balance: 100 }, { id: 2, balance: 10 }] }),
    "branch 2 starts with balance 10 and branch 1 with 100: the replicas of one account start alike",
  );
});

Deno.test("parseHistory() reads back what renderHistory() writes, and names the line of a bad one", () => {
  const text = renderHistory(goodHistory());
  assertEquals(parseHistory(text, "h.jsonl"), goodHistory());
  const lines = text.split("\n");
  lines[2] = lines[2]!.replace('"balance":150', '"balance":"150"');
  try {
    parseHistory(lines.join("\n"), "h.jsonl");
    assertOk(false, "parsed a bad history");
  } catch (error) {
    assertOk(error instanceof InputError);
    assertEquals(error.message, 'h.jsonl: line 3: balance must be a whole number, got "150"');
  }
  try {
    parseHistory('{"type": "start", "branches": [null]}\n', "h.jsonl");
    assertOk(false, "parsed a start line with a null branch");
  } catch (error) {
    assertOk(error instanceof InputError, String(error));
    assertEquals(
      error.message,
      "h.jsonl: line 1: each branch must be an object with an id and a balance, got null",
    );
  }
});

Deno.test("main.ts check exits 0 on a history that holds, 1 naming a violation, 2 on a malformed file", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/good.jsonl`, renderHistory(goodHistory()));
  await Deno.writeTextFile(`${dir.path}/bad.jsonl`, renderHistory(withRequest(1, { balance: 999 })));
  await Deno.writeTextFile(`${dir.path}/broken.jsonl`, "{\n");
  const good = await runEntry("main.ts", ["check", "good.jsonl"], dir.path);
  assertEquals([good.code, good.stdout.trim()], [0, "check: good.jsonl holds: 5 requests, 2 updates"]);
  const bad = await runEntry("main.ts", ["check", "bad.jsonl"], dir.path);
  assertEquals([bad.code, bad.stderr.trim()], [
    1,
    "check: bad.jsonl: customer 1 event #1 (query at branch 1) answered balance 999; replaying to position 1 " +
    "gives 150",
  ]);
  const broken = await runEntry("main.ts", ["check", `${dir.path}/broken.jsonl`]);
  assertEquals(broken.code, 2);
  assertMatch(broken.stderr, /broken\.jsonl: line 1: not JSON/);
  assertOk(!broken.stderr.includes("    at "), "no stack trace");
});
