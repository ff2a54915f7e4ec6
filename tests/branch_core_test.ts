import { assertEquals, assertMatch, assertOk, assertThrows } from "./_assert.ts";
import { Random } from "./_random.ts";
import { checkHistory } from "../src/checker.ts";
import type { HistoryRequest } from "../src/history.ts";
import {
  type BranchInput,
  type BranchOutput,
  type BranchState,
  type Entry,
  initialState,
  isPrimary,
  type ReadMode,
  Remembered,
  sendAtOnce,
  step,
  Timeline,
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

const entry = (requestId: number, position: number, update: Update, view = 0, commit = 0): BranchInput => ({
  type: "entry",
  requestId,
  entry: { view, position, update, commit },
});
const query = (requestId: number, after = 0): BranchInput => ({
  type: "request",
  requestId,
  interface: "query",
  amount: 0,
  after,
});
const replicated = (position: number, backup: number): BranchInput => ({
  type: "replicated",
  position,
  backup,
});
const synced: BranchInput = { type: "synced" };
/** Each reply in `outbox` as [success, balance]. */
const outcomes = (outbox: readonly BranchOutput[]) =>
  outbox.flatMap((output) => output.type === "reply" ? [[output.success, output.balance]] : []);
const kinds = (outbox: readonly BranchOutput[]) =>
  outbox.map((output) => output.type === "refuse" ? output.refusal.code : output.type);

Deno.test("initialState() makes the lowest id the primary, with every other branch its backup", () => {
  const primary = initialState(2, 400, { peers: [5, 3] });
  assertEquals([primary.primary, primary.backups], [2, [5, 3]]);
  assertOk(isPrimary(primary));
  const backup = initialState(5, 400, { peers: [2, 3] });
  assertEquals([backup.primary, backup.backups], [2, []]);
  assertOk(!isPrimary(backup));
});

/** The reply of a request that succeeded. */
const reply = (
  requestId: number,
  kind: "query" | "deposit" | "withdraw",
  balance: number,
  position: number,
): BranchOutput => ({ type: "reply", requestId, interface: kind, success: true, balance, position });

Deno.test("with local reads, a branch answers from its replica once it has applied what the client saw", () => {
  // The deposit is applied at both, and committed at neither: a read at the commit would answer 400.
  const primary = run(initialState(1, 400, { peers: [2], reads: "local" }), [deposit(1, 10), query(7, 1)]);
  assertEquals(primary.outbox.at(-1), reply(7, "query", 410, 1));
  const upToDate = run(initialState(2, 400, { peers: [1], reads: "local" }), [
    entry(1, 1, { kind: "deposit", amount: 10 }),
    query(7, 1),
  ]);
  assertEquals(upToDate.outbox.at(-1), reply(7, "query", 410, 1));
});

Deno.test("with local reads, a backup behind what the client saw asks the primary, then waits to apply it", () => {
  const behind = run(initialState(2, 400, { peers: [1], reads: "local" }), [query(7, 1)]);
  assertEquals(behind.outbox, [{ type: "askIndex", requestId: 7 }], "position 1 has not arrived yet");
  const indexed = run(behind.state, [{ type: "indexed", requestId: 7, commit: 1, refusal: undefined }]);
  assertEquals(indexed.outbox, [], "the primary's commit position is 1, not applied here yet");
  const backup = run(indexed.state, [entry(1, 1, { kind: "deposit", amount: 10 })]);
  assertEquals(backup.outbox.at(-1), reply(7, "query", 410, 1));
});

Deno.test("the primary answers a query at its commit position, not at an update still replicating", () => {
  const { outbox } = run(initialState(1, 400, { peers: [2] }), [deposit(1, 10), query(7)]);
  assertEquals(outbox.at(-1), reply(7, "query", 400, 0));
});

Deno.test("a backup answers a query at the primary's commit position, with its own balance there", () => {
  const backup = run(initialState(2, 400, { peers: [1] }), [
    entry(1, 1, { kind: "deposit", amount: 10 }),
    entry(2, 2, { kind: "deposit", amount: 5 }),
    query(7),
  ]);
  assertEquals(backup.outbox.at(-1), { type: "askIndex", requestId: 7 });
  const { outbox, state } = run(backup.state, [{
    type: "indexed",
    requestId: 7,
    commit: 1,
    refusal: undefined,
  }]);
  assertEquals(outbox, [reply(7, "query", 410, 1)]);
  assertEquals([state.commit, state.balances.at(0), state.balances.at(2)], [1, 400, 415]);
});

Deno.test("a backup behind the primary's commit position answers once it gets there; a failed read index is refused", () => {
  const asked = run(initialState(2, 400, { peers: [1] }), [query(7), query(8)]);
  const held = run(asked.state, [
    { type: "indexed", requestId: 7, commit: 1, refusal: undefined },
    { type: "indexed", requestId: 8, commit: undefined, refusal: { code: "UNAVAILABLE", message: "gone" } },
  ]);
  assertEquals(kinds(held.outbox), ["UNAVAILABLE"], "query 7 waits for position 1");
  const { outbox } = run(held.state, [entry(1, 1, { kind: "withdraw", amount: 30 })]);
  assertEquals(outbox.at(-1), reply(7, "query", 370, 1));
});

Deno.test("the primary answers a read index with its commit position; a backup refuses one", () => {
  assertEquals(run(initialState(1, 400, { peers: [2] }), [{ type: "readIndex", requestId: 3 }]).outbox, [
    { type: "index", requestId: 3, commit: 0 },
  ]);
  assertEquals(
    kinds(run(initialState(2, 400, { peers: [1] }), [{ type: "readIndex", requestId: 3 }]).outbox),
    [
      "INVALID_ARGUMENT",
    ],
  );
});

Deno.test("the primary persists a deposit and replies once it is on a majority of the disks, its own included", () => {
  const first = run(initialState(1, 400, { peers: [2, 3] }), [deposit(1, 170)]);
  assertEquals([first.state.balance, first.state.position], [570, 1]);
  const written: Entry = {
    view: 0,
    position: 1,
    update: { kind: "deposit", amount: 170 },
    key: undefined,
    commit: 0,
  };
  assertEquals(first.outbox, [{ type: "persist", entry: { entry: written, balance: 570 } }]);
  const second = run(first.state, [replicated(1, 3)]);
  assertEquals(second.outbox, [], "one disk of three holds it (the primary's write is not done)");
  const third = run(second.state, [synced]);
  assertEquals(third.outbox, [reply(1, "deposit", 570, 1)]);
  assertEquals(third.state.commit, 1);
});

Deno.test("the primary commits in position order, each position once a majority holds it", () => {
  const both = run(initialState(1, 400, { peers: [2, 3] }), [
    deposit(1, 10),
    deposit(2, 20),
    synced,
    replicated(1, 2),
  ]);
  assertEquals(both.outbox.filter((output) => output.type === "reply").map((output) => output.requestId), [
    1,
  ]);
  const { outbox, state } = run(both.state, [replicated(2, 3)]);
  assertEquals(outbox, [reply(2, "deposit", 430, 2)]);
  assertEquals(state.commit, 2);
});

Deno.test("the primary goes on while a minority of its backups is away, and never with less than a majority", () => {
  const five = initialState(1, 400, { peers: [2, 3, 4, 5] });
  const two = run(five, [deposit(1, 10), synced, replicated(1, 2)]);
  assertEquals(kinds(two.outbox), ["persist"], "two disks of five");
  const three = run(two.state, [replicated(1, 4)]);
  assertEquals(three.outbox, [reply(1, "deposit", 410, 1)]);
  // A backup that links again says how far its disk goes: what it says replaces what the primary knew,
  // and more than the primary's own disk holds counts for no more.
  const back = run(three.state, [{ type: "linked", position: 9, backup: 5 }]);
  assertEquals(back.state.matched.get(5), 1);
  const emptied = run(back.state, [{ type: "linked", position: 0, backup: 2 }]);
  assertEquals([emptied.state.matched.get(2), emptied.state.commit], [0, 1], "a commit is never undone");
});

Deno.test("new entries go at once to the backups a commit or a customer waits on, not to every backup", () => {
  const five = initialState(1, 400, { peers: [2, 3, 4, 5] });
  assertEquals(
    sendAtOnce(five, [2, 3, 4, 5], new Set()),
    new Set([2, 3]),
    "a majority is this and two backups",
  );
  // Those furthest along make the quorum: a backup that stopped answering falls behind and out of it.
  const { state } = run(five, [deposit(1, 10), deposit(2, 10), synced, replicated(2, 5), replicated(1, 4)]);
  assertEquals(sendAtOnce(state, [2, 3, 4, 5], new Set()), new Set([5, 4]));
  assertEquals(sendAtOnce(state, [2, 3, 4, 5], new Set([2])), new Set([5, 4, 2]), "2 waits on a forward");
  assertEquals(sendAtOnce(state, [2, 3, 4], new Set()), new Set([4, 2]), "5 is down");
  assertEquals(sendAtOnce(state, [3], new Set()), new Set([3]), "no majority live: send to what there is");
  const three = initialState(1, 400, { peers: [2, 3] });
  assertEquals(sendAtOnce(three, [2, 3], new Set()), new Set([2]));
});

Deno.test("a failed withdrawal is answered only once what it was decided after is committed", () => {
  const held = run(initialState(1, 100, { peers: [2] }), [deposit(1, 10), withdraw(2, 500)]);
  assertEquals(kinds(held.outbox), ["persist"]);
  const { outbox } = run(held.state, [synced, replicated(1, 2)]);
  assertEquals(outbox.at(-1), {
    type: "reply",
    requestId: 2,
    interface: "withdraw",
    success: false,
    balance: 110,
    position: 1,
  });
});

Deno.test("the primary fails a withdrawal larger than its balance: nothing changes, is written or replicated", () => {
  const { state, outbox } = run(initialState(1, 100, { peers: [2, 3] }), [withdraw(1, 101)]);
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
  const { state } = run(initialState(1, 100, { peers: [] }), [withdraw(1, 100)]);
  assertEquals(state.balance, 0);
});

Deno.test("the primary fails a deposit that would take the balance past Number.MAX_SAFE_INTEGER", () => {
  const { state, outbox } = run(initialState(1, Number.MAX_SAFE_INTEGER - 1, { peers: [2] }), [
    deposit(1, 2),
  ]);
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

Deno.test("a branch with no peers is its own primary and replies once the update is on its disk", () => {
  const written = run(initialState(1, 0, { peers: [] }), [deposit(1, 5)]);
  assertEquals(kinds(written.outbox), ["persist"]);
  assertEquals(run(written.state, [synced]).outbox, [reply(1, "deposit", 5, 1)]);
});

Deno.test("the primary decides a forwarded update like its own and answers the backup that forwarded it", () => {
  const first = run(initialState(1, 50, { peers: [2, 3] }), [
    { type: "forward", requestId: 4, from: 3, update: { kind: "withdraw", amount: 60 } },
    { type: "forward", requestId: 5, from: 3, update: { kind: "withdraw", amount: 20 } },
  ]);
  assertEquals(kinds(first.outbox), ["reply", "persist"]);
  assertEquals(first.outbox[0], {
    type: "reply",
    requestId: 4,
    interface: "withdraw",
    success: false,
    balance: 50,
    position: 0,
  });
  const done = run(first.state, [synced, replicated(1, 3)]);
  assertEquals(done.outbox, [reply(5, "withdraw", 30, 1)]);
});

Deno.test("a backup forwards an update to the primary and replies with the primary's decision", () => {
  const first = run(initialState(2, 400, { peers: [1, 3] }), [deposit(8, 170)]);
  assertEquals(first.outbox, [{
    type: "forward",
    requestId: 8,
    update: { kind: "deposit", amount: 170 },
    key: undefined,
  }]);
  assertEquals(first.state.balance, 400, "a backup changes its balance only by applying entries");
  const { outbox } = run(first.state, [{
    type: "decided",
    requestId: 8,
    decision: { success: true, balance: 570, position: 4 },
    refusal: undefined,
  }]);
  assertEquals(outbox, [reply(8, "deposit", 570, 4)]);
});

Deno.test("a backup refuses its customer's request with the status of a failed forward", () => {
  const { outbox } = run(initialState(2, 400, { peers: [1] }), [deposit(8, 5), {
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

Deno.test("a backup applies entries in position order, persists each, and then acknowledges it", () => {
  const withdrawal: Entry = {
    view: 0,
    position: 1,
    update: { kind: "withdraw", amount: 70 },
    key: "3/4",
    commit: 0,
  };
  const { state, outbox } = run(initialState(2, 400, { peers: [1, 3] }), [
    { type: "entry", requestId: 9, entry: withdrawal },
    entry(10, 2, { kind: "deposit", amount: 5 }),
  ]);
  assertEquals([state.balance, state.position], [335, 2]);
  assertEquals(outbox, [
    { type: "persist", entry: { entry: withdrawal, balance: 330 } },
    { type: "ack", requestId: 9, balance: 330, position: 1 },
    {
      type: "persist",
      entry: {
        entry: { view: 0, position: 2, update: { kind: "deposit", amount: 5 }, commit: 0 },
        balance: 335,
      },
    },
    { type: "ack", requestId: 10, balance: 335, position: 2 },
  ]);
});

Deno.test("a backup refuses an entry out of order, of another view, or that would take it below zero", () => {
  const backup = initialState(2, 10, { peers: [1] });
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
  const asBackup = run(initialState(2, 10, { peers: [1] }), [
    { type: "forward", requestId: 1, from: 1, update: { kind: "deposit", amount: 5 } },
  ]);
  assertEquals(kinds(asBackup.outbox), ["INVALID_ARGUMENT"]);
  const asPrimary = run(initialState(1, 10, { peers: [2] }), [entry(1, 1, { kind: "deposit", amount: 5 })]);
  assertEquals(kinds(asPrimary.outbox), ["INVALID_ARGUMENT"]);
  assertEquals(asPrimary.state.balance, 10);
});

const keyed = (
  requestId: number,
  kind: "deposit" | "withdraw",
  amount: number,
  key: string,
): BranchInput => ({
  type: "request",
  requestId,
  interface: kind,
  amount,
  key,
});

Deno.test("the primary applies a retried update once, and answers the retry as the first request", () => {
  const first = run(initialState(1, 100, { peers: [2] }), [
    keyed(1, "deposit", 10, "7/1"),
    keyed(2, "deposit", 10, "7/1"),
  ]);
  assertEquals(kinds(first.outbox), ["persist"], "the retry is not written or replicated again");
  const { outbox, state } = run(first.state, [synced, replicated(1, 2)]);
  assertEquals(
    outbox.map((output) => output.type === "reply" && [output.requestId, output.balance, output.position]),
    [
      [1, 110, 1],
      [2, 110, 1],
    ],
  );
  // Once committed, a retry is answered at once, and still not applied again.
  const later = run(state, [keyed(3, "deposit", 10, "7/1")]);
  assertEquals(later.outbox, [reply(3, "deposit", 110, 1)]);
  assertEquals([later.state.balance, later.state.position], [110, 1]);
});

Deno.test("a keyed withdrawal that failed is written down before it is answered, and a retry fails again", () => {
  const failed = run(initialState(1, 100, { peers: [] }), [keyed(1, "withdraw", 150, "7/1")]);
  assertEquals(failed.outbox, [{
    type: "persist",
    failure: {
      key: "7/1",
      decided: {
        update: { kind: "withdraw", amount: 150 },
        interface: "withdraw",
        success: false,
        balance: 100,
        position: 0,
      },
    },
  }]);
  const { outbox } = run(failed.state, [
    keyed(2, "deposit", 100, "7/2"),
    keyed(3, "withdraw", 150, "7/1"),
    synced,
  ]);
  assertEquals(outcomes(outbox), [
    [false, 100],
    [true, 200],
    [false, 100],
  ]);
});

Deno.test("the primary refuses a request id reused for a different update", () => {
  const { outbox } = run(initialState(1, 100, { peers: [] }), [
    keyed(1, "deposit", 10, "7/1"),
    keyed(2, "deposit", 11, "7/1"),
  ]);
  assertEquals(kinds(outbox), ["persist", "INVALID_ARGUMENT"]);
});

/** A log as a branch would find it on disk: deposits of 10 and 20 (keyed), then a failed withdrawal. */
const recovered = {
  entries: [
    {
      entry: { view: 0, position: 1, update: { kind: "deposit", amount: 10 }, key: "7/1", commit: 0 },
      balance: 110,
    },
    { entry: { view: 0, position: 2, update: { kind: "deposit", amount: 20 }, commit: 1 }, balance: 130 },
  ],
  failures: [{
    key: "7/2",
    decided: {
      update: { kind: "withdraw", amount: 500 },
      interface: "withdraw",
      success: false,
      balance: 130,
      position: 2,
    },
  }],
} as const;

Deno.test("initialState() recovers a log: balance, position, commit, and every keyed decision", () => {
  const state = initialState(2, 100, { peers: [1], reads: "commit", recovered: recovered });
  const balances = [0, 1, 2].map((at) => state.balances.at(at));
  assertEquals([state.balance, state.position, state.commit, balances], [130, 2, 1, [100, 110, 130]]);
  // At the primary, a retry of a request decided before the restart gets its first answer.
  const primary = run(initialState(1, 100, { peers: [2], reads: "commit", recovered: recovered }), [
    keyed(1, "deposit", 10, "7/1"),
    keyed(2, "withdraw", 500, "7/2"),
    replicated(2, 2),
    synced,
  ]);
  assertEquals(primary.state.balance, 130, "nothing applied again");
  assertEquals(outcomes(primary.outbox), [[true, 110], [false, 130]]);
});

Deno.test("a restarted primary answers no read until a majority holds all it recovered", () => {
  // Position 2 may have been committed and answered before the restart, though the log says commit 1.
  const restarted = initialState(1, 100, { peers: [2, 3], reads: "commit", recovered: recovered });
  const held = run(restarted, [query(7), { type: "readIndex", requestId: 8 }]);
  assertEquals(held.outbox, []);
  const { outbox } = run(held.state, [replicated(2, 3)]);
  assertEquals(outbox, [reply(7, "query", 130, 2), { type: "index", requestId: 8, commit: 2 }]);
});

Deno.test("initialState() refuses a log that does not add up", () => {
  const broken = { ...recovered, entries: [{ ...recovered.entries[0], balance: 111 }] };
  const error = assertThrows(
    () => initialState(2, 100, { peers: [1], reads: "commit", recovered: broken }),
    Error,
  );
  assertMatch(error.message, /the log disagrees with itself at 1/);
});

/**
 * A simulated network of cores. Messages are delivered one at a time in a random order, first in first
 * out on each link (as on a stream) and on each customer's connection. The clock is the number of
 * deliveries so far.
 */
class Network {
  readonly states: Map<number, BranchState>;
  readonly #random: Random;
  readonly #inFlight: { readonly channel: string; readonly to: number; readonly input: BranchInput }[] = [];
  /** Messages between branches, by the request id the receiver got them under. */
  readonly #sent = new Map<number, { from: number; requestId: number; position: number }>();
  #nextId = 1_000_000;
  #clock = 0;
  /** Customer replies: the request id, the reply, and the time it was delivered. */
  readonly replies = new Map<number, { reply: Extract<BranchOutput, { type: "reply" }>; at: number }>();

  /** At the primary: entries persisted and not yet on disk, sent to every backup once they are. */
  readonly #unwritten: Entry[] = [];

  constructor(seed: number, ids: readonly number[], balance: number, reads: ReadMode = "commit") {
    this.#random = new Random(seed);
    this.states = new Map(
      ids.map((id) => [id, initialState(id, balance, { peers: ids.filter((peer) => peer !== id), reads })]),
    );
  }

  get clock(): number {
    return this.#clock;
  }

  /** A customer's request (its id must be below 1,000,000) sent to branch `to`. */
  request(customer: number, to: number, input: BranchInput): void {
    this.#inFlight.push({ channel: `customer ${customer}>${to}`, to, input });
  }

  /** Delivers one message; false when none is in flight. */
  deliverOne(): boolean {
    if (this.#inFlight.length === 0) return false;
    const heads = this.#inFlight.filter((message, index) =>
      this.#inFlight.findIndex((other) => other.channel === message.channel) === index
    );
    const next = this.#random.pick(heads);
    this.#inFlight.splice(this.#inFlight.indexOf(next), 1);
    this.#clock++;
    const result = step(this.states.get(next.to) as BranchState, next.input);
    this.states.set(next.to, result.state);
    for (const output of result.outbox) this.#carry(next.to, output);
    if (next.input.type === "synced" && isPrimary(result.state)) {
      // The disk write is done (a sync covers everything persisted before it): ship what it wrote.
      for (const written of this.#unwritten.splice(0)) {
        for (const backup of result.state.backups) {
          this.#send(next.to, backup, 0, written.position, (requestId) => ({
            type: "entry",
            requestId,
            entry: written,
          }));
        }
      }
    }
    return true;
  }

  #send(from: number, to: number, requestId: number, position: number, input: (id: number) => BranchInput) {
    const id = this.#nextId++;
    this.#sent.set(id, { from, requestId, position });
    this.#inFlight.push({ channel: `${from}>${to}`, to, input: input(id) });
  }

  #answer(
    at: number,
    requestId: number,
    input: (sent: { requestId: number; position: number }) => BranchInput,
  ) {
    const sent = this.#sent.get(requestId);
    assertOk(sent !== undefined, `an answer to unknown message ${requestId}`);
    this.#inFlight.push({ channel: `${at}>${sent.from}`, to: sent.from, input: input(sent) });
  }

  #carry(at: number, output: BranchOutput): void {
    const primary = (this.states.get(at) as BranchState).primary;
    switch (output.type) {
      case "persist":
        // A backup writes before it acknowledges (nothing to simulate); the primary at the end of a turn:
        // a sync comes later, on the branch's own disk channel.
        if (!isPrimary(this.states.get(at) as BranchState)) return;
        if (output.entry !== undefined) this.#unwritten.push(output.entry.entry);
        this.#inFlight.push({ channel: `disk ${at}`, to: at, input: { type: "synced" } });
        return;
      case "forward":
        return this.#send(at, primary, output.requestId, 0, (requestId) => ({
          type: "forward",
          requestId,
          from: at,
          update: output.update,
          key: output.key,
        }));
      case "askIndex":
        return this.#send(
          at,
          primary,
          output.requestId,
          0,
          (requestId) => ({ type: "readIndex", requestId }),
        );
      case "ack":
        return this.#answer(
          at,
          output.requestId,
          ({ position }) => ({ type: "replicated", position, backup: at }),
        );
      case "index":
        return this.#answer(at, output.requestId, ({ requestId }) => ({
          type: "indexed",
          requestId,
          commit: output.commit,
          refusal: undefined,
        }));
      case "reply":
        if (output.requestId >= 1_000_000) {
          const { success, balance, position } = output;
          return this.#answer(at, output.requestId, ({ requestId }) => ({
            type: "decided",
            requestId,
            decision: { success, balance, position },
            refusal: undefined,
          }));
        }
        this.replies.set(output.requestId, { reply: output, at: this.#clock });
        return;
      case "refuse":
        throw new Error(`branch ${at} refused ${output.requestId}: ${output.refusal.message}`);
    }
  }
}

