import { assertEquals } from "./_assert.ts";
import {
  decodeClockEvent,
  decodeEntry,
  decodeForward,
  decodeReadIndex,
  decodeRequest,
  encodeResponse,
  requestOfKey,
  units,
} from "../src/wire_codec.ts";

const request = (
  fields: Partial<
    {
      interface: string;
      money: number;
      amount: number;
      customer_id: number;
      request_id: number;
      after: number;
    }
  >,
) => ({
  id: 1,
  interface: "deposit",
  money: 0,
  amount: 0,
  customer_id: 0,
  request_id: 0,
  ...fields,
});

Deno.test("decodeRequest() takes an original client's int32 money", () => {
  assertEquals(decodeRequest(request({ money: 170 })), {
    ok: true,
    value: { interface: "deposit", amount: 170, key: undefined, after: 0 },
  });
});

Deno.test("decodeRequest() keys a request by customer_id and request_id, when it has a request_id", () => {
  assertEquals(decodeRequest(request({ money: 5, customer_id: 7, request_id: 3 })), {
    ok: true,
    value: { interface: "deposit", amount: 5, key: "7/3", after: 0 },
  });
  assertEquals(decodeRequest(request({ money: 5, customer_id: 7 })), {
    ok: true,
    value: { interface: "deposit", amount: 5, key: undefined, after: 0 },
  });
  assertEquals(decodeRequest(request({ request_id: -1 })).ok, false);
});

Deno.test("decodeRequest() takes the position a query must wait for, and refuses a negative one", () => {
  assertEquals(decodeRequest(request({ interface: "query", after: 12 })), {
    ok: true,
    value: { interface: "query", amount: 0, key: undefined, after: 12 },
  });
  assertEquals(decodeRequest(request({ interface: "query", after: -1 })).ok, false);
});

Deno.test("decodeRequest() takes the int64 amount beyond int32", () => {
  const value = { interface: "withdraw", amount: Number.MAX_SAFE_INTEGER, key: undefined, after: 0 } as const;
  assertEquals(decodeRequest(request({ interface: "withdraw", amount: 9007199254740991 })), {
    ok: true,
    value,
  });
});

Deno.test("decodeRequest() ignores money on a query", () => {
  assertEquals(decodeRequest(request({ interface: "query", money: -3 })), {
    ok: true,
    value: { interface: "query", amount: 0, key: undefined, after: 0 },
  });
});

Deno.test("decodeRequest() refuses malformed requests with INVALID_ARGUMENT", () => {
  const code = (fields: Parameters<typeof request>[0]) => {
    const decoded = decodeRequest(request(fields));
    return decoded.ok ? "ok" : decoded.refusal.code;
  };
  assertEquals(code({ interface: "steal" }), "INVALID_ARGUMENT");
  assertEquals(code({ interface: "" }), "INVALID_ARGUMENT");
  assertEquals(code({ money: -5 }), "INVALID_ARGUMENT");
  assertEquals(code({ amount: 2 ** 53 }), "INVALID_ARGUMENT");
  assertEquals(code({ amount: -1 }), "INVALID_ARGUMENT");
  assertEquals(code({ money: 5, amount: 6 }), "INVALID_ARGUMENT");
  assertEquals(code({ money: 5, amount: 5 }), "ok");
});

Deno.test("decodeForward() takes a deposit or withdrawal and refuses a query or a bad amount", () => {
  assertEquals(decodeForward({ interface: "withdraw", amount: 5, key: "7/3" }), {
    ok: true,
    value: { update: { kind: "withdraw", amount: 5 }, key: "7/3" },
  });
  assertEquals(decodeForward({ interface: "deposit", amount: 5, key: "" }), {
    ok: true,
    value: { update: { kind: "deposit", amount: 5 }, key: undefined },
  });
  assertEquals(decodeForward({ interface: "query", amount: 0, key: "" }).ok, false);
  assertEquals(decodeForward({ interface: "deposit", amount: -5, key: "" }).ok, false);
  assertEquals(decodeForward({ interface: "deposit", amount: 5, key: "7" }).ok, false);
});

