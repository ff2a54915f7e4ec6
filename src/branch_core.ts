/**
 * The branch protocol as a deterministic state machine: no sockets, timers or clocks.
 *
 * A driver feeds it inputs (a customer's request, a message from another branch, the outcome of a message
 * it sent) through {@linkcode step}, and carries out the outbox it returns: replies to send and messages to
 * other branches. Because every effect is a value in the outbox, the protocol is tested without a network,
 * and a simulator can drive any interleaving of inputs.
 *
 * The protocol of this version: one branch, the **primary** (the lowest id), orders every update; the
 * others are **backups**. A backup forwards each deposit or withdrawal it receives to the primary. The
 * primary decides it against its balance, gives it the next **log position**, applies it, and sends it as
 * an **entry** to every backup at once. Each backup applies entries strictly in position order.
 *
 * An entry is **committed** once every backup has applied it and every entry before it. The primary
 * answers an update (the customer, or the backup that forwarded it) only once the update is committed,
 * and a failed update once everything it was decided against is. A query is answered at the primary's
 * commit position: the primary answers at once; a backup first asks the primary for that position (a
 * **read index**), and answers with its own balance there. So everything a customer was told has happened
 * is in every later answer, whichever branch gives it: the replies are linearizable, with concurrent
 * customers too. The safety argument, rule by rule, is in the README's protocol section.
 *
 * @module
 */

import { assert } from "./assert.ts";
import type { Interface } from "./input.ts";

/** A change to the balance, as it is ordered and replicated. */
export interface Update {
  readonly kind: "deposit" | "withdraw";
  /** Units, a safe non-negative integer. */
  readonly amount: number;
}

/** One update at its place in the log. */
export interface Entry {
  /**
   * Which branch is primary. Always 0 in this version, where the primary is fixed; carried on every entry
   * so that a later version can change primaries without mixing up two primaries' entries.
   */
  readonly view: number;
  /** 1, 2, 3, ...: the order in which every replica applies updates. */
  readonly position: number;
  readonly update: Update;
  /** The primary's commit position when it sent the entry; a backup forgets older balances by it. */
  readonly commit: number;
}

/** The gRPC status a refusal travels as. */
export type RefusalCode = "INVALID_ARGUMENT" | "UNAVAILABLE" | "ABORTED" | "DEADLINE_EXCEEDED" | "INTERNAL";

/** Why an inbound call, or a message this branch sent, did not succeed. */
export interface Refusal {
  readonly code: RefusalCode;
  readonly message: string;
}

/** How the primary decided an update, as it answers the customer or the forwarding backup. */
export interface Decision {
  readonly success: boolean;
  /** The primary's balance right after the update (unchanged when it failed). */
  readonly balance: number;
  /** See the `position` of a reply. */
  readonly position: number;
}

/** What the driver feeds the core. `requestId` is the driver's handle for an inbound call. */
export type BranchInput =
  /**
   * A customer's request, already decoded and well-formed. `key` names it among all requests (from the
   * customer's id and its own request id), so that a retry is recognised; undefined when the client
   * gives none.
   */
  | {
    readonly type: "request";
    readonly requestId: number;
    readonly interface: Interface;
    readonly amount: number;
    readonly key?: string | undefined;
  }
  /** At the primary: backup `from` forwards a customer's update. */
  | {
    readonly type: "forward";
    readonly requestId: number;
    readonly from: number;
    readonly update: Update;
    readonly key?: string | undefined;
  }
  /** At the primary: a backup asks for the commit position, to answer a query at. */
  | { readonly type: "readIndex"; readonly requestId: number }
  /** At a backup: the primary sends the next entry of the log. */
  | { readonly type: "entry"; readonly requestId: number; readonly entry: Entry }
  /** At the primary: `backup` applied the entry at `position`, or failed to. */
  | {
    readonly type: "replicated";
    readonly position: number;
    readonly backup: number;
    readonly refusal: Refusal | undefined;
  }
  /** At a backup: the primary decided the update forwarded for `requestId`, or the forward failed. */
  | {
    readonly type: "decided";
    readonly requestId: number;
    readonly decision: Decision | undefined;
    readonly refusal: Refusal | undefined;
  }
  /** At a backup: the primary's commit position for the query `requestId`, or why there is none. */
  | {
    readonly type: "indexed";
    readonly requestId: number;
    readonly commit: number | undefined;
    readonly refusal: Refusal | undefined;
  };

