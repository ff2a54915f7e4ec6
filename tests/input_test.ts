import { assertEquals, assertThrows } from "./_assert.ts";
import { InputError, parseScenario, scenarioToJson, validateScenario } from "../src/input.ts";

const EXAMPLE = await Deno.readTextFile(new URL("../Input.json", import.meta.url));

/** The one-line message parseScenario throws for `text`. */
function problem(text: string): string {
  const error = assertThrows(() => parseScenario(text, "in.json"), InputError);
  assertEquals(error.message.includes("\n"), false, "an input error is one line");
  return error.message;
}

const branch = (id: unknown, balance: unknown = 400) => ({ type: "branch", id, balance });
const customer = (id: unknown, events: unknown) => ({ type: "customer", id, events });
const input = (...entries: unknown[]) => JSON.stringify(entries);

Deno.test("parseScenario() reads the shipped example", () => {
  const scenario = parseScenario(EXAMPLE, "Input.json");
  assertEquals(scenario.branches, [{ id: 1, balance: 400 }, { id: 2, balance: 400 }, {
    id: 3,
    balance: 400,
  }]);
  assertEquals(scenario.customers.map((entry) => entry.id), [1, 2, 3]);
  assertEquals(scenario.customers[1]?.events, [
    { id: 2, interface: "deposit", amount: 170, branch: 2 },
    { id: 3, interface: "query", amount: 0, branch: 2 },
  ]);
});

Deno.test("parseScenario() routes by dest or branch, else to the customer's own id", () => {
  const scenario = parseScenario(
    input(
      branch(1),
      branch(2),
      customer(1, [{ interface: "query" }, { interface: "query", dest: 2 }, {
        interface: "query",
        branch: 2,
      }]),
    ),
    "in.json",
  );
  assertEquals(scenario.customers[0]?.events.map((event) => event.branch), [1, 2, 2]);
});

Deno.test("parseScenario() ignores money on a query, whatever it holds, and allows a missing event id", () => {
  const scenario = parseScenario(
    input(branch(1), customer(1, [{ interface: "query", money: "junk" }])),
    "in.json",
  );
  assertEquals(scenario.customers[0]?.events, [{ id: undefined, interface: "query", amount: 0, branch: 1 }]);
});

Deno.test("parseScenario() keeps a repeated customer id as separate entries, in input order", () => {
  const scenario = parseScenario(
    input(
      customer(1, [{ interface: "deposit", money: 1 }]),
      branch(1),
      customer(1, [{ interface: "query" }]),
    ),
    "in.json",
  );
  assertEquals(scenario.customers.map((entry) => entry.events[0]?.interface), ["deposit", "query"]);
});

Deno.test("parseScenario() accepts amounts up to Number.MAX_SAFE_INTEGER", () => {
  const max = Number.MAX_SAFE_INTEGER;
  const scenario = parseScenario(
    input(branch(1, max), customer(1, [{ interface: "withdraw", money: max }])),
    "in.json",
  );
  assertEquals(scenario.customers[0]?.events[0]?.amount, max);
});

Deno.test("parseScenario() rejects an empty file", () => {
  assertEquals(problem("  \n"), "in.json: empty file, expected a JSON array of branches and customers");
});

Deno.test("parseScenario() locates invalid JSON by line and column", () => {
  assertEquals(
    problem('[\n {"id": 1,\n }\n]'),
    "in.json: line 3 column 2: invalid JSON: Expected double-quoted property name",
  );
  assertEquals(problem("[1,"), "in.json: line 1 column 4: invalid JSON: Unexpected end of JSON input");
});

Deno.test("parseScenario() rejects a top level that is not an array", () => {
  assertEquals(
    problem('{"id": 1}'),
    "in.json: expected a JSON array of branches and customers, got an object",
  );
});

Deno.test("parseScenario() rejects a missing or unknown type", () => {
  assertEquals(problem(input({ id: 1 })), 'in.json: [0].type: missing, expected "branch" or "customer"');
  assertEquals(
    problem(input(branch(1), { type: "bank", id: 2 })),
    'in.json: [1].type: expected "branch" or "customer", got "bank"',
  );
  assertEquals(problem(input(7)), "in.json: [0]: expected an object, got 7");
});

