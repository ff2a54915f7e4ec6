import { assertEquals } from "./_assert.ts";
import { type EntryResult, renderOutput } from "../src/output.ts";

const RESULTS: EntryResult[] = [
  { id: 1, recv: [{ interface: "query", success: true, balance: 400, branch: 1 }] },
  {
    id: 2,
    recv: [{ interface: "deposit", success: true, balance: 570, branch: 2 }, {
      interface: "query",
      success: true,
      balance: 570,
      branch: 3,
    }],
  },
  { id: 3, recv: [{ interface: "withdraw", success: false, balance: 500, branch: 3 }] },
];

Deno.test("renderOutput() json: one entry per line inside an array, as the issue specifies", () => {
  assertEquals(
    renderOutput(RESULTS, "json"),
    [
      "[",
      '{"id": 1, "recv": [{"interface": "query", "balance": 400}]},',
      '{"id": 2, "recv": [{"interface": "deposit", "result": "success"}, {"interface": "query", "balance": 570}]},',
      '{"id": 3, "recv": [{"interface": "withdraw", "result": "fail"}]}',
      "]",
      "",
    ].join("\n"),
  );
});

Deno.test("renderOutput() json is valid JSON, also with no entries", () => {
  assertEquals(JSON.parse(renderOutput(RESULTS, "json")).length, 3);
  assertEquals(JSON.parse(renderOutput([], "json")), []);
});

Deno.test("renderOutput() legacy: Python dicts with result and money", () => {
  assertEquals(
    renderOutput(RESULTS.slice(1), "legacy"),
    "{'id': 2, 'recv': [{'interface': 'deposit', 'result': 'success'}, {'interface': 'query', 'result': 'success', 'money': 570}]}\n" +
      "{'id': 3, 'recv': [{'interface': 'withdraw', 'result': 'fail'}]}\n",
  );
});

Deno.test("renderOutput() seed: the original program's own lines", () => {
  assertEquals(
    renderOutput(RESULTS.slice(1), "seed"),
    "{'id': 2, 'recv': [{'interface': 'deposit', 'success': True}, {'interface': 'query', 'success': True, 'money': 570}]}\n" +
      "{'id': 3, 'recv': [{'interface': 'withdraw', 'success': False}]}\n",
  );
});

Deno.test("renderOutput() per-event: an entry per event, each reply naming its branch", () => {
  assertEquals(
    renderOutput(RESULTS, "per-event"),
    [
      "[",
      '{"id": 1, "recv": [{"interface": "query", "branch": 1, "balance": 400}]},',
      '{"id": 2, "recv": [{"interface": "deposit", "branch": 2, "result": "success"}]},',
      '{"id": 2, "recv": [{"interface": "query", "branch": 3, "balance": 570}]},',
      '{"id": 3, "recv": [{"interface": "withdraw", "branch": 3, "result": "fail"}]}',
      "]",
      "",
    ].join("\n"),
  );
  assertEquals(JSON.parse(renderOutput([], "per-event")), []);
});