Deno.test("decodeEntry() refuses position 0, a bad view or commit position, or a bad update", () => {
  const entry = { view: 0, position: 3, interface: "deposit", amount: 5, commit: 2 };
  assertEquals(decodeEntry(entry), {
    ok: true,
    value: { view: 0, position: 3, update: { kind: "deposit", amount: 5 }, key: undefined, commit: 2 },
  });
  assertEquals(decodeEntry({ ...entry, key: "7/3" }), {
    ok: true,
    value: { view: 0, position: 3, update: { kind: "deposit", amount: 5 }, key: "7/3", commit: 2 },
  });
  assertEquals(decodeEntry({ ...entry, key: "seven" }).ok, false);
  assertEquals(decodeEntry({ ...entry, position: 0 }).ok, false);
  assertEquals(decodeEntry({ ...entry, commit: 3 }).ok, false, "a commit position must be below the entry's");
  assertEquals(decodeEntry({ ...entry, view: 0.5 }).ok, false);
  assertEquals(decodeEntry({ ...entry, interface: "query" }).ok, false);
  assertEquals(decodeEntry({ ...entry, amount: 2 ** 53 }).ok, false);
});

Deno.test("encodeResponse() fills the original int32 money only while the balance fits", () => {
  assertEquals(encodeResponse("query", true, 570, 3), {
    interface: "query",
    success: true,
    money: 570,
    balance: 570,
    position: 3,
  });
  assertEquals(encodeResponse("query", true, 2 ** 31, 0), {
    interface: "query",
    success: true,
    money: 0,
    balance: 2 ** 31,
    position: 0,
  });
});

Deno.test("units() accepts exactly the safe non-negative integers", () => {
  assertEquals(units(0), 0);
  assertEquals(units(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER);
  // An int64 of 2^53 or more decodes to a number that is not a safe integer.
  assertEquals(units(2 ** 53), undefined);
  assertEquals(units(2 ** 63), undefined);
  assertEquals(units(-1), undefined);
  assertEquals(units(1.5), undefined);
});

Deno.test("a key names two whole numbers up to 2^53 - 1 as written by one, or nothing; anything else is refused", () => {
  assertEquals(decodeReadIndex({ key: "7/3" }), { ok: true, value: "7/3" });
  assertEquals(decodeReadIndex({ key: "0/10" }), { ok: true, value: "0/10" });
  assertEquals(decodeReadIndex({}), { ok: true, value: undefined });
  assertEquals(requestOfKey("7/3"), { customer: 7, request: 3 });
  for (
    const key of [
      "9007199254740992/1",
      "1/9999999999999999",
      "7",
      "7/",
      "/3",
      "-1/3",
      "7/3/1",
      "07/3",
      "7/03",
      "7/00",
    ]
  ) {
    const forward = decodeForward({ interface: "deposit", amount: 1, key });
    assertEquals(forward.ok, false, key);
    assertEquals(decodeReadIndex({ key }).ok, false, key);
  }
});

Deno.test("decodeClockEvent() takes a branch's recorded event, and refuses a malformed one", () => {
  const wire = {
    clock: 6,
    kind: "recv",
    peer_type: "branch",
    peer_id: 1,
    message: "entry",
    interface: "deposit",
    customer_id: 7,
    request_id: 3,
    sent: 5,
  };
  assertEquals(decodeClockEvent(wire), {
    ok: true,
    value: {
      clock: 6,
      kind: "recv",
      peer: { type: "branch", id: 1 },
      message: "entry",
      interface: "deposit",
      about: { customer: 7, request: 3 },
      sent: 5,
    },
  });
  for (const bad of [{ kind: "local" }, { peer_type: "bank" }, { message: "gossip" }, { clock: -1 }]) {
    assertEquals(decodeClockEvent({ ...wire, ...bad }).ok, false, JSON.stringify(bad));
  }
});
