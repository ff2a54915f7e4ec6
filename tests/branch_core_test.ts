import { assertEquals, assertMatch, assertOk, assertThrows } from "./_assert.ts";
import { failedReply, reply, run } from "./_core.ts";
import {
  type BranchInput,
  type BranchOutput,
  type Entry,
  initialState,
  isPrimary,
  Remembered,
  sendAtOnce,
  Timeline,
  type Update,
} from "../src/branch_core.ts";

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

/** An entry of `view` from branch 1, the primary of that view. */
const entry = (requestId: number, position: number, update: Update, view = 0, commit = 0): BranchInput => ({
  type: "entry",
  requestId,
  entry: { view, position, update, commit },
  from: 1,
  view,
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

Deno.test("with local reads, a branch answers from its replica once its disk holds what the client saw", () => {
  // The deposit is on the disk of each, and committed at neither: a read at the commit would answer 400.
  const primary = run(initialState(1, 400, { peers: [2], reads: "local" }), [
    deposit(1, 10),
    synced,
    query(7, 1),
  ]);
  assertEquals(primary.outbox.at(-1), reply(7, "query", 410, 1));
  const upToDate = run(initialState(2, 400, { peers: [1], reads: "local" }), [
    entry(1, 1, { kind: "deposit", amount: 10 }),
    synced,
    query(7, 1),
  ]);
  assertEquals(upToDate.outbox.at(-1), reply(7, "query", 410, 1));
});

Deno.test("with local reads, the primary never answers with an update that is not on its disk yet", () => {
  // BranchNode writes what a turn of its event loop decided when the turn ends. A query in between reads
  // what is on the disk, and one whose client saw the deposit waits for it: were either answered with
  // 410, a crash before the write would take back a balance a client has seen.
  const decided = run(initialState(1, 400, { peers: [2, 3], reads: "local", propagation: "async" }), [
    deposit(1, 10),
    query(7),
    query(8, 1),
  ]);
  assertEquals(decided.outbox.filter(({ type }) => type === "reply"), [reply(7, "query", 400, 0)]);
  const written = run(decided.state, [synced]);
  assertEquals(written.outbox, [reply(1, "deposit", 410, 1), reply(8, "query", 410, 1)]);
});

Deno.test("with local reads, a backup behind what the client saw asks the primary, then waits to apply it", () => {
  const behind = run(initialState(2, 400, { peers: [1], reads: "local" }), [query(7, 1)]);
  assertEquals(behind.outbox, [{ type: "askIndex", requestId: 7 }], "position 1 has not arrived yet");
  const indexed = run(behind.state, [{
    type: "indexed",
    requestId: 7,
    commit: 1,
    end: 1,
    refusal: undefined,
  }]);
  assertEquals(indexed.outbox, [], "the primary's commit position is 1, not applied here yet");
  const backup = run(indexed.state, [entry(1, 1, { kind: "deposit", amount: 10 }), synced]);
  assertEquals(backup.outbox.at(-1), reply(7, "query", 410, 1));
});

Deno.test("with async propagation the primary answers on its own disk; a read that asks it waits for what its client saw", () => {
  const primary = run(initialState(1, 400, { peers: [2, 3], propagation: "async" }), [
    deposit(1, 10),
    synced,
  ]);
  assertEquals(primary.outbox.at(-1), reply(1, "deposit", 410, 1), "before any backup has it");
  assertEquals(primary.state.commit, 0);
  // A backup asked by a client that saw position 1 asks the primary, whose commit position is still 0.
  const backup = run(initialState(3, 400, { peers: [1, 2], reads: "local", propagation: "async" }), [
    query(7, 1),
    { type: "indexed", requestId: 7, commit: 0, end: 1, refusal: undefined },
  ]);
  assertEquals(backup.outbox, [{ type: "askIndex", requestId: 7 }], "position 1 is not applied here yet");
  const applied = run(backup.state, [entry(1, 1, { kind: "deposit", amount: 10 }), synced]);
  assertEquals(applied.outbox.at(-1), reply(7, "query", 410, 1));
  // The primary, reading at its commit position, reads at least what the client saw.
  const own = run(primary.state, [query(8, 1)]);
  assertEquals(own.outbox.at(-1), reply(8, "query", 410, 1));
});

Deno.test("a query naming a position past the end of the primary's log is refused, at a backup or the primary", () => {
  const backup = run(initialState(2, 400, { peers: [1], reads: "local" }), [
    query(7, 9),
    { type: "indexed", requestId: 7, commit: 0, end: 1, refusal: undefined },
  ]);
  assertEquals(kinds(backup.outbox), ["askIndex", "INVALID_ARGUMENT"]);
  assertEquals(backup.state.reading, [], "nothing left waiting");
  const primary = run(initialState(1, 400, { peers: [2] }), [query(7, 1)]);
  assertEquals(kinds(primary.outbox), ["INVALID_ARGUMENT"]);
  assertMatch(
    (primary.outbox[0] as Extract<BranchOutput, { type: "refuse" }>).refusal.message,
    /seen position 1, past the end of the log \(0\)/,
  );
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
    end: 2,
    refusal: undefined,
  }]);
  assertEquals(outbox, [reply(7, "query", 410, 1)]);
  assertEquals([state.commit, state.balances.at(0), state.balances.at(2)], [1, 400, 415]);
});

