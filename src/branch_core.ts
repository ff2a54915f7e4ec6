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
 * an **entry** to every backup: at once to those a commit or a customer waits on (sendAtOnce), a little
 * later to the others. Each backup applies entries strictly in position order.
 *
 * Every branch writes its log to disk before it counts an entry as its own: the primary before it sends
 * the entry anywhere, a backup before it acknowledges it. An entry is **committed** once it, and every
 * entry before it, is on the disk of a majority of the branches (the primary included). The primary
 * answers an update (the customer, or the backup that forwarded it) only once the update is committed,
 * and a failed update once everything it was decided against is (and, when the request can be retried,
 * once the failure is on the primary's disk). A query is answered at the primary's commit position: the
 * primary answers at once; a backup first asks the primary for that position (a **read index**), waits
 * until it has applied that far, and answers with its own balance there. So everything a customer was
 * told has happened is in every later answer, whichever branch gives it: the replies are linearizable,
 * with concurrent customers too. The safety argument, rule by rule, is in the README's protocol section.
 *
 * The core decides what must be durable (`persist` outputs) but does not write: the driver writes what a
 * turn of its event loop produced in one transaction and then tells the core (`synced`).
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
  /** The customer request it came from (see the `key` of a request), so a retry is recognised anywhere. */
  readonly key?: string | undefined;
  /** The primary's commit position when it sent the entry: what a backup learns is committed. */
  readonly commit: number;
}

/** What a branch finds on its disk when it starts: its log, and at the primary its failed decisions. */
export interface Recovered {
  /** The log from position 1 on, each entry with the balance right after it. */
  readonly entries: readonly { readonly entry: Entry; readonly balance: number }[];
  readonly failures: readonly { readonly key: string; readonly decided: Decided }[];
}

/** The gRPC status a refusal travels as. */
export type RefusalCode =
  | "INVALID_ARGUMENT"
  | "UNAVAILABLE"
  | "ABORTED"
  | "FAILED_PRECONDITION"
  | "DEADLINE_EXCEEDED"
  | "INTERNAL";

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
    /**
     * For a query: answer only once this branch has applied the log up to here (the highest position the
     * client has been answered with), so that a client reads its own updates at any branch. 0 for none.
     */
    readonly after?: number | undefined;
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
  /**
   * At the primary: `backup` has the log up to `position` on its disk (it acknowledged that entry, or
   * said so when its link came up).
   */
  | { readonly type: "replicated"; readonly position: number; readonly backup: number }
  /**
   * At the primary: `backup` accepted a new link, saying its disk holds the log up to `position`. Unlike
   * an acknowledgement this may be less than before (its directory was emptied): it replaces what the
   * primary knew of that backup.
   */
  | { readonly type: "linked"; readonly position: number; readonly backup: number }
  /** Everything this branch was asked to persist before this input is on its disk. */
  | { readonly type: "synced" }
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
    /** The last position of the primary's log (with `commit`). */
    readonly end: number | undefined;
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
  | {
    readonly type: "index";
    readonly requestId: number;
    readonly commit: number;
    /** The last position of this primary's log. */
    readonly end: number;
  }
  /** Answer the inbound call `requestId` with an error status. */
  | { readonly type: "refuse"; readonly requestId: number; readonly refusal: Refusal }
  /**
   * Write to disk, in the turn's one transaction, then feed `synced`: an entry (with the balance after it)
   * or, at the primary, a keyed update that failed. At the primary each entry is then sent to every backup
   * (see sendAtOnce), whose acknowledgements come back as `replicated`. With neither, just sync what came
   * before.
   */
  | {
    readonly type: "persist";
    readonly entry?: { readonly entry: Entry; readonly balance: number };
    readonly failure?: { readonly key: string; readonly decided: Decided };
  }
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
  /** False until the decision is on the primary's disk: a failed keyed update, before the next sync. */
  readonly durable: boolean;
}