/**
 * Customers act one at a time (the sequential contract). Every reply is checked against a sequential
 * ledger, and when it is sent every replica that answers queries must agree with the ledger.
 */
function simulateSequential(seed: number, branchCount: number, operations: number): void {
  const random = new Random(seed);
  const ids = Array.from({ length: branchCount }, (_, index) => index + 1);
  // Odd seeds read locally, each query naming the last position the client was answered with.
  const reads = seed % 2 === 1 ? "local" : "commit";
  const network = new Network(seed, ids, 100, reads);
  let ledger = 100;
  let logLength = 0;
  let seen = 0;
  for (let operation = 0; operation < operations; operation++) {
    const where = `seed ${seed} (${reads} reads), operation ${operation}`;
    const kind = random.pick(["query", "deposit", "withdraw"] as const);
    const amount = kind === "query" ? 0 : random.below(120);
    const request = { type: "request", requestId: operation, interface: kind, amount, after: seen } as const;
    network.request(1, random.pick(ids), request);
    while (network.deliverOne());
    const expected = kind === "query" ? ledger : kind === "deposit" ? ledger + amount : ledger - amount;
    const success = expected >= 0 && Number.isSafeInteger(expected);
    if (success) ledger = expected;
    // Each update that succeeds takes the next position; anything else reflects the log so far.
    if (success && kind !== "query") logLength++;
    assertEquals(network.replies.get(operation)?.reply, {
      type: "reply",
      requestId: operation,
      interface: kind,
      success,
      balance: ledger,
      position: logLength,
    }, where);
    seen = logLength;
    const balances = [...network.states.values()].map((state) => state.balance);
    assertEquals(balances, ids.map(() => ledger), `${where}: replicas after the reply`);
  }
}

