/**
 * Failover in the pure core: elections, the rules that keep them safe, and what a primary of an earlier
 * view does when it learns of a later one. Each test steps cores by hand; the simulator runs them together
 * under faults (tests/simulator_test.ts).
 *
 * @module
 */

import { assertEquals, assertOk, assertThrows } from "./_assert.ts";
import { failedReply, run } from "./_core.ts";
import {
  type BranchInput,
  type BranchOutput,
  type BranchState,
  type Election,
  type Entry,
  initialState,
  isPrimary,
  type Recovered,
  roleOf,
  step,
  type Update,
} from "../src/branch_core.ts";

const ELECTION: Election = { timeoutTicks: 10, heartbeatTicks: 3 };
const TICK: BranchInput = { type: "tick" };
const SYNCED: BranchInput = { type: "synced" };
const DEPOSIT_10: Update = { kind: "deposit", amount: 10 };

/** Branch `id` of branches 1..`count`, with failover, from `recovered`. */
function branch(id: number, count: number, recovered?: Recovered): BranchState {
  const peers = Array.from({ length: count }, (_, index) => index + 1).filter((peer) => peer !== id);
  return initialState(id, 100, {
    peers,
    election: ELECTION,
    ...(recovered === undefined ? {} : { recovered }),
  });
}

/** A log of `views.length` deposits of 10, the entry at each position of the view given for it. */
function log(views: readonly number[], ballot?: Recovered["ballot"]): Recovered {
  return {
    entries: views.map((view, index) => ({
      entry: { view, position: index + 1, update: DEPOSIT_10, commit: 0 },
      balance: 100 + 10 * (index + 1),
    })),
    failures: [],
    ...(ballot === undefined ? {} : { ballot }),
  };
}

/** Ticks `state` until it stands; fails if it does not within `limit` ticks. */
function untilItStands(state: BranchState, limit = 100): { state: BranchState; outbox: BranchOutput[] } {
  for (let ticks = 0; ticks < limit; ticks++) {
    const result = step(state, TICK);
    if (result.outbox.length > 0) return { state: result.state, outbox: [...result.outbox] };
    state = result.state;
  }
  throw new Error(`branch ${state.id} did not stand within ${limit} ticks`);
}

const types = (outbox: readonly BranchOutput[]) => outbox.map((output) => output.type);

/** Branch 1 of three on a first start, primary of view 0, with both backups linked at position 0. */
function linkedPrimary(): BranchState {
  return run(branch(1, 3), [
    { type: "linked", backup: 2, position: 0, view: 0, commit: 0 },
    { type: "linked", backup: 3, position: 0, view: 0, commit: 0 },
    SYNCED,
  ]).state;
}
const voteRequest = (requestId: number, from: number, view: number, position: number, lastView: number) =>
  ({ type: "voteRequest", requestId, from, view, last: { position, view: lastView } }) as const;
const votes = (outbox: readonly BranchOutput[]) =>
  outbox.flatMap((output) => output.type === "vote" ? [output.granted] : []);

Deno.test("a backup that hears from no primary stands: its own vote is persisted before it asks for others", () => {
  const backup = branch(2, 3);
  assertEquals(roleOf(backup), "backup");
  const { state, outbox } = untilItStands(backup);
  assertOk(state.quiet === 0 && state.view === 1 && state.vote === 2 && roleOf(state) === "candidate");
  assertEquals(outbox, [
    { type: "persist", ballot: { view: 1, vote: 2 } },
    { type: "role", role: "candidate", view: 1 },
    { type: "requestVotes", view: 1, last: { position: 0, view: 0 } },
  ]);
  // Heartbeats keep it from standing.
  let quiet = backup;
  for (let ticks = 0; ticks < 200; ticks++) {
    quiet = run(quiet, [TICK, {
      type: "heartbeat",
      requestId: ticks,
      from: 1,
      view: 0,
      last: { position: 0, view: 0 },
      commit: 0,
      round: 0,
    }]).state;
  }
  assertEquals(roleOf(quiet), "backup");
});

