import { assertEquals, assertOk } from "./_assert.ts";
import { Random } from "./_random.ts";
import {
  type BranchInput,
  type BranchOutput,
  type BranchState,
  type Entry,
  initialState,
  isPrimary,
  step,
  type Update,
} from "../src/branch_core.ts";

/** Steps `state` through `inputs`, returning the final state and every output in order. */
function run(
  state: BranchState,
  inputs: readonly BranchInput[],
): { state: BranchState; outbox: BranchOutput[] } {
  const outbox: BranchOutput[] = [];
  for (const input of inputs) {
    const result = step(state, input);
    state = result.state;
    outbox.push(...result.outbox);
  }
  return { state, outbox };
}

const deposit = (requestId: number, amount: number): BranchInput => ({
  type: "request",
  requestId,
  interface: "deposit",
  amount,
});
const withdraw = (requestId: number, amount: number): BranchInput => ({
  type: "request",
  requestId,
  interface: "withdraw",
  amount,
});

const entry = (requestId: number, position: number, update: Update, view = 0): BranchInput => ({
  type: "entry",
  requestId,
  entry: { view, position, update },
});
const replicated = (position: number, backup: number): BranchInput => ({
  type: "replicated",
  position,
  backup,
  refusal: undefined,
});
const kinds = (outbox: readonly BranchOutput[]) =>
  outbox.map((output) => output.type === "refuse" ? output.refusal.code : output.type);

Deno.test("initialState() makes the lowest id the primary, with every other branch its backup", () => {
  const primary = initialState(2, 400, [5, 3]);
  assertEquals([primary.primary, primary.backups], [2, [5, 3]]);
  assertOk(isPrimary(primary));
  const backup = initialState(5, 400, [2, 3]);
  assertEquals([backup.primary, backup.backups], [2, []]);
  assertOk(!isPrimary(backup));
});

Deno.test("step() answers a query with the balance, at the primary or a backup, and sends nothing else", () => {
  for (const id of [1, 2]) {
    const { outbox } = run(initialState(id, 400, [1, 2, 3].filter((peer) => peer !== id)), [{
      type: "request",
      requestId: 7,
      interface: "query",
      amount: 0,
    }]);
    assertEquals(outbox, [{
      type: "reply",
      requestId: 7,
      interface: "query",
      success: true,
      balance: 400,
      position: 0,
    }]);
  }
});

Deno.test("the primary applies a deposit, sends it to every backup at once, and replies after the last one", () => {
  const first = run(initialState(1, 400, [2, 3]), [deposit(1, 170)]);
  assertEquals([first.state.balance, first.state.position], [570, 1]);
  const sent: Entry = { view: 0, position: 1, update: { kind: "deposit", amount: 170 } };
  assertEquals(first.outbox, [
    { type: "replicate", to: 2, entry: sent },
    { type: "replicate", to: 3, entry: sent },
  ]);
  const second = run(first.state, [replicated(1, 3)]);
  assertEquals(second.outbox, [], "no reply while branch 2 has not applied it");
  const third = run(second.state, [replicated(1, 2)]);
  assertEquals(third.outbox, [{
    type: "reply",
    requestId: 1,
    interface: "deposit",
    success: true,
    balance: 570,
    position: 1,
  }]);
  assertEquals(third.state.replicating.size, 0);
});

Deno.test("the primary fails a withdrawal larger than its balance: nothing changes or is replicated", () => {
  const { state, outbox } = run(initialState(1, 100, [2, 3]), [withdraw(1, 101)]);
  assertEquals([state.balance, state.position], [100, 0]);
  assertEquals(outbox, [{
    type: "reply",
    requestId: 1,
    interface: "withdraw",
    success: false,
    balance: 100,
    position: 0,
  }]);
});

Deno.test("the primary allows a withdrawal of the whole balance", () => {
  const { state } = run(initialState(1, 100, []), [withdraw(1, 100)]);
  assertEquals(state.balance, 0);
});

Deno.test("the primary fails a deposit that would take the balance past Number.MAX_SAFE_INTEGER", () => {
  const { state, outbox } = run(initialState(1, Number.MAX_SAFE_INTEGER - 1, [2]), [deposit(1, 2)]);
  assertEquals(state.balance, Number.MAX_SAFE_INTEGER - 1);
  assertEquals(outbox, [{
    type: "reply",
    requestId: 1,
    interface: "deposit",
    success: false,
    balance: Number.MAX_SAFE_INTEGER - 1,
    position: 0,
  }]);
});

Deno.test("a branch with no peers is its own primary and replies at once", () => {
  const { outbox } = run(initialState(1, 0, []), [deposit(1, 5)]);
  assertEquals(outbox, [{
    type: "reply",
    requestId: 1,
    interface: "deposit",
    success: true,
    balance: 5,
    position: 1,
  }]);
});