/** A query, or a read index, waiting until this branch may answer it (see BranchState.reading). */
export interface PendingRead {
  readonly requestId: number;
  /** "query": a customer's, answered with a reply; "index": a backup's read index. */
  readonly kind: "query" | "index";
  /**
   * At a backup: the position it must have applied first. At the primary: the position the client has seen,
   * which the answer reflects too (it waits only for readFloor).
   */
  readonly at: number;
}

/**
 * How a branch answers queries. `commit`: at the primary's commit position, asking the primary for it at
 * a backup; linearizable whatever the clients do. `local`: from this replica once its disk holds the
 * position the client names (the highest it has been answered with); linearizable while one client acts,
 * one request at a time (then everything answered is at or below that position, and nothing after it
 * exists yet), which is how main runs customers unless `--concurrent`.
 */
export type ReadMode = "commit" | "local";

/**
 * When the primary answers an update. `sync`: once it is on a majority of the disks (committed), so that
 * nothing answered is ever lost and any later read anywhere reflects it. `async`: once it is on the
 * primary's own disk, before any backup has it, as the course's client-centric consistency exercise has
 * it: a customer that moves on to another branch may read a balance without its own update, unless its
 * requests carry its session (Request.after). Not linearizable, and an answered update is lost if the
 * primary's disk is.
 */
export type Propagation = "sync" | "async";

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

/**
 * An immutable list of numbers that only grows at its end, for a replica's balance after each position
 * (index 0: its starting balance). Versions share one array, as in {@linkcode Remembered}: pushing onto the
 * newest version appends in place; pushing onto an older one copies what that version sees first.
 */
export class Timeline {
  readonly #values: number[];
  /** How many values this version sees. */
  readonly length: number;

  private constructor(values: number[], length: number) {
    this.#values = values;
    this.length = length;
  }

  /** A timeline holding `first` alone. */
  static of(first: number): Timeline {
    return new Timeline([first], 1);
  }

  /** The value at `index`, if this version sees one there. */
  at(index: number): number | undefined {
    return index >= 0 && index < this.length ? this.#values[index] : undefined;
  }

  /** This timeline with `value` added at its end. */
  push(value: number): Timeline {
    const values = this.#values.length === this.length ? this.#values : this.#values.slice(0, this.length);
    values.push(value);
    return new Timeline(values, this.length + 1);
  }
}

/** A keyed update as the primary decided it. */
export interface Decided extends Omit<Waiting, "requestId" | "durable"> {
  readonly update: Update;
}