Deno.test("the timeout is at least the election's, and differs from branch to branch", () => {
  const timeouts = [2, 3, 4, 5].map((id) => branch(id, 5).timeout);
  assertOk(timeouts.every((timeout) => timeout >= 10 && timeout < 20), `${timeouts}`);
  assertOk(new Set(timeouts).size > 1, `${timeouts}`);
});

Deno.test("a candidate with a majority of the votes becomes primary and starts its view with an entry of its own", () => {
  const { state: candidate } = untilItStands(branch(3, 5, log([0, 0])));
  const halfway = run(candidate, [{ type: "voteAnswer", from: 2, view: 1, granted: true }]);
  assertEquals(roleOf(halfway.state), "candidate", "two votes of five");
  const refused = run(halfway.state, [{ type: "voteAnswer", from: 4, view: 1, granted: false }]);
  assertEquals(roleOf(refused.state), "candidate");
  const won = run(refused.state, [{ type: "voteAnswer", from: 5, view: 1, granted: true }]);
  assertOk(isPrimary(won.state));
  assertEquals(won.state.backups, [1, 2, 4, 5]);
  const noOp: Entry = { view: 1, position: 3, update: { kind: "deposit", amount: 0 }, commit: 0 };
  assertEquals(won.outbox, [
    { type: "role", role: "primary", view: 1 },
    { type: "persist", entry: { entry: noOp, balance: 120 } },
  ]);
  // It answers no read before that entry is committed: the entries before it may have been answered.
  assertEquals(won.state.readFloor, 3);
  // A branch alone wins at once.
  const alone = untilItStands(initialState(1, 100, {
    peers: [],
    election: ELECTION,
    recovered: { ...log([]), ballot: { view: 4, vote: undefined } },
  }));
  assertOk(isPrimary(alone.state) && alone.state.view === 5);
});

Deno.test("a branch votes once per view, for a log at least as up to date as its own, persisting the vote first", () => {
  const voter = branch(2, 3, log([0, 1], { view: 1, vote: undefined }));
  // Persisted before the answer, which the driver sends only once it is written.
  const first = run(voter, [voteRequest(1, 3, 2, 2, 1)]);
  assertEquals(first.outbox.slice(-2), [
    { type: "persist", ballot: { view: 2, vote: 3 } },
    { type: "vote", requestId: 1, view: 2, granted: true },
  ]);
  assertEquals(votes(run(first.state, [voteRequest(2, 1, 2, 9, 1)]).outbox), [false], "another, same view");
  assertEquals(votes(run(first.state, [voteRequest(3, 3, 2, 2, 1)]).outbox), [true], "the same again");
  // Logs that end behind the voter's: a shorter one of the same last view, any of an earlier last view.
  assertEquals(votes(run(voter, [voteRequest(4, 3, 2, 1, 1)]).outbox), [false]);
  assertEquals(votes(run(voter, [voteRequest(5, 3, 2, 9, 0)]).outbox), [false]);
  // A later last view wins over a longer log.
  assertEquals(votes(run(voter, [voteRequest(6, 3, 2, 1, 2)]).outbox), [true]);
  // A stale view gets a no, with the voter's view.
  assertEquals(run(voter, [voteRequest(7, 3, 0, 9, 1)]).outbox, [{
    type: "vote",
    requestId: 7,
    view: 1,
    granted: false,
  }]);
  // Denied for its log, the voter has still entered the later view (and persisted it, with no vote).
  const denied = run(voter, [voteRequest(8, 3, 5, 0, 0)]);
  assertEquals(denied.state.view, 5);
  assertEquals(denied.outbox.find((output) => output.type === "persist"), {
    type: "persist",
    ballot: { view: 5, vote: undefined },
  });
});