/** What the core asks the driver to do. */
export type BranchOutput =
  /** Answer the request or forward `requestId`. */
  | {
    readonly type: "reply";
    readonly requestId: number;
    readonly interface: Interface;
    readonly success: boolean;
    readonly balance: number;
    /**
     * The log position the reply reflects: for an update that succeeded, its own position; for a failed
     * update, the last position it was decided after; for a query, the commit position it was read at.
     */
    readonly position: number;
  }
  /** Answer the entry `requestId`: applied, leaving this replica at `balance`. */
  | { readonly type: "ack"; readonly requestId: number; readonly balance: number; readonly position: number }
  /** Answer the read index request `requestId` with the commit position. */
  | { readonly type: "index"; readonly requestId: number; readonly commit: number }
  /** Answer the inbound call `requestId` with an error status. */
  | { readonly type: "refuse"; readonly requestId: number; readonly refusal: Refusal }
  /** At the primary: send `entry` to backup `to`; feed its outcome back as a `replicated` input. */
  | { readonly type: "replicate"; readonly to: number; readonly entry: Entry }
  /** At a backup: send `update` to the primary; feed its outcome back as a `decided` input. */
  | {
    readonly type: "forward";
    readonly requestId: number;
    readonly update: Update;
    readonly key: string | undefined;
  }
  /** At a backup: ask the primary for its commit position; feed the answer back as `indexed`. */
  | { readonly type: "askIndex"; readonly requestId: number };

/** At the primary: an answer waiting for the commit position to reach `position`. */
export interface Waiting {
  readonly position: number;
  /** The request or forward to answer. */
  readonly requestId: number;
  readonly interface: Interface;
  readonly success: boolean;
  /** The primary's balance right after `position`. */
  readonly balance: number;
}

/**
 * How a branch answers queries. `commit`: at the primary's commit position, asking the primary for it at
 * a backup; linearizable whatever the clients do. `local`: from this replica as it stands; linearizable
 * only while one client acts, one request at a time (then nothing is in flight when a query comes, and
 * every update answered is applied everywhere), which is how main runs customers unless `--concurrent`.
 */
export type ReadMode = "commit" | "local";

/**
 * An immutable map that only grows, for the primary's record of decided requests, which grows with every
 * keyed update: copying it on each one, as the rest of the state is copied, would make a run quadratic.
 * Versions share one underlying Map, which holds each entry with the version that added it; a version sees
 * only the entries added before it. Adding to the newest version appends in place; adding to an older
 * one (a test stepping the same state twice, say) copies what that version sees first.
 */
export class Remembered<V> {
  readonly #entries: Map<string, { readonly value: V; readonly added: number }>;
  /** How many entries this version sees. */
  readonly size: number;

  private constructor(entries: Map<string, { readonly value: V; readonly added: number }>, size: number) {
    this.#entries = entries;
    this.size = size;
  }