/** A branch's whole protocol state. */
export interface BranchState {
  readonly id: number;
  readonly reads: ReadMode;
  readonly propagation: Propagation;
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
   * At the primary, the last position on the disks of a majority, with every one before it; at a backup,
   * the last such position it has heard of. Never more than `position`.
   */
  readonly commit: number;
  /** This replica's balance after each position, from 0 (its starting balance) to `position`. */
  readonly balances: Timeline;
  /** The last position on this branch's own disk. */
  readonly synced: number;
  /** At the primary: by backup, the last position on its disk (0 until it says). */
  readonly matched: ReadonlyMap<number, number>;
  /**
   * At the primary: the end of the log it recovered from its disk. Some of those entries may have been
   * committed, and answered, before it restarted without it knowing, so it answers no query or read index
   * until its commit position is back up to here.
   */
  readonly readFloor: number;
  /** At the primary: answers held until the commit position reaches theirs, in position order. */
  readonly waiting: readonly Waiting[];
  /** Queries and read indexes waiting: at a backup, for entries to arrive; at the primary, for readFloor. */
  readonly reading: readonly PendingRead[];
  /**
   * At the primary: every keyed update decided so far, with its answer, so that a retry gets the same
   * answer and is not applied again (exactly once).
   */
  readonly decided: Remembered<Decided>;
  /** At a backup: forwarded updates waiting for the primary's decision, by request id. */
  readonly forwarded: ReadonlyMap<number, Interface>;
  /**
   * At a backup: queries waiting for the primary's commit position, by request id, with the position their
   * client has seen (Request.after), which the answer must reflect too.
   */
  readonly indexing: ReadonlyMap<number, number>;
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

/** Where a branch stands among the others, and what it found on its disk. */
export interface StateOptions {
  /** Every other branch's id. */
  readonly peers: readonly number[];
  /** How it answers queries; default "commit". */
  readonly reads?: ReadMode;
  /** When the primary answers an update; default "sync". */
  readonly propagation?: Propagation;
  /** Its log as it last wrote it; default none. */
  readonly recovered?: Recovered;
}

/**
 * Branch `id`, which started with `balance` units, as it was when it last wrote to its disk
 * (`options.recovered`), or before any update.
 */
export function initialState(id: number, balance: number, options: StateOptions): BranchState {
  const { peers, reads = "commit", propagation = "sync", recovered = { entries: [], failures: [] } } =
    options;
  assert(
    Number.isSafeInteger(balance) && balance >= 0,
    `balance ${balance} is not a safe non-negative integer`,
  );
  assert(!peers.includes(id), `branch ${id} lists itself as a peer`);
  assert(new Set(peers).size === peers.length, `branch ${id} lists a peer twice`);
  const primary = primaryOf([id, ...peers]);
  let decided = Remembered.empty<Decided>();
  let current = balance;
  let commit = 0;
  for (const { entry, balance: after } of recovered.entries) {
    assert(applied(current, entry.update) === after, `the log disagrees with itself at ${entry.position}`);
    current = after;
    commit = Math.max(commit, entry.commit);
    if (entry.key !== undefined) {
      const { update, position } = entry;
      decided = decided.with(entry.key, {
        update,
        interface: update.kind,
        success: true,
        balance: after,
        position,
      });
    }
  }
  for (const { key, decided: failure } of recovered.failures) decided = decided.with(key, failure);
  const position = recovered.entries.length;
  const balances = recovered.entries.reduce(
    (timeline, { balance }) => timeline.push(balance),
    Timeline.of(balance),
  );
  return {
    id,
    reads,
    propagation,
    primary,
    view: 0,
    backups: id === primary ? [...peers] : [],
    balance: current,
    position,
    commit,
    balances,
    synced: position,
    matched: new Map(),
    readFloor: id === primary ? position : 0,
    waiting: [],
    reading: [],
    decided,
    forwarded: new Map(),
    indexing: new Map(),
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
      if (input.interface === "query") return query(state, input.requestId, input.after ?? 0);
      return isPrimary(state)
        ? sequence(state, input.requestId, { kind: input.interface, amount: input.amount }, input.key)
        : forward(state, input.requestId, { kind: input.interface, amount: input.amount }, input.key);
    case "forward":
      if (!isPrimary(state)) return notPrimary(state, input.requestId);
      assert(state.backups.includes(input.from), `branch ${input.from} is not a backup`);
      return sequence(state, input.requestId, input.update, input.key);
    case "readIndex":
      if (!isPrimary(state)) return notPrimary(state, input.requestId);
      return awaitRead(state, { requestId: input.requestId, kind: "index", at: 0 });
    case "entry":
      return applyEntry(state, input.requestId, input.entry);
    case "replicated":
      return replicated(state, input.position, input.backup);
    case "linked": {
      assert(state.backups.includes(input.backup), `branch ${input.backup} is not a backup`);
      // No more than this branch's own disk holds: entries beyond it never came from this log.
      const matched = new Map(state.matched).set(input.backup, Math.min(input.position, state.synced));
      return advance({ ...state, matched });
    }
    case "synced":
      return synced(state);
    case "decided":
      return answerForwarded(state, input.requestId, input.decision, input.refusal);
    case "indexed":
      return answerQuery(state, input);
  }
}

/** The balance after `update`, or undefined when the update must be refused. */
export function applied(balance: number, update: Update): number | undefined {
  const next = update.kind === "deposit" ? balance + update.amount : balance - update.amount;
  return next >= 0 && Number.isSafeInteger(next) ? next : undefined;
}

/** How many branches, of `count`, make a majority. */
export function majority(count: number): number {
  return Math.floor(count / 2) + 1;
}

/**
 * At the primary: which of the `live` backups to send a new entry to at once. A commit needs a majority:
 * this branch and `majority - 1` backups, taken as those furthest along the log (ties to the lower id), so
 * that one that stops answering falls behind and out of the set. Every backup `asking` (waiting on the
 * primary for a forward or a read index of its customer's: to answer a query it must have applied what the
 * read index says, and its customer's next query most likely comes to it) is sent it at once too. The
 * others may be sent entries later, several at a time: which spares each of them a wake-up per entry
 * (with 50 branches on two cores, waking every backup for every entry is what takes the time). Which
 * backups are sent what, and when, never changes what is committed.
 */
export function sendAtOnce(
  state: BranchState,
  backups: { readonly live: Iterable<number>; readonly asking: ReadonlySet<number> },
): Set<number> {
  const { live, asking } = backups;
  const matched = (backup: number) => state.matched.get(backup) ?? 0;
  const ranked = [...live].sort((a, b) => matched(b) - matched(a) || a - b);
  const quorum = majority(state.backups.length + 1) - 1;
  return new Set([...ranked.slice(0, quorum), ...ranked.filter((backup) => asking.has(backup))]);
}

/**
 * A query. The primary answers at its commit position: everything committed has been answered to nobody
 * yet or is in every later answer, and nothing after it has been answered to anybody (replies wait for
 * the commit), so no later answer anywhere can reflect less. A backup asks the primary for that position.
 * With local reads a branch answers from its replica when it has applied what the client has seen; a
 * backup that has not asks the primary too, which also tells the primary to send it what it lacks. The
 * answer then reflects whichever is later, the commit position or what the client has seen. The client may
 * have seen a position not committed yet: an update answered with async propagation, or a local read at a
 * backup that had applied more than was committed (with several clients); answering at the commit position
 * then would take that client back in time.
 */
function query(state: BranchState, requestId: number, after: number): Step {
  if (isPrimary(state) && after > state.position) return pastTheLog(state, requestId, after, state.position);
  if (state.reads === "local" && (isPrimary(state) || after <= state.position)) {
    return awaitRead(state, { requestId, kind: "query", at: after });
  }
  if (!isPrimary(state)) {
    const indexing = new Map(state.indexing).set(requestId, after);
    return { state: { ...state, indexing }, outbox: [{ type: "askIndex", requestId }] };
  }
  // The primary has applied everything it answered.
  return awaitRead(state, { requestId, kind: "query", at: after });
}

/** Adds `read` to the reads waiting, and answers whatever may be answered now (it, most often). */
function awaitRead(state: BranchState, read: PendingRead): Step {
  return serveReads({ ...state, reading: [...state.reading, read] }, []);
}

/**
 * Answers every read that may be answered now, adding the answers to `outbox`. The primary answers at its
 * commit position, once that is back up to what it recovered; a backup once this replica has applied the
 * position the read waits for; a local read once that position is on this branch's own disk, and at the
 * last position there. (The primary writes what a turn decided when the turn ends, after a query of that
 * turn may have arrived: answering at its applied position would tell of updates on no disk at all, which
 * a crash then takes back from a client that has seen them.)
 */
function serveReads(state: BranchState, outbox: readonly BranchOutput[]): Step {
  if (state.reading.length === 0) return { state, outbox };
  const local = state.reads === "local";
  const ready = (read: PendingRead) =>
    read.kind === "index" || (!local && isPrimary(state))
      ? state.commit >= state.readFloor
      : read.at <= (local ? state.synced : state.position);
  const now = state.reading.filter(ready);
  if (now.length === 0) return { state, outbox };
  const answers = now.map((read): BranchOutput => {
    if (read.kind === "index") {
      return { type: "index", requestId: read.requestId, commit: state.commit, end: state.position };
    }
    if (local) return reply(read.requestId, "query", true, balanceAt(state, state.synced), state.synced);
    // At a backup the primary's commit position may be behind what this backup has heard is committed
    // since; either is committed, and the later one reflects more. The client may have seen more still
    // (see query).
    const at = Math.max(read.at, state.commit);
    return reply(read.requestId, "query", true, balanceAt(state, at), at);
  });
  return {
    state: { ...state, reading: state.reading.filter((read) => !ready(read)) },
    outbox: [...outbox, ...answers],
  };
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
    // The first answer may still be on its way to the disk; the next sync is after it.
    const again = { ...answer, requestId, durable: earlier.success };
    return release(
      { ...state, waiting: [...state.waiting, again] },
      again.durable ? [] : [{ type: "persist" }],
    );
  }
  const balance = applied(state.balance, update);
  if (balance === undefined) {
    // Decided once, here, in log order: a failed update changes nothing, takes no position and is sent
    // nowhere. Its answer reflects every position it was decided after, so it too waits for them to be
    // committed; and when it can be retried, for the failure to be on disk, so a retry after a restart
    // fails again.
    const answer = {
      position: state.position,
      requestId,
      interface: update.kind,
      success: false,
      balance: state.balance,
      durable: key === undefined,
    };
    if (key === undefined) return release({ ...state, waiting: [...state.waiting, answer] }, []);
    const decided: Decided = {
      update,
      interface: update.kind,
      success: false,
      balance: state.balance,
      position: state.position,
    };
    return release(
      { ...state, waiting: [...state.waiting, answer], decided: state.decided.with(key, decided) },
      [{ type: "persist", failure: { key, decided } }],
    );
  }
  const position = state.position + 1;
  const balances = state.balances.push(balance);
  const answer = { position, requestId, interface: update.kind, success: true, balance, durable: true };
  const decided = key === undefined
    ? state.decided
    : state.decided.with(key, { update, interface: update.kind, success: true, balance, position });
  const next = { ...state, balance, position, balances, waiting: [...state.waiting, answer], decided };
  const entry: Entry = { view: state.view, position, update, key, commit: state.commit };
  return release(next, [{ type: "persist", entry: { entry, balance } }]);
}