Deno.test("learning of a later view from a candidate it turns down does not restart a branch's election timer", () => {
  // Found by the fault harness: a candidate whose log was behind stood again and again, and every request
  // for votes made the others start counting again, so none of them, with the longer logs, ever stood.
  let voter = branch(2, 3, log([0, 0]));
  for (let ticks = 0; ticks < 5; ticks++) voter = run(voter, [TICK]).state;
  const denied = run(voter, [voteRequest(1, 3, 1, 0, 0)]);
  assertEquals(votes(denied.outbox), [false]);
  assertEquals([denied.state.view, denied.state.quiet], [1, 5]);
  const { state } = untilItStands(denied.state, denied.state.timeout - 5);
  assertEquals([roleOf(state), state.view], ["candidate", 2]);
});

Deno.test("a backup that heard from its primary lately, and the primary itself, keep it: no vote for another", () => {
  // On a bank's first start a backup has heard from nobody yet: it votes (found by review: a backup that
  // never heard from view 0's primary kept it against a majority that had lost it).
  const fresh = branch(2, 3);
  assertEquals(votes(run(fresh, [voteRequest(1, 3, 1, 0, 0)]).outbox), [true]);
  const heartbeat: BranchInput = {
    type: "heartbeat",
    requestId: 9,
    from: 1,
    view: 0,
    last: { position: 0, view: 0 },
    commit: 0,
    round: 0,
  };
  const heard = run(fresh, [heartbeat]).state;
  assertEquals(votes(run(heard, [voteRequest(1, 3, 1, 0, 0)]).outbox), [false]);
  let quiet = heard;
  for (let ticks = 0; ticks < ELECTION.timeoutTicks; ticks++) quiet = run(quiet, [TICK]).state;
  if (roleOf(quiet) === "backup") {
    assertEquals(votes(run(quiet, [voteRequest(1, 3, 1, 0, 0)]).outbox), [true]);
  }
  assertEquals(votes(run(branch(1, 3), [voteRequest(1, 3, 1, 0, 0)]).outbox), [false]);
});

Deno.test("a primary commits by counting disks only an entry of its own view (Raft's figure 8)", () => {
  // Branch 1 won view 2 with a log ending in an entry of view 1 that it cannot tell is committed.
  const { state: candidate } = untilItStands(branch(1, 3, log([1], { view: 1, vote: undefined })));
  const primary = run(candidate, [{ type: "voteAnswer", from: 2, view: 2, granted: true }, SYNCED]);
  assertOk(isPrimary(primary.state) && primary.state.position === 2);
  // Backup 3 holds position 1 (of view 1) and no more: a majority holds it, and it is not committed yet.
  const one = run(primary.state, [{ type: "linked", backup: 3, position: 1, view: 1, commit: 0 }]);
  assertEquals(one.state.commit, 0);
  // Once backup 3 holds the primary's own entry, both are committed.
  const two = run(one.state, [{ type: "replicated", backup: 3, position: 2 }]);
  assertEquals(two.state.commit, 2);
});

Deno.test("a backup drops entries that conflict with the primary's, acknowledges those it holds, and never drops a committed one", () => {
  // Entries 2 and 3 of view 1 came from a primary that was replaced before they were committed.
  const backup = branch(2, 3, log([1, 1, 1], { view: 1, vote: undefined }));
  const fromNew = (requestId: number, position: number, view: number, commit = 0): BranchInput => ({
    type: "entry",
    requestId,
    entry: { view, position, update: DEPOSIT_10, commit },
    from: 3,
    view: 2,
  });
  const again = run(backup, [fromNew(1, 1, 1, 1)]);
  assertEquals(again.outbox.at(-1), { type: "ack", requestId: 1, balance: 130, position: 1 }, "held already");
  assertEquals([again.state.position, again.state.commit, again.state.primary, again.state.view], [
    3,
    1,
    3,
    2,
  ]);
  const replaced = run(again.state, [fromNew(2, 2, 2)]);
  assertEquals(replaced.outbox.filter((output) => output.type === "persist").slice(-2), [
    { type: "persist", truncate: 1 },
    {
      type: "persist",
      entry: { entry: { view: 2, position: 2, update: DEPOSIT_10, commit: 0 }, balance: 120 },
    },
  ]);
  assertEquals([replaced.state.position, replaced.state.balance, replaced.state.views.at(2)], [2, 120, 2]);
  // Position 1 is committed here: an entry that conflicts with it is a broken protocol, not a repair.
  assertThrows(() => run(again.state, [fromNew(3, 1, 2)]), Error);
});