Deno.test("parseScenario() rejects missing, non-integer and duplicate ids", () => {
  assertEquals(
    problem(input({ type: "branch", balance: 1 })),
    "in.json: [0].id: missing, expected a non-negative safe integer",
  );
  assertEquals(problem(input(branch(1.5))), "in.json: [0].id: expected a non-negative safe integer, got 1.5");
  assertEquals(
    problem(input(branch(1), customer("2", []))),
    'in.json: [1].id: expected a non-negative safe integer, got "2"',
  );
  assertEquals(problem(input(branch(1), branch(1))), "in.json: [1].id: duplicate branch id 1");
  assertEquals(
    problem(input(branch(1), customer(1, [{ id: -1, interface: "query" }]))),
    "in.json: [1].events[0].id: expected a non-negative safe integer, got -1",
  );
});

Deno.test("parseScenario() rejects an unknown or missing interface", () => {
  assertEquals(
    problem(input(branch(1), customer(1, [{ interface: "steal", money: 1 }]))),
    'in.json: [1].events[0].interface: expected one of query, deposit, withdraw, got "steal"',
  );
  assertEquals(
    problem(input(branch(1), customer(1, [{ money: 1 }]))),
    "in.json: [1].events[0].interface: missing, expected one of query, deposit, withdraw",
  );
});

Deno.test("parseScenario() rejects money that is negative, fractional, a string, missing or beyond the safe range", () => {
  const money = (value: unknown) =>
    problem(input(branch(1), customer(1, [{ interface: "deposit", money: value }])));
  const at = "in.json: [1].events[0].money: expected a non-negative safe integer, got";
  assertEquals(money(-5), `${at} -5`);
  assertEquals(money(0.5), `${at} 0.5`);
  assertEquals(money("10"), `${at} "10"`);
  assertEquals(money(2 ** 53), `${at} 9007199254740992`);
  assertEquals(money(null), `${at} null`);
  // Written by hand: JSON.stringify cannot write a number that JSON.parse reads as Infinity.
  assertEquals(
    problem(
      '[{"type": "branch", "id": 1, "balance": 400}, {"type": "customer", "id": 1, ' +
        '"events": [{"interface": "deposit", "money": -1e400}]}]',
    ),
    `${at} -1e400`,
  );
  assertEquals(
    problem(input(branch(1), customer(1, [{ interface: "withdraw" }]))),
    "in.json: [1].events[0].money: missing, expected a non-negative safe integer",
  );
});

Deno.test("parseScenario() rejects a balance that is negative, fractional, a string or beyond the safe range", () => {
  const at = "in.json: [0].balance: expected a non-negative safe integer, got";
  assertEquals(problem(input(branch(1, -1))), `${at} -1`);
  assertEquals(problem(input(branch(1, 1.25))), `${at} 1.25`);
  assertEquals(problem(input(branch(1, "400"))), `${at} "400"`);
  assertEquals(problem(input(branch(1, 1e300))), `${at} 1e+300`);
});

Deno.test("parseScenario() rejects a number JSON would round to a whole one, quoting it as written", () => {
  const entries = (balance: string, money: string) =>
    `[{"type": "branch", "id": 1, "balance": ${balance}}, ` +
    `{"type": "customer", "id": 1, "events": [{"interface": "deposit", "money": ${money}}]}]`;
  assertEquals(
    problem(entries("400", "1.0000000000000001")),
    "in.json: [1].events[0].money: expected a non-negative safe integer, got 1.0000000000000001",
  );
  assertEquals(
    problem(entries("9007199254740993", "1")),
    "in.json: [0].balance: expected a non-negative safe integer, got 9007199254740993",
  );
  assertEquals(
    problem(entries("400", "0.99999999999999999")),
    "in.json: [1].events[0].money: expected a non-negative safe integer, got 0.99999999999999999",
  );
  assertEquals(problem("[1.0000000000000001]"), "in.json: [0]: expected an object, got 1.0000000000000001");
});

Deno.test("parseScenario() reads a whole number written with a point or an exponent as that number", () => {
  for (
    const [balance, money] of [["400.0", "1e1"], ["4e2", "10.000"], ["4000e-1", "0.1e2"], ["400", "1E+1"]]
  ) {
    const text = `[{"type": "branch", "id": 1, "balance": ${balance}}, ` +
      `{"type": "customer", "id": 1, "events": [{"interface": "deposit", "money": ${money}}]}]`;
    const scenario = parseScenario(text, "in.json");
    assertEquals([scenario.branches[0]?.balance, scenario.customers[0]?.events[0]?.amount], [400, 10], text);
  }
});