/** At a backup: hand `update` to the primary and wait for its decision. */
function forward(state: BranchState, requestId: number, update: Update, key: string | undefined): Step {
  assert(!state.forwarded.has(requestId), `request ${requestId} is already forwarded`);
  const forwarded = new Map(state.forwarded);
  forwarded.set(requestId, update.kind);
  return { state: { ...state, forwarded }, outbox: [{ type: "forward", requestId, update, key }] };
}

/**
 * At a backup: apply the primary's next entry, which must follow the last one applied here, and persist
 * it. The driver writes it before it sends the acknowledgement.
 */
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
    // (it was started by hand with another balance). Refuse rather than go below zero.
    const message = `branch ${state.id} cannot apply ${entry.update.kind} ${entry.update.amount} to its ` +
      `balance ${state.balance}: the replicas have diverged`;
    return refuse(state, requestId, "ABORTED", message);
  }
  const next = {
    ...state,
    balance,
    position: entry.position,
    balances: state.balances.push(balance),
  };
  return serveReads(learnCommit(next, Math.min(entry.commit, entry.position)), [
    { type: "persist", entry: { entry, balance } },
    { type: "ack", requestId, balance, position: entry.position },
  ]);
}

/** At the primary: `backup` has the log up to `position` on its disk. */
function replicated(state: BranchState, position: number, backup: number): Step {
  assert(state.backups.includes(backup), `branch ${backup} is not a backup`);
  // A backup never holds more than the primary sent it; a higher claim (a backup that kept a log the
  // primary lost) counts only for what the primary holds too.
  const at = Math.min(position, state.position);
  if (at <= (state.matched.get(backup) ?? 0)) return { state, outbox: [] };
  return advance({ ...state, matched: new Map(state.matched).set(backup, at) });
}