Deno.test("a backup behind the primary's commit position answers once it gets there; a failed read index is refused", () => {
  const asked = run(initialState(2, 400, { peers: [1] }), [query(7), query(8)]);
  const held = run(asked.state, [
    { type: "indexed", requestId: 7, commit: 1, end: 1, refusal: undefined },
    {
      type: "indexed",
      requestId: 8,
      commit: undefined,
      end: undefined,
      refusal: { code: "UNAVAILABLE", message: "gone" },
    },
  ]);
  assertEquals(kinds(held.outbox), ["UNAVAILABLE"], "query 7 waits for position 1");
  const { outbox } = run(held.state, [entry(1, 1, { kind: "withdraw", amount: 30 })]);
  assertEquals(outbox.at(-1), reply(7, "query", 370, 1));
});

Deno.test("the primary answers a read index with its commit position and its log's end; a backup refuses one", () => {
  const primary = initialState(1, 400, { peers: [2] });
  assertEquals(run(primary, [deposit(1, 10), synced, { type: "readIndex", requestId: 3 }]).outbox.at(-1), {
    type: "index",
    requestId: 3,
    commit: 0,
    end: 1,
    view: 0,
  });
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
  const back = run(three.state, [{ type: "linked", position: 9, view: 0, commit: 0, backup: 5 }]);
  assertEquals(back.state.matched.get(5), 0, "a log beyond the primary's agrees with it only where known");
  const along = run(back.state, [{ type: "linked", position: 1, view: 0, commit: 0, backup: 5 }]);
  assertEquals(along.state.matched.get(5), 1, "the same view at the same position: the same log up to it");
  const emptied = run(along.state, [{ type: "linked", position: 0, view: 0, commit: 0, backup: 2 }]);
  assertEquals([emptied.state.matched.get(2), emptied.state.commit], [0, 1], "a commit is never undone");
});

Deno.test("new entries go at once to the backups a commit or a customer waits on, not to every backup", () => {
  const five = initialState(1, 400, { peers: [2, 3, 4, 5] });
  assertEquals(
    sendAtOnce(five, { live: [2, 3, 4, 5], asking: new Set() }),
    new Set([2, 3]),
    "a majority is this and two backups",
  );
  // Those furthest along make the quorum: a backup that stopped answering falls behind and out of it.
  const { state } = run(five, [deposit(1, 10), deposit(2, 10), synced, replicated(2, 5), replicated(1, 4)]);
  assertEquals(sendAtOnce(state, { live: [2, 3, 4, 5], asking: new Set() }), new Set([5, 4]));
  assertEquals(
    sendAtOnce(state, { live: [2, 3, 4, 5], asking: new Set([2]) }),
    new Set([5, 4, 2]),
    "2 waits on a forward",
  );
  assertEquals(sendAtOnce(state, { live: [2, 3, 4], asking: new Set() }), new Set([4, 2]), "5 is down");
  assertEquals(
    sendAtOnce(state, { live: [3], asking: new Set() }),
    new Set([3]),
    "no majority live: send to what there is",
  );
  const three = initialState(1, 400, { peers: [2, 3] });
  assertEquals(sendAtOnce(three, { live: [2, 3], asking: new Set() }), new Set([2]));
});

Deno.test("a failed withdrawal is answered only once what it was decided after is committed", () => {
  const held = run(initialState(1, 100, { peers: [2] }), [deposit(1, 10), withdraw(2, 500)]);
  assertEquals(kinds(held.outbox), ["persist"]);
  const { outbox } = run(held.state, [synced, replicated(1, 2)]);
  assertEquals(outbox.at(-1), failedReply(2, "withdraw", 110, 1));
});

Deno.test("the primary fails a withdrawal larger than its balance: nothing changes, is written or replicated", () => {
  const { state, outbox } = run(initialState(1, 100, { peers: [2, 3] }), [withdraw(1, 101)]);
  assertEquals([state.balance, state.position], [100, 0]);
  assertEquals(outbox, [failedReply(1, "withdraw", 100, 0)]);
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
  assertEquals(outbox, [failedReply(1, "deposit", Number.MAX_SAFE_INTEGER - 1, 0)]);
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
  assertEquals(first.outbox[0], failedReply(4, "withdraw", 50, 0));
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
    { type: "entry", requestId: 9, entry: withdrawal, from: 1, view: 0 },
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

Deno.test("a backup refuses an entry out of order, of an earlier view, or that would take it below zero", () => {
  const backup = initialState(2, 10, { peers: [1] });
  const inView2 = initialState(2, 10, {
    peers: [1],
    recovered: { entries: [], failures: [], ballot: { view: 2, vote: 1 } },
  });
  const deposit5: Update = { kind: "deposit", amount: 5 };
  for (
    const [start, input] of [
      [backup, entry(1, 2, deposit5)],
      [inView2, entry(1, 1, deposit5, 1)],
      [backup, entry(1, 1, { kind: "withdraw", amount: 70 })],
    ] as const
  ) {
    const { state, outbox } = run(start, [input]);
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
  assertEquals(outbox, [reply(7, "query", 130, 2), {
    type: "index",
    requestId: 8,
    commit: 2,
    end: 2,
    view: 0,
  }]);
});

Deno.test("initialState() refuses a log that does not add up", () => {
  const broken = { ...recovered, entries: [{ ...recovered.entries[0], balance: 111 }] };
  const error = assertThrows(
    () => initialState(2, 100, { peers: [1], reads: "commit", recovered: broken }),
    Error,
  );
  assertMatch(error.message, /the log disagrees with itself at 1/);
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