/**
 * Customers act at once: each sends its next request as soon as its last one is answered, while messages
 * of every request interleave at random. The whole history then goes through the same checker as real
 * runs (src/checker.ts): positions, real-time order, every reply against a replay, final states.
 */
function simulateConcurrent(seed: number, branchCount: number, customers: number, perCustomer: number): void {
  const random = new Random(seed);
  const ids = Array.from({ length: branchCount }, (_, index) => index + 1);
  const network = new Network(seed + 1, ids, 100);
  const scripts = Array.from(
    { length: customers },
    (_, customer) =>
      Array.from({ length: perCustomer }, (_, index) => {
        const kind = random.pick(["query", "deposit", "withdraw"] as const);
        return {
          requestId: customer * perCustomer + index,
          branch: random.pick(ids),
          kind,
          amount: kind === "query" ? 0 : random.below(80),
          invoke: 0,
        };
      }),
  );
  const next = scripts.map(() => 0);
  const send = (customer: number) => {
    const event = scripts[customer]?.[next[customer] as number];
    if (event === undefined) return;
    event.invoke = network.clock;
    network.request(customer, event.branch, {
      type: "request",
      requestId: event.requestId,
      interface: event.kind,
      amount: event.amount,
    });
  };
  scripts.forEach((_, customer) => send(customer));
  let answered = 0;
  while (network.deliverOne()) {
    if (network.replies.size === answered) continue;
    answered = network.replies.size;
    // Whoever was just answered sends its next request.
    scripts.forEach((script, customer) => {
      const event = script[next[customer] as number];
      if (event !== undefined && network.replies.has(event.requestId)) {
        next[customer] = (next[customer] as number) + 1;
        send(customer);
      }
    });
  }
  const requests: HistoryRequest[] = scripts.flatMap((script, customer) =>
    script.map((event, index) => {
      const answer = network.replies.get(event.requestId);
      assertOk(answer !== undefined, `seed ${seed}: request ${event.requestId} was never answered`);
      return {
        type: "request",
        customer,
        entry: customer,
        event: index,
        eventId: null,
        branch: event.branch,
        interface: event.kind,
        amount: event.amount,
        invoke: event.invoke,
        complete: answer.at,
        success: answer.reply.success,
        balance: answer.reply.balance,
        position: answer.reply.position,
      };
    })
  );
  const finals = [...network.states.values()].map((state) => ({
    type: "final" as const,
    branch: state.id,
    balance: state.balance,
    position: state.position,
  }));
  const result = checkHistory({ branches: ids.map((id) => ({ id, balance: 100 })), requests, finals });
  assertOk(result.ok, `seed ${seed}: ${!result.ok && result.violation}`);
}