  static empty<V>(): Remembered<V> {
    return new Remembered(new Map(), 0);
  }

  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    return entry !== undefined && entry.added < this.size ? entry.value : undefined;
  }

  /** This map with `key` set to `value`; `key` must not be in it yet. */
  with(key: string, value: V): Remembered<V> {
    assert(this.get(key) === undefined, `${key} is remembered already`);
    const entries = this.#entries.size === this.size
      ? this.#entries
      : new Map([...this.#entries].filter(([, entry]) => entry.added < this.size));
    entries.set(key, { value, added: this.size });
    return new Remembered(entries, this.size + 1);
  }
}

/** A keyed update as the primary decided it. */
export interface Decided extends Omit<Waiting, "requestId"> {
  readonly update: Update;
}

/** A branch's whole protocol state. */
export interface BranchState {
  readonly id: number;
  readonly reads: ReadMode;
  /** The primary's id: the lowest id of all the branches. */
  readonly primary: number;
  /** The view this branch is in (see {@linkcode Entry.view}). */
  readonly view: number;
  /** At the primary, every other branch; at a backup, none. */
  readonly backups: readonly number[];
  /** Units, a safe non-negative integer. */
  readonly balance: number;
  /** The position of the last entry applied here; 0 before the first. */
  readonly position: number;
  /**
   * At the primary, the last position every replica has applied, with every one before it; at a backup,
   * the last such position it has heard of. Never more than `position`.
   */
  readonly commit: number;
  /** This replica's balance after each position from `commit` to `position`. */
  readonly balances: ReadonlyMap<number, number>;
  /** At the primary: for each position not yet committed, the backups that have not applied it. */
  readonly awaiting: ReadonlyMap<number, ReadonlySet<number>>;
  /** At the primary: positions whose replication failed; the commit position never passes them. */
  readonly failed: ReadonlySet<number>;
  /** At the primary: answers held until the commit position reaches theirs, in position order. */
  readonly waiting: readonly Waiting[];
  /**
   * At the primary: every keyed update decided so far, with its answer, so that a retry gets the same
   * answer and is not applied again (exactly once).
   */
  readonly decided: Remembered<Decided>;
  /** At a backup: forwarded updates waiting for the primary's decision, by request id. */
  readonly forwarded: ReadonlyMap<number, Interface>;
}

/** The result of one step. */
export interface Step {
  readonly state: BranchState;
  readonly outbox: readonly BranchOutput[];
}

/** The primary of a bank with these branch ids: the lowest. */
export function primaryOf(ids: readonly number[]): number {
  assert(ids.length > 0, "a bank has at least one branch");
  return Math.min(...ids);
}

/** Branch `id` with `balance` units and the given peers (every other branch), before any update. */
export function initialState(
  id: number,
  balance: number,
  peers: readonly number[],
  reads: ReadMode = "commit",
): BranchState {
  assert(
    Number.isSafeInteger(balance) && balance >= 0,
    `balance ${balance} is not a safe non-negative integer`,
  );
  assert(!peers.includes(id), `branch ${id} lists itself as a peer`);
  assert(new Set(peers).size === peers.length, `branch ${id} lists a peer twice`);
  const primary = primaryOf([id, ...peers]);
  return {
    id,
    reads,
    primary,
    view: 0,
    backups: id === primary ? [...peers] : [],
    balance,
    position: 0,
    commit: 0,
    balances: new Map([[0, balance]]),
    awaiting: new Map(),
    failed: new Set(),
    waiting: [],
    decided: Remembered.empty(),
    forwarded: new Map(),
  };
}

/** Whether `state` is the primary's. */
export function isPrimary(state: BranchState): boolean {
  return state.id === state.primary;
}

/** Feeds one input to the branch; returns its next state and what to send. */
export function step(state: BranchState, input: BranchInput): Step {
  switch (input.type) {
    case "request":
      if (input.interface === "query") return query(state, input.requestId);
      return isPrimary(state)
        ? sequence(state, input.requestId, { kind: input.interface, amount: input.amount }, input.key)
        : forward(state, input.requestId, { kind: input.interface, amount: input.amount }, input.key);
    case "forward":
      if (!isPrimary(state)) return notPrimary(state, input.requestId);
      assert(state.backups.includes(input.from), `branch ${input.from} is not a backup`);
      return sequence(state, input.requestId, input.update, input.key);
    case "readIndex":
      if (!isPrimary(state)) return notPrimary(state, input.requestId);
      return { state, outbox: [{ type: "index", requestId: input.requestId, commit: state.commit }] };
    case "entry":
      return applyEntry(state, input.requestId, input.entry);
    case "replicated":
      return replicated(state, input.position, input.backup, input.refusal);
    case "decided":
      return answerForwarded(state, input.requestId, input.decision, input.refusal);
    case "indexed":
      return answerQuery(state, input.requestId, input.commit, input.refusal);
  }
}

/** The balance after `update`, or undefined when the update must be refused. */
export function applied(balance: number, update: Update): number | undefined {
  const next = update.kind === "deposit" ? balance + update.amount : balance - update.amount;
  return next >= 0 && Number.isSafeInteger(next) ? next : undefined;
}

/**
 * A query. The primary answers at its commit position: everything committed has been answered to nobody
 * yet or is in every replica, and nothing after it has been answered to anybody (replies wait for the
 * commit), so no later answer anywhere can reflect less. A backup asks the primary for that position.
 */
function query(state: BranchState, requestId: number): Step {
  if (state.reads === "local") {
    return { state, outbox: [reply(requestId, "query", true, state.balance, state.position)] };
  }
  if (!isPrimary(state)) return { state, outbox: [{ type: "askIndex", requestId }] };
  return { state, outbox: [reply(requestId, "query", true, balanceAt(state, state.commit), state.commit)] };
}

/** At the primary: decide `update` against everything sequenced so far, and sequence it if it succeeds. */
function sequence(state: BranchState, requestId: number, update: Update, key: string | undefined): Step {
  const earlier = key === undefined ? undefined : state.decided.get(key);
  if (earlier !== undefined) {
    // A retry (or a duplicate): the first answer again, once it may be given, and nothing applied twice.
    if (earlier.update.kind !== update.kind || earlier.update.amount !== update.amount) {
      const message =
        `request ${key} was first a ${earlier.update.kind} of ${earlier.update.amount}, now a ` +
        `${update.kind} of ${update.amount}`;
      return refuse(state, requestId, "INVALID_ARGUMENT", message);
    }
    const { update: _, ...answer } = earlier;
    return release({ ...state, waiting: [...state.waiting, { ...answer, requestId }] }, []);
  }
  if (state.failed.size > 0) {
    const message = `position ${
      Math.min(...state.failed)
    } failed to replicate, so nothing after it can commit`;
    return refuse(state, requestId, "UNAVAILABLE", message);
  }
  const balance = applied(state.balance, update);
  if (balance === undefined) {
    // Decided once, here, in log order: a failed update changes nothing and takes no position. Its answer
    // reflects every position it was decided after, so it too waits for them to be committed.
    const answer = {
      position: state.position,
      requestId,
      interface: update.kind,
      success: false,
      balance: state.balance,
    };
    const decided = remember(state, key, answer, update);
    return release({ ...state, waiting: [...state.waiting, answer], decided }, []);
  }
  const position = state.position + 1;
  const balances = new Map(state.balances).set(position, balance);
  const awaiting = state.backups.length === 0
    ? state.awaiting
    : new Map(state.awaiting).set(position, new Set(state.backups));
  const answer = { position, requestId, interface: update.kind, success: true, balance };
  const next = {
    ...state,
    balance,
    position,
    balances,
    awaiting,
    waiting: [...state.waiting, answer],
    decided: remember(state, key, answer, update),
  };
  const entry: Entry = { view: state.view, position, update, commit: state.commit };
  return release(next, state.backups.map((to): BranchOutput => ({ type: "replicate", to, entry })));
}

/** The primary's record of keyed decisions, with `answer` to `update` added under `key` (if any). */
function remember(state: BranchState, key: string | undefined, answer: Waiting, update: Update) {
  if (key === undefined) return state.decided;
  const { requestId: _, ...decided } = answer;
  return state.decided.with(key, { ...decided, update });
}

/** At a backup: hand `update` to the primary and wait for its decision. */
function forward(state: BranchState, requestId: number, update: Update, key: string | undefined): Step {
  assert(!state.forwarded.has(requestId), `request ${requestId} is already forwarded`);
  const forwarded = new Map(state.forwarded);
  forwarded.set(requestId, update.kind);
  return { state: { ...state, forwarded }, outbox: [{ type: "forward", requestId, update, key }] };
}

/** At a backup: apply the primary's next entry, which must follow the last one applied here. */
function applyEntry(state: BranchState, requestId: number, entry: Entry): Step {
  if (isPrimary(state)) {
    return refuse(state, requestId, "INVALID_ARGUMENT", `branch ${state.id} is the primary`);
  }
  if (entry.view !== state.view) {
    const message = `entry of view ${entry.view}, but branch ${state.id} is in view ${state.view}`;
    return refuse(state, requestId, "ABORTED", message);
  }
  if (entry.position !== state.position + 1) {
    const message = `entry at position ${entry.position}, but branch ${state.id} expects position ` +
      `${state.position + 1}`;
    return refuse(state, requestId, "ABORTED", message);
  }
  const balance = applied(state.balance, entry.update);
  if (balance === undefined) {
    // The primary accepted this update against its balance, so this replica started from a different one
    // (the input gave the branches different balances). Refuse rather than go below zero.
    const message = `branch ${state.id} cannot apply ${entry.update.kind} ${entry.update.amount} to its ` +
      `balance ${state.balance}: the replicas have diverged`;
    return refuse(state, requestId, "ABORTED", message);
  }
  const next = {
    ...state,
    balance,
    position: entry.position,
    balances: new Map(state.balances).set(entry.position, balance),
  };
  return {
    state: learnCommit(next, Math.min(entry.commit, entry.position)),
    outbox: [{ type: "ack", requestId, balance, position: entry.position }],
  };
}

/** At the primary: count `backup`'s answer for `position`, and commit what every backup has applied. */
function replicated(
  state: BranchState,
  position: number,
  backup: number,
  refusal: Refusal | undefined,
): Step {
  const left = state.awaiting.get(position);
  // Unknown: the position failed already; later outcomes change nothing.
  if (left === undefined) return { state, outbox: [] };
  assert(left.has(backup), `branch ${backup} answered position ${position} twice`);
  const awaiting = new Map(state.awaiting);
  if (refusal !== undefined) {
    // The entry is applied here and maybe at some backups, and can never be committed: the answer it
    // waits for, and every later one, is refused, and the run is broken (failover is for a later version).
    awaiting.delete(position);
    const failed = new Set(state.failed).add(position);
    const message = `replication to branch ${backup} failed: ${refusal.message}`;
    const refused = state.waiting.filter((answer) => answer.position >= position);
    return {
      state: {
        ...state,
        awaiting,
        failed,
        waiting: state.waiting.filter((answer) => answer.position < position),
      },
      outbox: refused.map((answer): BranchOutput => ({
        type: "refuse",
        requestId: answer.requestId,
        refusal: { ...refusal, message },
      })),
    };
  }
  const rest = new Set(left);
  rest.delete(backup);
  if (rest.size > 0) awaiting.set(position, rest);
  else awaiting.delete(position);
  let commit = state.commit;
  while (commit < state.position && !awaiting.has(commit + 1) && !state.failed.has(commit + 1)) commit++;
  return release(learnCommit({ ...state, awaiting }, commit), []);
}

/** At the primary: sends every held answer whose position is committed, in order; adds them to `outbox`. */
function release(state: BranchState, outbox: readonly BranchOutput[]): Step {
  // With no backups, everything applied here is committed at once.
  const current = state.backups.length === 0 ? learnCommit(state, state.position) : state;
  const ready = current.waiting.filter((answer) => answer.position <= current.commit);
  if (ready.length === 0) return { state: current, outbox };
  return {
    state: { ...current, waiting: current.waiting.filter((answer) => answer.position > current.commit) },
    outbox: [
      ...outbox,
      ...ready.map((answer) =>
        reply(answer.requestId, answer.interface, answer.success, answer.balance, answer.position)
      ),
    ],
  };
}

/** Moves the commit position up to `commit` (never down), forgetting balances before it. */
function learnCommit(state: BranchState, commit: number): BranchState {
  if (commit <= state.commit) return state;
  const balances = new Map([...state.balances].filter(([position]) => position >= commit));
  return { ...state, commit, balances };
}

/** This replica's balance right after `position`, which must be from its commit position on. */
function balanceAt(state: BranchState, position: number): number {
  const balance = state.balances.get(position);
  assert(balance !== undefined, `branch ${state.id} has no balance for position ${position}`);
  return balance;
}

/** At a backup: answer a forwarded update with the primary's decision, or with why there is none. */
function answerForwarded(
  state: BranchState,
  requestId: number,
  decision: Decision | undefined,
  refusal: Refusal | undefined,
): Step {
  const kind = state.forwarded.get(requestId);
  assert(kind !== undefined, `request ${requestId} was not forwarded`);
  const forwarded = new Map(state.forwarded);
  forwarded.delete(requestId);
  const next = { ...state, forwarded };
  if (decision === undefined) {
    const why = refusal ?? { code: "INTERNAL", message: "the primary gave no decision" };
    return refuse(next, requestId, why.code, `forward to the primary failed: ${why.message}`);
  }
  return {
    state: learnCommit(next, Math.min(decision.position, next.position)),
    outbox: [reply(requestId, kind, decision.success, decision.balance, decision.position)],
  };
}

/**
 * At a backup: answer a query at the primary's commit position. The primary commits a position only once
 * every backup has applied it, and this backup's answer to the entry went before the primary's answer to
 * the read index (one stream each way), so this replica has applied it.
 */
function answerQuery(
  state: BranchState,
  requestId: number,
  commit: number | undefined,
  refusal: Refusal | undefined,
): Step {
  if (commit === undefined) {
    const why = refusal ?? { code: "INTERNAL", message: "the primary gave no commit position" };
    return refuse(state, requestId, why.code, `read index from the primary failed: ${why.message}`);
  }
  if (commit > state.position || commit < state.commit) {
    const message = `the primary's commit position ${commit} is outside what branch ${state.id} holds ` +
      `(${state.commit} to ${state.position})`;
    return refuse(state, requestId, "ABORTED", message);
  }
  const next = learnCommit(state, commit);
  return { state: next, outbox: [reply(requestId, "query", true, balanceAt(next, commit), commit)] };
}

function notPrimary(state: BranchState, requestId: number): Step {
  return refuse(state, requestId, "INVALID_ARGUMENT", `branch ${state.id} is not the primary`);
}

function reply(
  requestId: number,
  kind: Interface,
  success: boolean,
  balance: number,
  position: number,
): BranchOutput {
  return { type: "reply", requestId, interface: kind, success, balance, position };
}

function refuse(state: BranchState, requestId: number, code: RefusalCode, message: string): Step {
  return { state, outbox: [{ type: "refuse", requestId, refusal: { code, message } }] };
}