Deno.test("the primary decides a forwarded update like its own and answers the backup that forwarded it", () => {
  const first = run(initialState(1, 50, [2, 3]), [
    { type: "forward", requestId: 4, from: 3, update: { kind: "withdraw", amount: 60 } },
    { type: "forward", requestId: 5, from: 3, update: { kind: "withdraw", amount: 20 } },
  ]);
  assertEquals(kinds(first.outbox), ["reply", "replicate", "replicate"]);
  assertEquals(first.outbox[0], {
    type: "reply",
    requestId: 4,
    interface: "withdraw",
    success: false,
    balance: 50,
    position: 0,
  });
  const done = run(first.state, [replicated(1, 2), replicated(1, 3)]);
  assertEquals(done.outbox, [{
    type: "reply",
    requestId: 5,
    interface: "withdraw",
    success: true,
    balance: 30,
    position: 1,
  }]);
});

Deno.test("a backup forwards an update to the primary and replies with the primary's decision", () => {
  const first = run(initialState(2, 400, [1, 3]), [deposit(8, 170)]);
  assertEquals(first.outbox, [{ type: "forward", requestId: 8, update: { kind: "deposit", amount: 170 } }]);
  assertEquals(first.state.balance, 400, "a backup changes its balance only by applying entries");
  const { outbox } = run(first.state, [{
    type: "decided",
    requestId: 8,
    decision: { success: true, balance: 570, position: 4 },
    refusal: undefined,
  }]);
  assertEquals(outbox, [{
    type: "reply",
    requestId: 8,
    interface: "deposit",
    success: true,
    balance: 570,
    position: 4,
  }]);
});

Deno.test("a backup refuses its customer's request with the status of a failed forward", () => {
  const { outbox } = run(initialState(2, 400, [1]), [deposit(8, 5), {
    type: "decided",
    requestId: 8,
    decision: undefined,
    refusal: { code: "UNAVAILABLE", message: "link with 127.0.0.1:1 broke" },
  }]);
  assertEquals(outbox.at(-1), {
    type: "refuse",
    requestId: 8,
    refusal: { code: "UNAVAILABLE", message: "forward to the primary failed: link with 127.0.0.1:1 broke" },
  });
});

Deno.test("a backup applies entries in position order and acknowledges each with its new balance", () => {
  const { state, outbox } = run(initialState(2, 400, [1, 3]), [
    entry(9, 1, { kind: "withdraw", amount: 70 }),
    entry(10, 2, { kind: "deposit", amount: 5 }),
  ]);
  assertEquals([state.balance, state.position], [335, 2]);
  assertEquals(outbox, [
    { type: "ack", requestId: 9, balance: 330, position: 1 },
    { type: "ack", requestId: 10, balance: 335, position: 2 },
  ]);
});

Deno.test("a backup refuses an entry out of order, of another view, or that would take it below zero", () => {
  const backup = initialState(2, 10, [1]);
  const deposit5: Update = { kind: "deposit", amount: 5 };
  for (
    const input of [
      entry(1, 2, deposit5),
      entry(1, 1, deposit5, 1),
      entry(1, 1, { kind: "withdraw", amount: 70 }),
    ]
  ) {
    const { state, outbox } = run(backup, [input]);
    assertEquals(kinds(outbox), ["ABORTED"], JSON.stringify(input));
    assertEquals([state.balance, state.position], [10, 0]);
  }
});

Deno.test("a branch refuses a message meant for the other role", () => {
  const asBackup = run(initialState(2, 10, [1]), [
    { type: "forward", requestId: 1, from: 1, update: { kind: "deposit", amount: 5 } },
  ]);
  assertEquals(kinds(asBackup.outbox), ["INVALID_ARGUMENT"]);
  const asPrimary = run(initialState(1, 10, [2]), [entry(1, 1, { kind: "deposit", amount: 5 })]);
  assertEquals(kinds(asPrimary.outbox), ["INVALID_ARGUMENT"]);
  assertEquals(asPrimary.state.balance, 10);
});

Deno.test("the primary refuses the request when a backup fails to apply it, and ignores later answers", () => {
  const first = run(initialState(1, 400, [2, 3]), [
    deposit(1, 10),
    {
      type: "replicated",
      position: 1,
      backup: 2,
      refusal: { code: "UNAVAILABLE", message: "connection refused" },
    },
  ]);
  assertEquals(first.outbox.at(-1), {
    type: "refuse",
    requestId: 1,
    refusal: { code: "UNAVAILABLE", message: "replication to branch 2 failed: connection refused" },
  });
  const late = run(first.state, [replicated(1, 3)]);
  assertEquals(late.outbox, [], "the request was already answered");
  assertEquals(late.state.replicating.size, 0);
});