Deno.test("a backup refuses a message of an earlier view than its own, naming its view", () => {
  const backup = branch(2, 3, log([], { view: 4, vote: undefined }));
  for (
    const input of [
      {
        type: "entry",
        requestId: 1,
        entry: { view: 3, position: 1, update: DEPOSIT_10, commit: 0 },
        from: 1,
        view: 3,
      },
      {
        type: "heartbeat",
        requestId: 1,
        from: 1,
        view: 3,
        last: { position: 0, view: 0 },
        commit: 0,
        round: 0,
      },
      { type: "link", requestId: 1, from: 1, view: 3 },
    ] as const
  ) {
    const { state, outbox } = run(backup, [input]);
    assertEquals(outbox.length, 1, input.type);
    const [refusal] = outbox;
    assertOk(refusal?.type === "refuse" && refusal.refusal.code === "ABORTED" && refusal.refusal.view === 4);
    assertEquals(state, backup);
  }
});

Deno.test("a primary that learns of a later view steps down, refusing what it has not answered", () => {
  const primary = run(linkedPrimary(), [
    { type: "request", requestId: 1, interface: "deposit", amount: 10, key: "1/1" },
    { type: "request", requestId: 2, interface: "withdraw", amount: 500, key: "1/2" },
    { type: "request", requestId: 3, interface: "query", amount: 0 },
    SYNCED,
  ]).state;
  assertEquals([primary.waiting.length, primary.reading.length], [2, 1]);
  const { state, outbox } = run(primary, [{ type: "view", view: 3 }]);
  assertEquals(roleOf(state), "backup");
  assertEquals([state.view, state.primary, state.waiting.length, state.reading.length], [3, undefined, 0, 0]);
  assertEquals(
    outbox.flatMap((output) => output.type === "refuse" ? [[output.requestId, output.refusal.code]] : []),
    [[1, "UNAVAILABLE"], [2, "UNAVAILABLE"], [3, "UNAVAILABLE"]],
  );
  // Both keyed updates are entries of its log, the failure one that changes nothing: a later primary that
  // holds them answers a retry as this one would have; one that does not decides it once.
  assertEquals([state.decided.get("1/1")?.success, state.decided.get("1/2")?.success], [true, false]);
  // Without a primary, a backup refuses what needs one, so that its customer tries again.
  const forwarded = run(state, [{ type: "request", requestId: 4, interface: "deposit", amount: 5 }]);
  assertEquals(forwarded.outbox.map((output) => output.type === "refuse" && output.refusal.code), [
    "UNAVAILABLE",
  ]);
});

Deno.test("a primary answers a read, or a failed update, only once a majority confirms a round sent after it", () => {
  const primary = linkedPrimary();
  const asked = run(primary, [
    { type: "request", requestId: 1, interface: "withdraw", amount: 500 },
    { type: "request", requestId: 2, interface: "query", amount: 0 },
    { type: "request", requestId: 3, interface: "query", amount: 0 },
  ]);
  // Round 1 goes out for the first; the others came after it left, and wait for the next, together.
  assertEquals(types(asked.outbox), ["heartbeat"]);
  assertEquals(asked.state.round, 1);
  const stale = run(asked.state, [{ type: "confirmed", backup: 2, round: 0 }]);
  assertEquals(types(stale.outbox), []);
  const first = run(asked.state, [{ type: "confirmed", backup: 3, round: 1 }]);
  assertEquals(types(first.outbox), ["heartbeat", "reply"]);
  assertEquals(first.outbox.at(-1), failedReply(1, "withdraw", 100, 0));
  assertEquals(first.state.round, 2);
  const second = run(first.state, [{ type: "confirmed", backup: 2, round: 2 }]);
  assertEquals(second.outbox.map((output) => output.type === "reply" && output.requestId), [2, 3]);
});