/** Everything persisted so far is on this branch's disk. */
function synced(state: BranchState): Step {
  const waiting = state.waiting.some((answer) => !answer.durable)
    ? state.waiting.map((answer) => answer.durable ? answer : { ...answer, durable: true })
    : state.waiting;
  return advance({ ...state, synced: state.position, waiting });
}

/**
 * At the primary: moves the commit position to the last position on a majority of the disks (this
 * branch's and its backups'), then sends what that releases. At a backup: answers the local reads that
 * waited for its disk.
 */
function advance(state: BranchState): Step {
  if (!isPrimary(state)) return serveReads(state, []);
  const held = [state.synced, ...state.backups.map((backup) => state.matched.get(backup) ?? 0)]
    .sort((a, b) => b - a);
  const commit = held[majority(held.length) - 1] as number;
  return release(learnCommit(state, commit), []);
}

/**
 * At the primary: sends every held answer whose position is committed (and whose decision is durable),
 * in order, and every read that may be answered; adds them to `outbox`. With async propagation, an answer
 * waits only for this branch's own disk.
 */
function release(state: BranchState, outbox: readonly BranchOutput[]): Step {
  const answered = state.propagation === "sync" ? state.commit : state.synced;
  const ready = (answer: Waiting) => answer.position <= answered && answer.durable;
  const now = state.waiting.filter(ready);
  if (now.length === 0) return serveReads(state, outbox);
  return serveReads(
    { ...state, waiting: state.waiting.filter((answer) => !ready(answer)) },
    [
      ...outbox,
      ...now.map((answer) =>
        reply(answer.requestId, answer.interface, answer.success, answer.balance, answer.position)
      ),
    ],
  );
}