/** Runs `schedule` for 200 seeds from BANK_SEED (default 1), printing the seed that fails. */
function seeded(schedule: (seed: number) => void): void {
  const base = Number(Deno.env.get("BANK_SEED") ?? 1);
  for (let seed = base; seed < base + 200; seed++) {
    try {
      schedule(seed);
    } catch (error) {
      console.error(`failing seed: ${seed} (rerun with BANK_SEED=${seed})`);
      throw error;
    }
  }
}

Deno.test("step() in a simulated network agrees with a sequential ledger (200 seeded schedules)", () => {
  seeded((seed) => simulateSequential(seed, 1 + (seed % 6), 60));
});

Deno.test("step() with concurrent customers in a simulated network passes the checker (200 seeded schedules)", () => {
  seeded((seed) => simulateConcurrent(seed, 1 + (seed % 5), 2 + (seed % 4), 12));
});

Deno.test("Timeline: each version sees only what was pushed before it, however it is pushed onto", () => {
  const one = Timeline.of(5).push(6);
  const two = one.push(7);
  const other = one.push(8);
  assertEquals([one.length, one.at(1), one.at(2)], [2, 6, undefined]);
  assertEquals([two.at(2), other.at(2), two.push(9).at(3), two.at(3)], [7, 8, 9, undefined]);
});

Deno.test("Remembered: each version sees only what was added before it, however it is added to", () => {
  const one = Remembered.empty<number>().with("a", 1);
  const two = one.with("b", 2);
  // Adding to an older version again must not show through to it or to the newer one.
  const other = one.with("c", 3);
  assertEquals([one.get("a"), one.get("b"), one.get("c")], [1, undefined, undefined]);
  assertEquals([two.get("a"), two.get("b"), two.get("c")], [1, 2, undefined]);
  assertEquals([other.get("a"), other.get("b"), other.get("c")], [1, undefined, 3]);
  assertEquals(two.with("c", 4).get("c"), 4);
});