/**
 * A simulated network of cores: customers act one at a time (the sequential contract), while the
 * messages of each request are delivered in a random order, first in first out on each link (as on a
 * stream). Every reply is checked against a sequential ledger, and when it is sent every replica must
 * hold the ledger's balance.
 */
function simulate(seed: number, branchCount: number, operations: number): void {
  const random = new Random(seed);
  const ids = Array.from({ length: branchCount }, (_, index) => index + 1);
  const states = new Map(ids.map((id) => [id, initialState(id, 100, ids.filter((peer) => peer !== id))]));
  let ledger = 100;
  let logLength = 0;
  let nextId = 1;
  /** Every message in flight, oldest first, with the link (or customer connection) it travels on. */
  const inFlight: { readonly channel: string; readonly to: number; readonly input: BranchInput }[] = [];
  const send = (from: number | string, to: number, input: BranchInput) =>
    inFlight.push({ channel: `${from}>${to}`, to, input });
  /** Entries sent, by the request id the backup got them under. */
  const entries = new Map<number, { primary: number; position: number }>();
  /** Forwards sent, by the request id the primary got them under. */
  const forwards = new Map<number, { backup: number; requestId: number }>();
  for (let operation = 0; operation < operations; operation++) {
    const where = `seed ${seed}, operation ${operation}`;
    const at = random.pick(ids);
    const kind = random.pick(["query", "deposit", "withdraw"] as const);
    const amount = kind === "query" ? 0 : random.below(120);
    const requestId = nextId++;
    send("customer", at, { type: "request", requestId, interface: kind, amount });
    const replies: { reply: BranchOutput; balances: number[] }[] = [];
    while (inFlight.length > 0) {
      // Any link's oldest message may go next.
      const heads = inFlight.filter((message, index) =>
        inFlight.findIndex((other) => other.channel === message.channel) === index
      );
      const next = random.pick(heads);
      inFlight.splice(inFlight.indexOf(next), 1);
      const result = step(states.get(next.to) as BranchState, next.input);
      states.set(next.to, result.state);
      for (const output of result.outbox) {
        if (output.type === "replicate") {
          const id = nextId++;
          entries.set(id, { primary: next.to, position: output.entry.position });
          send(next.to, output.to, { type: "entry", requestId: id, entry: output.entry });
        } else if (output.type === "ack") {
          const { primary, position } = entries.get(output.requestId) as {
            primary: number;
            position: number;
          };
          send(next.to, primary, { type: "replicated", position, backup: next.to, refusal: undefined });
        } else if (output.type === "forward") {
          const id = nextId++;
          forwards.set(id, { backup: next.to, requestId: output.requestId });
          send(next.to, states.get(next.to)?.primary as number, {
            type: "forward",
            requestId: id,
            from: next.to,
            update: output.update,
          });
        } else if (output.type === "reply" && forwards.has(output.requestId)) {
          const { backup, requestId } = forwards.get(output.requestId) as {
            backup: number;
            requestId: number;
          };
          const decision = { success: output.success, balance: output.balance, position: output.position };
          send(next.to, backup, { type: "decided", requestId, decision, refusal: undefined });
        } else if (output.type === "reply") {
          // Snapshot at the moment of the reply: the contract is that every replica has applied it by now.
          replies.push({ reply: output, balances: [...states.values()].map((state) => state.balance) });
        } else assertOk(false, `${where}: unexpected ${JSON.stringify(output)}`);
      }
    }
    const expected = kind === "query" ? ledger : kind === "deposit" ? ledger + amount : ledger - amount;
    const success = expected >= 0 && Number.isSafeInteger(expected);
    if (success) ledger = expected;
    // Each update that succeeds takes the next position; anything else reflects the log so far.
    if (success && kind !== "query") logLength++;
    assertEquals(replies.map(({ reply }) => reply), [{
      type: "reply",
      requestId,
      interface: kind,
      success,
      balance: ledger,
      position: logLength,
    }], where);
    assertEquals(replies[0]?.balances, ids.map(() => ledger), `${where}: replicas when the reply was sent`);
  }
}

Deno.test("step() in a simulated network agrees with a sequential ledger (200 seeded schedules)", () => {
  const base = Number(Deno.env.get("BANK_SEED") ?? 1);
  for (let seed = base; seed < base + 200; seed++) {
    try {
      simulate(seed, 1 + (seed % 6), 60);
    } catch (error) {
      console.error(`failing seed: ${seed} (rerun with BANK_SEED=${seed})`);
      throw error;
    }
  }
});