Deno.test("a restarted branch keeps its view and vote, and is a backup; only a first start makes the lowest id primary", () => {
  const again = branch(1, 3, log([0, 2], { view: 2, vote: 3 }));
  assertEquals([again.view, again.vote, again.primary, roleOf(again)], [2, 3, undefined, "backup"]);
  assertEquals(again.views.at(2), 2);
  // The others may have elected another meanwhile: even in view 0, a disk with entries makes a backup.
  assertEquals(roleOf(branch(1, 3, log([0]))), "backup");
  assertOk(isPrimary(branch(1, 3)));
  // Without failover the lowest id is the primary for good, restarted or not.
  assertOk(isPrimary(initialState(1, 100, { peers: [2, 3], recovered: log([0]) })));
});

Deno.test("a keyed failure is an entry of the log: answered once committed, and a retry at a later primary fails again", () => {
  // The primary logs the failure (changing nothing), and answers once a backup holds it too.
  const primary = run(linkedPrimary(), [
    { type: "request", requestId: 1, interface: "withdraw", amount: 150, key: "c/1" },
    SYNCED,
  ]);
  const failure: Entry = {
    view: 0,
    position: 1,
    update: { kind: "withdraw", amount: 150 },
    key: "c/1",
    commit: 0,
    failed: true,
  };
  assertEquals(primary.outbox.filter(({ type }) => type !== "heartbeat"), [
    { type: "persist", entry: { entry: failure, balance: 100 } },
  ]);
  const answered = run(primary.state, [{ type: "replicated", backup: 2, position: 1 }]);
  assertEquals(answered.outbox, [failedReply(1, "withdraw", 100, 0)]);
  // Found by review: branch 3 becomes primary with that entry in its log, and takes a deposit; a retry (or
  // a late duplicate) of c/1 reaching it must fail again, not be decided anew against the grown balance.
  const recovered: Recovered = { entries: [{ entry: failure, balance: 100 }], failures: [] };
  const { state: candidate } = untilItStands(
    branch(3, 3, { ...recovered, ballot: { view: 1, vote: undefined } }),
  );
  const leading = run(candidate, [
    { type: "voteAnswer", from: 2, view: 2, granted: true },
    SYNCED,
    { type: "replicated", backup: 2, position: 2 },
    { type: "request", requestId: 5, interface: "deposit", amount: 100, key: "d/1" },
    SYNCED,
    { type: "replicated", backup: 2, position: 3 },
  ]);
  assertEquals([leading.state.balance, leading.state.commit], [200, 3]);
  const retried = run(leading.state, [
    { type: "request", requestId: 6, interface: "withdraw", amount: 150, key: "c/1" },
  ]);
  assertEquals(retried.outbox, [failedReply(6, "withdraw", 100, 0)]);
  assertEquals(retried.state.balance, 200);
  // A backup that applies the entry changes nothing, and records the answer too.
  const backup = run(branch(2, 3), [{ type: "entry", requestId: 7, entry: failure, from: 1, view: 0 }]);
  assertEquals([backup.state.balance, backup.state.position, backup.state.decided.get("c/1")?.success], [
    100,
    1,
    false,
  ]);
});

Deno.test("view 0's primary by rule takes no update until a majority has linked: it may be the lowest id restarted empty", () => {
  const deposit: BranchInput = { type: "request", requestId: 1, interface: "deposit", amount: 5, key: "1/1" };
  const alone = run(branch(1, 3), [SYNCED, deposit]);
  assertEquals(alone.outbox.map((output) => output.type === "refuse" && output.refusal.code), [
    "UNAVAILABLE",
  ]);
  assertEquals(alone.state.position, 0);
  const one = run(branch(1, 3), [
    { type: "linked", backup: 3, position: 0, view: 0, commit: 0 },
    SYNCED,
    deposit,
  ]);
  assertEquals(types(one.outbox), ["persist"], "itself and one backup of three");
});