Deno.test("parseScenario() rejects branches that start with different balances: one account, replicated", () => {
  assertEquals(
    problem(input(branch(1, 400), branch(2, 400), branch(3, 300))),
    "in.json: [2].balance: expected 400, the balance branch 1 starts with (every branch holds a replica of " +
      "one account), got 300",
  );
});

Deno.test("parseScenario() rejects -0 as a negative number, naming it as written", () => {
  // Written by hand: JSON.stringify writes -0 as 0.
  assertEquals(
    problem('[{"type": "branch", "id": 1, "balance": -0}]'),
    "in.json: [0].balance: expected a non-negative safe integer, got -0",
  );
});

Deno.test("parseScenario() rejects events that are not an array, or not objects", () => {
  assertEquals(
    problem(input(branch(1), customer(1, "deposit"))),
    'in.json: [1].events: expected an array of events, got "deposit"',
  );
  assertEquals(
    problem(input(branch(1), { type: "customer", id: 1 })),
    'in.json: [1].events: missing, expected an array of events (or "customer-requests")',
  );
  assertEquals(
    problem(input(branch(1), customer(1, [[]]))),
    "in.json: [1].events[0]: expected an object, got an array",
  );
});

Deno.test('parseScenario() reads the logical-clock exercise\'s "customer-requests" and "customer-request-id"', () => {
  const scenario = parseScenario(
    input(branch(1), branch(2), {
      type: "customer",
      id: 1,
      "customer-requests": [
        { "customer-request-id": 1, interface: "deposit", money: 10 },
        { "customer-request-id": 2, interface: "withdraw", money: 10 },
      ],
    }),
    "in.json",
  );
  assertEquals(scenario.customers[0]?.events, [
    { id: 1, interface: "deposit", amount: 10, branch: 1 },
    { id: 2, interface: "withdraw", amount: 10, branch: 1 },
  ]);
  const requests = (events: unknown) => ({ type: "customer", id: 1, "customer-requests": events });
  assertEquals(
    problem(input(branch(1), requests([{ "customer-request-id": -1, interface: "query" }]))),
    'in.json: [1]["customer-requests"][0]["customer-request-id"]: expected a non-negative safe integer, got -1',
  );
  assertEquals(
    problem(input(branch(1), requests([{ "customer-request-id": 1, id: 1, interface: "query" }]))),
    'in.json: [1]["customer-requests"][0]: both "id" and "customer-request-id": expected one event id',
  );
  assertEquals(
    problem(input(branch(1), { ...customer(1, []), "customer-requests": [] })),
    'in.json: [1]: both "events" and "customer-requests": expected one list of events',
  );
  assertEquals(
    problem(input(branch(1), requests({}))),
    'in.json: [1]["customer-requests"]: expected an array of events, got an object',
  );
});

Deno.test("parseScenario() rejects a customer or event routed to a branch that does not exist", () => {
  assertEquals(
    problem(input(branch(1), customer(2, [{ interface: "query" }]))),
    'in.json: [1].events[0]: no "dest" and no branch 2 (the customer\'s own id) to default to',
  );
  assertEquals(
    problem(input(branch(1), customer(1, [{ interface: "query", dest: 9 }]))),
    "in.json: [1].events[0].dest: branch 9 does not exist",
  );
  assertEquals(
    problem(input(branch(1), customer(1, [{ interface: "query", branch: 9 }]))),
    "in.json: [1].events[0].branch: branch 9 does not exist",
  );
  assertEquals(
    problem(input(branch(1), branch(2), customer(1, [{ interface: "query", dest: 1, branch: 2 }]))),
    'in.json: [2].events[0]: "dest" (1) and "branch" (2) name different branches',
  );
});

Deno.test("parseScenario() rejects an input without branches", () => {
  assertEquals(
    problem("[]"),
    'in.json: no branches: the input needs at least one entry with "type": "branch"',
  );
});

Deno.test("scenarioToJson() gives back a scenario that validates to the same scenario", () => {
  const scenario = parseScenario(EXAMPLE, "Input.json");
  assertEquals(validateScenario(scenarioToJson(scenario), "plan"), scenario);
});
