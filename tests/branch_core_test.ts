import { assertEquals, assertOk } from "./_assert.ts";
import { Random } from "./_random.ts";
import {
  type BranchInput,
  type BranchOutput,
  type BranchState,
  initialState,
  step,
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
const ack = (requestId: number, peer: number): BranchInput => ({
  type: "propagated",
  requestId,
  peer,
  refusal: undefined,
});

Deno.test("step() answers a query with the balance and sends nothing else", () => {
  const { outbox } = run(initialState(1, 400, [2, 3]), [{
    type: "request",
    requestId: 7,
    interface: "query",
    amount: 0,
  }]);
  assertEquals(outbox, [{ type: "reply", requestId: 7, interface: "query", success: true, balance: 400 }]);
});

Deno.test("step() applies a deposit, propagates it to every peer at once, and replies only after the last ack", () => {
  const first = run(initialState(1, 400, [2, 3]), [deposit(1, 170)]);
  assertEquals(first.state.balance, 570);
  assertEquals(first.outbox, [
    { type: "propagate", requestId: 1, to: 2, update: { kind: "deposit", amount: 170 } },
    { type: "propagate", requestId: 1, to: 3, update: { kind: "deposit", amount: 170 } },
  ]);
  const second = run(first.state, [ack(1, 3)]);
  assertEquals(second.outbox, [], "no reply while branch 2 has not acknowledged");
  const third = run(second.state, [ack(1, 2)]);
  assertEquals(third.outbox, [{
    type: "reply",
    requestId: 1,
    interface: "deposit",
    success: true,
    balance: 570,
  }]);
  assertEquals(third.state.pending.size, 0);
});

Deno.test("step() fails a withdrawal larger than the balance: balance unchanged, nothing propagated", () => {
  const { state, outbox } = run(initialState(1, 100, [2, 3]), [withdraw(1, 101)]);
  assertEquals(state.balance, 100);
  assertEquals(outbox, [{
    type: "reply",
    requestId: 1,
    interface: "withdraw",
    success: false,
    balance: 100,
  }]);
});

Deno.test("step() allows a withdrawal of the whole balance", () => {
  const { state } = run(initialState(1, 100, []), [withdraw(1, 100)]);
  assertEquals(state.balance, 0);
});

Deno.test("step() fails a deposit that would take the balance past Number.MAX_SAFE_INTEGER", () => {
  const { state, outbox } = run(initialState(1, Number.MAX_SAFE_INTEGER - 1, [2]), [deposit(1, 2)]);
  assertEquals(state.balance, Number.MAX_SAFE_INTEGER - 1);
  assertEquals(outbox, [{
    type: "reply",
    requestId: 1,
    interface: "deposit",
    success: false,
    balance: Number.MAX_SAFE_INTEGER - 1,
  }]);
});

Deno.test("step() replies at once when the branch has no peers", () => {
  const { outbox } = run(initialState(1, 0, []), [deposit(1, 5)]);
  assertEquals(outbox, [{ type: "reply", requestId: 1, interface: "deposit", success: true, balance: 5 }]);
});

Deno.test("step() applies a propagation and acknowledges it with the new balance", () => {
  const { state, outbox } = run(initialState(2, 400, [1, 3]), [
    { type: "propagation", requestId: 9, origin: 1, update: { kind: "withdraw", amount: 70 } },
  ]);
  assertEquals(state.balance, 330);
  assertEquals(outbox, [{ type: "ack", requestId: 9, balance: 330 }]);
});

Deno.test("step() refuses a propagation that would take a diverged replica below zero", () => {
  const { state, outbox } = run(initialState(2, 10, [1]), [
    { type: "propagation", requestId: 9, origin: 1, update: { kind: "withdraw", amount: 70 } },
  ]);
  assertEquals(state.balance, 10);
  assertEquals(outbox.map((output) => output.type === "refuse" && output.refusal.code), ["ABORTED"]);
});

Deno.test("step() refuses the customer's request when a peer refuses, and ignores later acks for it", () => {
  const first = run(initialState(1, 400, [2, 3]), [
    deposit(1, 10),
    {
      type: "propagated",
      requestId: 1,
      peer: 2,
      refusal: { code: "UNAVAILABLE", message: "connection refused" },
    },
  ]);
  assertEquals(first.outbox.at(-1), {
    type: "refuse",
    requestId: 1,
    refusal: { code: "UNAVAILABLE", message: "propagation to branch 2 failed: connection refused" },
  });
  const late = run(first.state, [ack(1, 3)]);
  assertEquals(late.outbox, [], "the request was already answered");
  assertEquals(late.state.pending.size, 0);
});

/**
 * A simulated network of cores: customers act one at a time (the sequential contract), while the
 * messages of each update are delivered in a random order. Every reply is checked against a sequential
 * ledger, and after each reply every replica must hold the ledger's balance.
 */
function simulate(seed: number, branchCount: number, operations: number): void {
  const random = new Random(seed);
  const ids = Array.from({ length: branchCount }, (_, index) => index + 1);
  const states = new Map(ids.map((id) => [id, initialState(id, 100, ids.filter((peer) => peer !== id))]));
  let ledger = 100;
  let nextId = 1;
  for (let operation = 0; operation < operations; operation++) {
    const origin = random.pick(ids);
    const kind = random.pick(["query", "deposit", "withdraw"] as const);
    const amount = kind === "query" ? 0 : random.below(120);
    const requestId = nextId++;
    // In flight: [destination, input]. The origin's outbox starts it.
    const inFlight: [number, BranchInput][] = [[origin, {
      type: "request",
      requestId,
      interface: kind,
      amount,
    }]];
    const replies: { reply: BranchOutput; balances: number[] }[] = [];
    // Each propagation's id, mapped to the origin's request it acknowledges once the peer has applied it.
    const propagations = new Map<number, { origin: number; requestId: number }>();
    while (inFlight.length > 0) {
      const [at, input] = inFlight.splice(random.below(inFlight.length), 1)[0] as [number, BranchInput];
      const result = step(states.get(at) as BranchState, input);
      states.set(at, result.state);
      for (const output of result.outbox) {
        if (output.type === "propagate") {
          const propagationId = nextId++;
          propagations.set(propagationId, { origin: at, requestId: output.requestId });
          inFlight.push([output.to, {
            type: "propagation",
            requestId: propagationId,
            origin: at,
            update: output.update,
          }]);
        } else if (output.type === "ack") {
          const { origin, requestId } = propagations.get(output.requestId) as {
            origin: number;
            requestId: number;
          };
          inFlight.push([origin, { type: "propagated", requestId, peer: at, refusal: undefined }]);
        } else if (output.type === "reply") {
          // Snapshot at the moment of the reply: the contract is that every replica has applied it by now.
          replies.push({ reply: output, balances: [...states.values()].map((state) => state.balance) });
        } else assertOk(false, `seed ${seed}: unexpected ${JSON.stringify(output)}`);
      }
    }
    const expected = kind === "query" ? ledger : kind === "deposit" ? ledger + amount : ledger - amount;
    const success = expected >= 0 && Number.isSafeInteger(expected);
    if (success) ledger = expected;
    const where = `seed ${seed}, operation ${operation}`;
    assertEquals(replies.map(({ reply }) => reply), [{
      type: "reply",
      requestId,
      interface: kind,
      success,
      balance: ledger,
    }], where);
    assertEquals(replies[0]?.balances, ids.map(() => ledger), `${where}: replicas when the reply was sent`);
  }
}

Deno.test("step() in a simulated network agrees with a sequential ledger (200 seeded schedules)", () => {
  const base = Number(Deno.env.get("BANK_SEED") ?? 1);
  for (let seed = base; seed < base + 200; seed++) {
    try {
      simulate(seed, 2 + (seed % 5), 60);
    } catch (error) {
      console.error(`failing seed: ${seed} (rerun with BANK_SEED=${seed})`);
      throw error;
    }
  }
});