/** Moves the commit position up to `commit` (never down). */
function learnCommit(state: BranchState, commit: number): BranchState {
  if (commit <= state.commit) return state;
  return { ...state, commit };
}

/** This replica's balance right after `position`, which it must have applied. */
function balanceAt(state: BranchState, position: number): number {
  const balance = state.balances.at(position);
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
  // With sync propagation the decision's position is committed (the primary answered only then).
  const learned = state.propagation === "sync"
    ? learnCommit(next, Math.min(decision.position, next.position))
    : next;
  return {
    state: learned,
    outbox: [reply(requestId, kind, decision.success, decision.balance, decision.position)],
  };
}

/**
 * At a backup: answer a query at the primary's commit position, once this replica has applied it. (It
 * may not have yet: a commit needs only a majority of the disks.)
 */
function answerQuery(state: BranchState, input: Extract<BranchInput, { type: "indexed" }>): Step {
  const { requestId, commit, refusal, end = 0 } = input;
  const after = state.indexing.get(requestId);
  assert(after !== undefined, `request ${requestId} did not ask for a read index`);
  const indexing = new Map(state.indexing);
  indexing.delete(requestId);
  const next = { ...state, indexing };
  if (commit === undefined) {
    const why = refusal ?? { code: "INTERNAL", message: "the primary gave no commit position" };
    return refuse(next, requestId, why.code, `read index from the primary failed: ${why.message}`);
  }
  if (after > end) return pastTheLog(next, requestId, after, end);
  // The primary's commit position is committed: learn it, as far as this replica holds it.
  return awaitRead(learnCommit(next, Math.min(commit, next.position)), {
    requestId,
    kind: "query",
    at: Math.max(commit, after),
  });
}

/**
 * A query naming a position (Request.after) that the primary's log does not reach: no reply of this bank
 * ever reflected it (the client's session is of another bank, or of a run on fresh data directories).
 * Waiting for it would wait forever.
 */
function pastTheLog(state: BranchState, requestId: number, after: number, end: number): Step {
  const message = `the request has seen position ${after}, past the end of the log (${end}): its session ` +
    "is of another bank, or of a run on other data directories";
  return refuse(state, requestId, "INVALID_ARGUMENT", message);
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
