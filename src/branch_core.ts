/**
 * The branch protocol as a deterministic state machine: no sockets, timers or clocks.
 *
 * A driver feeds it inputs (a customer's request, a message from another branch, the outcome of a message
 * it sent) through {@linkcode step}, and carries out the outbox it returns: replies to send and messages to
 * other branches. Because every effect is a value in the outbox, the protocol is tested without a network,
 * and a simulator can drive any interleaving of inputs.
 *
 * The protocol: one branch, the **primary** (the lowest id, until a failover), orders every update; the
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
 * With an {@linkcode Election}, a primary that stops answering is replaced: the views, votes, log repair
 * and confirmed reads of Raft, each rule commented where it is applied (see Election for the list).
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
   * The view whose primary made the entry. Entries keep it when a later primary sends them on, so that two
   * logs holding an entry of the same view at the same position hold the same entries up to it (see
   * {@linkcode Election}).
   */
  readonly view: number;
  /** 1, 2, 3, ...: the order in which every replica applies updates. */
  readonly position: number;
  readonly update: Update;
  /** The customer request it came from (see the `key` of a request), so a retry is recognised anywhere. */
  readonly key?: string | undefined;
  /** The primary's commit position when it sent the entry: what a backup learns is committed. */
  readonly commit: number;
  /**
   * With failover: a keyed update the primary decided failed. It changes no balance; it is in the log so
   * that whichever branch is primary later gives a retry of it the same answer (see sequence).
   */
  readonly failed?: true | undefined;
}

/** What a branch finds on its disk when it starts: its log, and at the primary its failed decisions. */
export interface Recovered {
  /** The log from position 1 on, each entry with the balance right after it. */
  readonly entries: readonly { readonly entry: Entry; readonly balance: number }[];
  readonly failures: readonly { readonly key: string; readonly decided: Decided }[];
  /** The view it was in and the vote it gave there; none before the first election. */
  readonly ballot?: Ballot | undefined;
}

/** A branch's view, and whom it voted for in it: written before the vote leaves, so it never votes twice. */
export interface Ballot {
  readonly view: number;
  readonly vote: number | undefined;
}

/**
 * Failover, Raft's way (with Raft's terms called views): when a backup hears nothing from its primary for
 * `timeoutTicks` and a little more (drawn from its id and view, so that two backups rarely stand at once),
 * it stands for primary of the next view, and wins it with the votes of a majority. Time comes in as `tick`
 * inputs; without this option the primary is fixed (the lowest id, view 0) and ticks do nothing.
 *
 * The rules that carry safety, each commented where it is applied:
 * - one vote per view, on disk before it is given (voteRequest), so a view has at most one primary;
 * - a vote only for a log at least as up to date as the voter's (upToDate): the last entry's view, then
 *   the length; since every committed entry is on a majority of the disks, a winner holds all of them;
 * - a primary commits by counting disks only an entry of its own view (advance), and starts its view with
 *   an entry of its own (becomePrimary), which commits what came before it;
 * - a backup takes entries only from a primary of a view at least its own, and drops what conflicts with
 *   them (applyEntry), never below what it knows is committed;
 * - a primary answers a read only once a majority has confirmed it is still the primary (rounds), since a
 *   primary cut off from the others may have been replaced without knowing.
 */
export interface Election {
  /** The least ticks without word from the primary before a backup stands (each draws up to twice it). */
  readonly timeoutTicks: number;
  /** Ticks between the primary's heartbeats; well under timeoutTicks. */
  readonly heartbeatTicks: number;
}

/** Where an entry sits in a log: enough to compare two logs (see Election). */
export interface LogMark {
  readonly position: number;
  readonly view: number;
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
  /** When the sender's view is behind the refuser's: the refuser's, which the sender then enters. */
  readonly view?: number | undefined;
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
  /** At a backup: primary `from`, in `view`, sends the next entry of the log. */
  | {
    readonly type: "entry";
    readonly requestId: number;
    readonly entry: Entry;
    readonly from: number;
    readonly view: number;
  }
  /**
   * At a backup: primary `from`, in `view`, is alive. `last` is the end of its log on its disk, `commit`
   * its commit position, and `round` the round of reads it asks backups to confirm (see BranchState.round).
   */
  | {
    readonly type: "heartbeat";
    readonly requestId: number;
    readonly from: number;
    readonly view: number;
    readonly last: LogMark;
    readonly commit: number;
    readonly round: number;
  }
  /**
   * At a backup: primary `from`, in `view`, opens a link to it. Answered with `accept` (what its disk
   * holds, for the primary's `linked`), or refused when that view is behind this branch's.
   */
  | { readonly type: "link"; readonly requestId: number; readonly from: number; readonly view: number }
  /** At the primary: `backup` answered the heartbeat of `round`, so it was still the primary then. */
  | { readonly type: "confirmed"; readonly backup: number; readonly round: number }
  /** Time passes: see {@linkcode Election}. */
  | { readonly type: "tick" }
  /** Branch `from` stands for primary of `view`, its log ending at `last`. */
  | {
    readonly type: "voteRequest";
    readonly requestId: number;
    readonly from: number;
    readonly view: number;
    readonly last: LogMark;
  }
  /** At a candidate: branch `from`, in `view`, gave its vote or not. */
  | { readonly type: "voteAnswer"; readonly from: number; readonly view: number; readonly granted: boolean }
  /** Another branch is in `view` (it refused a message of an older one). */
  | { readonly type: "view"; readonly view: number }
  /**
   * At the primary: `backup` has the log up to `position` on its disk (it acknowledged that entry, or
   * said so when its link came up).
   */
  | { readonly type: "replicated"; readonly position: number; readonly backup: number }
  /**
   * At the primary: `backup` accepted a new link, saying its disk holds the log up to `position`, whose
   * last entry is of `view`, and that it knows the log is committed up to `commit`. The primary works out
   * how much of that log is its own (BranchState.matched), and the driver sends the backup the rest. This
   * may be less than before (its directory was emptied): it replaces what the primary knew of that backup.
   */
  | {
    readonly type: "linked";
    readonly backup: number;
    readonly position: number;
    readonly view: number;
    readonly commit: number;
  }
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
    /** The view of the primary's entry at `commit` (with `commit`). */
    readonly view?: number | undefined;
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
    /** The view of its entry at `commit`: where the backup's log agrees with it (see Election). */
    readonly view: number;
  }
  /** Accept the link `requestId`: this branch's disk holds the log up to `last`, committed up to `commit`. */
  | { readonly type: "accept"; readonly requestId: number; readonly last: LogMark; readonly commit: number }
  /** Answer the inbound call `requestId` with an error status. */
  | { readonly type: "refuse"; readonly requestId: number; readonly refusal: Refusal }
  /**
   * Write to disk, in the turn's one transaction, then feed `synced`, in this order: a cut of the log after
   * position `truncate` (entries an earlier primary sent that the current one does not have), this
   * branch's `ballot`, an entry (with the balance after it) or, at the primary, a keyed update that
   * failed. At the primary each entry is then sent to every backup (see sendAtOnce), whose
   * acknowledgements come back as `replicated`. With none, just sync what came before.
   */
  | {
    readonly type: "persist";
    readonly truncate?: number;
    readonly ballot?: Ballot;
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
  | { readonly type: "askIndex"; readonly requestId: number }
  /**
   * At the primary: send every linked backup a heartbeat with these, and feed each answer back as
   * `confirmed` (a refusal naming a later view, as `view`).
   */
  | {
    readonly type: "heartbeat";
    readonly view: number;
    readonly last: LogMark;
    readonly commit: number;
    readonly round: number;
  }
  /**
   * Ask every other branch for its vote in `view`; feed each answer back as `voteAnswer`. Sent only once
   * the persist before it (this branch's own vote) is written.
   */
  | { readonly type: "requestVotes"; readonly view: number; readonly last: LogMark }
  /** Answer the vote request `requestId`; like an ack, only once what was persisted before it is written. */
  | { readonly type: "vote"; readonly requestId: number; readonly view: number; readonly granted: boolean }
  /** This branch became the primary, a candidate or a backup of `view` (for the driver's log and links). */
  | { readonly type: "role"; readonly role: Role; readonly view: number };

/** What a branch is in its view. */
export type Role = "primary" | "candidate" | "backup";

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
  /** The position that must be committed first, when not `position`: a failure's entry (see failedEntry). */
  readonly commitAt?: number | undefined;
  /**
   * A failed update at a primary that may be replaced: the round of heartbeats a majority must confirm
   * first. A failure reads the balance, and is answered only as a read is (see BranchState.round).
   */
  readonly round?: number | undefined;
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
  /** At a primary that may be replaced: the round a majority must confirm first (see BranchState.round). */
  readonly round?: number | undefined;
  /**
   * At a backup, with failover: the primary's commit position and the view of its entry there, from a read
   * index. Once this log holds that entry, it agrees with the committed log up to it.
   */
  readonly mark?: LogMark | undefined;
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

  /** This map with only the entries that `keep` keeps: a copy, for the rare times entries must go. */
  filter(keep: (value: V) => boolean): Remembered<V> {
    let kept = Remembered.empty<V>();
    for (const [key, { value, added }] of this.#entries) {
      if (added < this.size && keep(value)) kept = kept.with(key, value);
    }
    return kept;
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

  /** The first `length` values of this timeline. */
  take(length: number): Timeline {
    assert(length >= 1 && length <= this.length, `cannot take ${length} of ${this.length} values`);
    return new Timeline(this.#values, length);
  }
}

/** A keyed update as the primary decided it. */
export interface Decided extends Omit<Waiting, "requestId" | "durable" | "round" | "commitAt"> {
  readonly update: Update;
}

/** A branch's whole protocol state. */
export interface BranchState {
  readonly id: number;
  readonly reads: ReadMode;
  readonly propagation: Propagation;
  /** Failover's timing; undefined when the primary is fixed. */
  readonly election: Election | undefined;
  /** Every other branch. */
  readonly peers: readonly number[];
  /**
   * The primary of this branch's view, once known: in view 0 the lowest id of all the branches; in a later
   * view the branch that won it, known here once it wins (or this branch hears from it).
   */
  readonly primary: number | undefined;
  /** The view this branch is in: 0 until the first election. */
  readonly view: number;
  /** Whom this branch voted for in its view (itself, standing); on its disk before the vote left. */
  readonly vote: number | undefined;
  /** At a candidate: the branches that voted for it, itself included. */
  readonly votes: ReadonlySet<number>;
  /** At a backup or candidate: ticks since it last heard from a primary, or stood. */
  readonly quiet: number;
  /** At a backup or candidate: the ticks of quiet after which it stands (see Election). */
  readonly timeout: number;
  /** At the primary: ticks since its last heartbeat. */
  readonly beat: number;
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
  /** The view of the entry at each position, from 0 (none: 0) to `position`. */
  readonly views: Timeline;
  /** The last position on this branch's own disk. */
  readonly synced: number;
  /**
   * At the primary: by backup, the last position on its disk that holds this primary's log (0 until it
   * says).
   */
  readonly matched: ReadonlyMap<number, number>;
  /**
   * At a primary that may be replaced: the last round of reads it asked its backups to confirm, with a
   * heartbeat. A read waits for a majority to answer the round after it arrived: until then another
   * branch could have become primary and committed updates this one does not know of.
   */
  readonly round: number;
  /** At the primary: by backup, the last round it confirmed. */
  readonly confirmed: ReadonlyMap<number, number>;
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
   * Every keyed update in this branch's log and, at the primary, every one it decided failed, with its
   * answer, so that a retry gets the same answer and is not applied again (exactly once), whichever branch
   * is primary by then.
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
  /** Failover's timing (see Election); default none: the primary is fixed. */
  readonly election?: Election | undefined;
}

/**
 * Branch `id`, which started with `balance` units, as it was when it last wrote to its disk
 * (`options.recovered`), or before any update. In view 0 the lowest id is the primary (with failover, only
 * on a first start); otherwise a restarted branch is a backup until it hears from a primary or stands.
 */
export function initialState(id: number, balance: number, options: StateOptions): BranchState {
  const { peers, reads = "commit", propagation = "sync", recovered = { entries: [], failures: [] } } =
    options;
  const election = options.election;
  assert(
    Number.isSafeInteger(balance) && balance >= 0,
    `balance ${balance} is not a safe non-negative integer`,
  );
  assert(!peers.includes(id), `branch ${id} lists itself as a peer`);
  assert(new Set(peers).size === peers.length, `branch ${id} lists a peer twice`);
  assert(
    election === undefined ||
      (election.heartbeatTicks >= 1 && election.timeoutTicks > election.heartbeatTicks),
    "a heartbeat must come more often than the election timeout",
  );
  const { view, vote } = recovered.ballot ?? { view: 0, vote: undefined };
  // With failover, a branch that comes back from a disk with anything on it is a backup until it hears
  // from a primary (or stands): the others may have elected one meanwhile. View 0's primary by rule is for
  // a bank's first start.
  const fresh = recovered.entries.length === 0 && recovered.ballot === undefined;
  const primary = view === 0 && (election === undefined || fresh) ? primaryOf([id, ...peers]) : undefined;
  let decided = Remembered.empty<Decided>();
  let current = balance;
  let commit = 0;
  for (const { entry, balance: after } of recovered.entries) {
    const expected = entry.failed ? current : applied(current, entry.update);
    assert(expected === after, `the log disagrees with itself at ${entry.position}`);
    current = after;
    commit = Math.max(commit, entry.commit);
    if (entry.key !== undefined) decided = decided.with(entry.key, succeeded(entry, after));
  }
  // A failure is the answer of one primary in one view: only the primary of view 0, which nobody else
  // ever replaces in it, keeps its own across a restart.
  if (primary === id) {
    for (const { key, decided: failure } of recovered.failures) decided = decided.with(key, failure);
  }
  const position = recovered.entries.length;
  const balances = recovered.entries.reduce(
    (timeline, { balance }) => timeline.push(balance),
    Timeline.of(balance),
  );
  const views = recovered.entries.reduce((timeline, { entry }) => timeline.push(entry.view), Timeline.of(0));
  return {
    id,
    reads,
    propagation,
    election,
    peers: [...peers],
    primary,
    view,
    vote,
    votes: new Set(),
    // A backup of view 0's primary by rule has not heard from it yet, so it does not keep it against a
    // candidate (see voteRequest); the driver keeps it from standing until the bank has had time to start.
    quiet: election !== undefined && primary !== undefined && primary !== id ? election.timeoutTicks : 0,
    timeout: timeoutOf(election, id, view),
    beat: 0,
    backups: id === primary ? [...peers] : [],
    balance: current,
    position,
    commit,
    balances,
    views,
    synced: position,
    matched: new Map(),
    round: 0,
    confirmed: new Map(),
    readFloor: id === primary ? position : 0,
    waiting: [],
    reading: [],
    decided,
    forwarded: new Map(),
    indexing: new Map(),
  };
}

/** The answer a keyed entry gave, applied at its position leaving `balance`. */
function succeeded(entry: Entry, balance: number): Decided {
  const { update, position } = entry;
  // A failure was decided after the positions before its entry, as its answer says (see sequence).
  if (entry.failed) {
    return { update, interface: update.kind, success: false, balance, position: position - 1 };
  }
  return { update, interface: update.kind, success: true, balance, position };
}

/** The log position of the entry a decided update is in (a failure's follows the positions it reflects). */
function entryPosition(decided: Decided): number {
  return decided.success ? decided.position : decided.position + 1;
}

/**
 * The ticks of quiet after which branch `id` stands in `view`: the election's least, and up to as many
 * again, spread by id and view (a hash, as the core draws nothing at random), so that the backups of a
 * lost primary rarely stand at once, and not always in the same order.
 */
function timeoutOf(election: Election | undefined, id: number, view: number): number {
  if (election === undefined) return 0;
  const spread = Math.imul(id * 31 + view, 0x9e3779b1) >>> 0;
  return election.timeoutTicks + (spread % election.timeoutTicks);
}

/** Whether `state` is the primary's. */
export function isPrimary(state: BranchState): boolean {
  return state.id === state.primary;
}

/** What `state`'s branch is in its view. */
export function roleOf(state: BranchState): Role {
  if (isPrimary(state)) return "primary";
  return state.primary === undefined && state.vote === state.id ? "candidate" : "backup";
}

/** Where `state`'s log ends. */
function lastMark(state: BranchState): LogMark {
  return markAt(state, state.position);
}

/** The entry of `state`'s log at `position` (which it holds), as a mark. */
function markAt(state: BranchState, position: number): LogMark {
  return { position, view: state.views.at(position) as number };
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
      return applyEntry(state, input);
    case "heartbeat":
      return heartbeat(state, input);
    case "link":
      return acceptLink(state, input);
    case "replicated":
      return replicated(state, input.position, input.backup);
    case "linked":
      return linked(state, input);
    case "confirmed": {
      if (!isPrimary(state) || input.round <= (state.confirmed.get(input.backup) ?? 0)) {
        return { state, outbox: [] };
      }
      return confirm({ ...state, confirmed: new Map(state.confirmed).set(input.backup, input.round) }, []);
    }
    case "synced":
      return synced(state);
    case "decided":
      return answerForwarded(state, input.requestId, input.decision, input.refusal);
    case "indexed":
      return answerQuery(state, input);
    case "tick":
      return tick(state);
    case "voteRequest":
      return voteRequest(state, input);
    case "voteAnswer":
      return voteAnswer(state, input);
    case "view":
      return input.view > state.view ? enterView(state, input.view, undefined) : { state, outbox: [] };
  }
}

// ---- Failover ----------------------------------------------------------------------------------------

/**
 * Time passes. The primary sends a heartbeat every `heartbeatTicks`, so that its backups know it is alive;
 * a backup or candidate that hears from no primary for its timeout stands for primary of the next view.
 */
function tick(state: BranchState): Step {
  const { election } = state;
  if (election === undefined) return { state, outbox: [] };
  if (isPrimary(state)) {
    const beat = state.beat + 1;
    if (beat < election.heartbeatTicks) return { state: { ...state, beat }, outbox: [] };
    return { state: { ...state, beat: 0 }, outbox: [heartbeatOf(state)] };
  }
  const quiet = state.quiet + 1;
  if (quiet < state.timeout) return { state: { ...state, quiet }, outbox: [] };
  return stand(state);
}

/** The heartbeat the primary in `state` sends: the end of its log is the end of its disk. */
function heartbeatOf(state: BranchState): BranchOutput {
  return {
    type: "heartbeat",
    view: state.view,
    last: markAt(state, state.synced),
    commit: state.commit,
    round: state.round,
  };
}

/**
 * Stands for primary of the next view: votes for itself (on its disk before any request for votes leaves,
 * so that it never votes for another in that view) and asks every other branch for its vote.
 */
function stand(state: BranchState): Step {
  const view = state.view + 1;
  const entered = enterView(state, view, undefined);
  const next: BranchState = { ...entered.state, vote: state.id, votes: new Set([state.id]), quiet: 0 };
  const outbox: BranchOutput[] = [
    ...entered.outbox.filter((output) => output.type !== "persist" && output.type !== "role"),
    { type: "persist", ballot: { view, vote: state.id } },
    { type: "role", role: "candidate", view },
    { type: "requestVotes", view, last: lastMark(state) },
  ];
  return won(next, outbox);
}

/** At a candidate: becomes the primary if a majority voted for it (with one branch, at once). */
function won(state: BranchState, outbox: readonly BranchOutput[]): Step {
  if (state.votes.size < majority(state.peers.length + 1)) return { state, outbox };
  return becomePrimary(state, outbox);
}

/**
 * Branch `from` stands in `view`. Safety: a branch votes once per view (its ballot is on its disk before
 * the answer leaves, see the `vote` output), so two primaries of one view would need two majorities that
 * do not meet; and only for a log at least as up to date as its own (upToDate), so the winner holds every
 * committed entry: those are on a majority of the disks, and a majority voted for it.
 */
function voteRequest(state: BranchState, input: Extract<BranchInput, { type: "voteRequest" }>): Step {
  const { requestId, from, view, last } = input;
  const answer = (next: BranchState, granted: boolean, before: readonly BranchOutput[] = []): Step => ({
    state: next,
    outbox: [...before, { type: "vote", requestId, view: next.view, granted }],
  });
  if (view <= state.view && !(view === state.view && (state.vote === undefined || state.vote === from))) {
    return answer(state, false);
  }
  // A branch that hears from its primary (or is it) stays with it: a branch cut off from the others, which
  // stood again and again alone, must not depose a primary that a majority still follows when it is back.
  // (Raft's thesis, 4.2.3.) Liveness only: safety does not rest on it.
  const election = state.election;
  if (
    election !== undefined && state.primary !== undefined &&
    (isPrimary(state) || state.quiet < election.timeoutTicks)
  ) {
    return answer(state, false);
  }
  const entered = view > state.view ? enterView(state, view, undefined) : { state, outbox: [] };
  if (!upToDate(last, lastMark(entered.state))) return answer(entered.state, false, entered.outbox);
  const next: BranchState = { ...entered.state, vote: from, quiet: 0 };
  return answer(next, true, [...entered.outbox, { type: "persist", ballot: { view, vote: from } }]);
}

/** Whether a log ending at `theirs` is at least as up to date as one ending at `ours` (Raft, 5.4.1). */
function upToDate(theirs: LogMark, ours: LogMark): boolean {
  return theirs.view > ours.view || (theirs.view === ours.view && theirs.position >= ours.position);
}

/** At a candidate: a vote came back. */
function voteAnswer(state: BranchState, input: Extract<BranchInput, { type: "voteAnswer" }>): Step {
  if (input.view > state.view) return enterView(state, input.view, undefined);
  if (roleOf(state) !== "candidate" || input.view !== state.view || !input.granted) {
    return { state, outbox: [] };
  }
  return won({ ...state, votes: new Set(state.votes).add(input.from) }, []);
}

/**
 * The candidate won its view. It starts the view with an entry of its own, which changes no balance: its
 * log may end with entries of earlier views that it cannot tell are committed, and cannot commit by
 * counting disks (see advance); this one commits them all. Until it is committed, and so everything
 * before it, the new primary answers no read (readFloor): some of those entries may have been answered.
 */
function becomePrimary(state: BranchState, outbox: readonly BranchOutput[]): Step {
  const position = state.position + 1;
  const entry: Entry = { view: state.view, position, update: NO_OP, commit: state.commit };
  const next: BranchState = {
    ...state,
    primary: state.id,
    votes: new Set(),
    backups: [...state.peers],
    matched: new Map(),
    round: 0,
    confirmed: new Map(),
    beat: 0,
    position,
    balances: state.balances.push(state.balance),
    views: state.views.push(state.view),
    readFloor: position,
  };
  return release(next, [
    ...outbox,
    { type: "role", role: "primary", view: state.view },
    { type: "persist", entry: { entry, balance: state.balance } },
  ]);
}

/** The update of the entry a new primary starts its view with. */
const NO_OP: Update = { kind: "deposit", amount: 0 };

/**
 * Whether `entry` holds no update that succeeded: the one a new primary started its view with (a deposit of
 * 0 with no key, which no customer asked for; a keyless deposit of 0 from a customer looks the same, and
 * changes nothing either), or a failed update's (see failedEntry). No reply names its position.
 */
export function isNoOp(entry: Entry): boolean {
  return entry.failed === true ||
    (entry.key === undefined && entry.update.kind === NO_OP.kind && entry.update.amount === 0);
}

/**
 * Enters `view` (at least this branch's) under `primary`, if known: a primary of an earlier view steps
 * down, refusing what it has not answered (a customer retries it with its key, and the new primary answers
 * it once, whether or not it was committed: keyed successes and failures are both entries of the log). A
 * new view starts with no vote.
 */
function enterView(state: BranchState, view: number, primary: number | undefined): Step {
  assert(view >= state.view, `branch ${state.id} cannot go back from view ${state.view} to ${view}`);
  const outbox: BranchOutput[] = [];
  // The election timer restarts only on hearing from a primary (or voting, or standing): a branch that
  // merely learns of a later view from a candidate that cannot win must still stand in its turn, or a
  // candidate standing again and again would keep every other from ever standing (Raft, 5.2).
  const quiet = primary === undefined ? state.quiet : 0;
  let next: BranchState = { ...state, view, primary, votes: new Set(), quiet };
  if (view > state.view) {
    next = { ...next, vote: undefined, timeout: timeoutOf(state.election, state.id, view) };
    outbox.push({ type: "persist", ballot: { view, vote: undefined } });
  }
  if (isPrimary(state)) {
    const message = `branch ${state.id} is no longer the primary`;
    for (const { requestId } of [...state.waiting, ...state.reading]) {
      outbox.push({ type: "refuse", requestId, refusal: { code: "UNAVAILABLE", message } });
    }
    next = {
      ...next,
      waiting: [],
      reading: [],
      backups: [],
      matched: new Map(),
      confirmed: new Map(),
      readFloor: 0,
    };
  }
  outbox.push({ type: "role", role: roleOf(next), view });
  return { state: next, outbox };
}

/**
 * At a backup: a message from `from`, the primary of `view`. Refused (with this branch's view, which the
 * sender then enters) when that view is behind this branch's; otherwise this branch follows `from` in it.
 */
function follow(
  state: BranchState,
  from: number,
  view: number,
): { refused: Refusal } | { state: BranchState; outbox: readonly BranchOutput[] } {
  if (view < state.view) {
    const message = `branch ${from} sent a message of view ${view}, but branch ${state.id} is in view ` +
      `${state.view}`;
    return { refused: { code: "ABORTED", message, view: state.view } };
  }
  if (view === state.view && isPrimary(state)) {
    return {
      refused: { code: "INVALID_ARGUMENT", message: `branch ${state.id} is the primary of view ${view}` },
    };
  }
  if (view === state.view && state.primary !== undefined) {
    assert(state.primary === from, `branches ${state.primary} and ${from} are both primary of view ${view}`);
    return { state: { ...state, quiet: 0 }, outbox: [] };
  }
  return enterView(state, view, from);
}

/**
 * At a backup: primary `from` opens a link in `view`. It is accepted, this branch following `from`, with
 * what this branch's disk holds (see `linked`), or refused when that view is behind this branch's.
 */
function acceptLink(state: BranchState, input: Extract<BranchInput, { type: "link" }>): Step {
  const followed = follow(state, input.from, input.view);
  if ("refused" in followed) return refusedWith(state, input.requestId, followed.refused);
  const { synced, commit } = followed.state;
  const accept: BranchOutput = {
    type: "accept",
    requestId: input.requestId,
    last: markAt(followed.state, synced),
    commit: Math.min(commit, synced),
  };
  return { state: followed.state, outbox: [...followed.outbox, accept] };
}

/** At a backup: the primary is alive; learns its commit position where the logs agree. */
function heartbeat(state: BranchState, input: Extract<BranchInput, { type: "heartbeat" }>): Step {
  const followed = follow(state, input.from, input.view);
  if ("refused" in followed) {
    return refusedWith(state, input.requestId, followed.refused);
  }
  let next = followed.state;
  // The primary's commit position says nothing of entries this log holds from an earlier primary: only
  // where the two logs agree (an entry of the same view at the same position: they agree up to it).
  if (next.views.at(input.last.position) === input.last.view) {
    next = learnCommit(next, Math.min(input.commit, input.last.position));
  }
  return serveReads(next, [
    ...followed.outbox,
    { type: "ack", requestId: input.requestId, balance: next.balance, position: next.position },
  ]);
}

/**
 * At the primary: `backup` linked, its log ending at `position` of `view`. Where this primary's log holds
 * an entry of the same view at the same position, the two logs are the same up to it (Raft's log
 * matching: a view's primary puts one entry at each position, and a backup takes entries only in order
 * from a log it agrees with); otherwise they are the same up to what the backup knows is committed, which
 * every later primary holds. The driver sends it every entry after that, and the backup drops what
 * conflicts with them.
 */
function linked(state: BranchState, input: Extract<BranchInput, { type: "linked" }>): Step {
  if (!isPrimary(state)) return { state, outbox: [] };
  assert(state.backups.includes(input.backup), `branch ${input.backup} is not a backup`);
  const agrees = state.views.at(input.position) === input.view;
  // No more than this branch's own disk holds: entries beyond it never came from this log.
  const matched = Math.min(agrees ? input.position : input.commit, state.synced);
  return advance({ ...state, matched: new Map(state.matched).set(input.backup, matched) });
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
  if (state.reads === "local" && (isPrimary(state) || after <= readable(state))) {
    return awaitRead(state, { requestId, kind: "query", at: after });
  }
  if (!isPrimary(state)) {
    if (state.primary === undefined) return noPrimary(state, requestId);
    const indexing = new Map(state.indexing).set(requestId, after);
    return { state: { ...state, indexing }, outbox: [{ type: "askIndex", requestId }] };
  }
  // The primary has applied everything it answered.
  return awaitRead(state, { requestId, kind: "query", at: after });
}

/**
 * Adds `read` to the reads waiting, and answers whatever may be answered now (it, most often). At a
 * primary that may be replaced, a read at its commit position waits for a round of heartbeats: a majority
 * answering one sent after the read came means no other primary had been elected by then.
 */
function awaitRead(state: BranchState, read: PendingRead): Step {
  if (
    state.election !== undefined && isPrimary(state) && (read.kind === "index" || state.reads === "commit")
  ) {
    const next = { ...state, reading: [...state.reading, { ...read, round: state.round + 1 }] };
    const started = startRound(next);
    return serveReads(started.state, started.outbox);
  }
  return serveReads({ ...state, reading: [...state.reading, read] }, []);
}

/**
 * At the primary: sends the next round of heartbeats if reads wait for one and the last is confirmed. One
 * round at a time: the reads that come while one is out wait for the next, together. (A round whose
 * heartbeats were lost goes again with the next periodic heartbeat, which carries its number.)
 */
function startRound(state: BranchState): Step {
  const later = (waiting: { readonly round?: number | undefined }) =>
    waiting.round !== undefined && waiting.round > state.round;
  const wanted = state.reading.some(later) || state.waiting.some(later);
  if (!wanted || confirmedRound(state) < state.round) return { state, outbox: [] };
  const next = { ...state, round: state.round + 1, beat: 0 };
  return { state: next, outbox: [heartbeatOf(next)] };
}

/**
 * How far a backup's log may be read: with a fixed primary, all of it (every entry came from the one
 * primary, which never takes one back); with failover, up to what it knows is committed, or up to the
 * primary's commit position that `read` was given if this log agrees with it there, since beyond those it
 * may hold entries of a primary that was replaced before they were committed.
 */
function readable(state: BranchState, read?: PendingRead): number {
  if (state.election === undefined) return state.position;
  const mark = read?.mark;
  const agrees = mark !== undefined && state.views.at(mark.position) === mark.view;
  return agrees ? Math.max(state.commit, mark.position) : state.commit;
}

/** Where a local read is answered: the end of this branch's disk, and no further than readable. */
function localEnd(state: BranchState, read?: PendingRead): number {
  return Math.min(state.synced, readable(state, read));
}

/** The last round of reads a majority of the branches (this primary included) has confirmed. */
function confirmedRound(state: BranchState): number {
  const rounds = [state.round, ...state.backups.map((backup) => state.confirmed.get(backup) ?? 0)]
    .sort((a, b) => b - a);
  return rounds[majority(rounds.length) - 1] as number;
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
      ? state.commit >= state.readFloor && (read.round === undefined || confirmedRound(state) >= read.round)
      : read.at <= (local ? localEnd(state, read) : readable(state, read));
  const now = state.reading.filter(ready);
  if (now.length === 0) return { state, outbox };
  const answers = now.map((read): BranchOutput => {
    if (read.kind === "index") {
      const view = state.views.at(state.commit) as number;
      return { type: "index", requestId: read.requestId, commit: state.commit, end: state.position, view };
    }
    if (local) {
      const at = localEnd(state, read);
      return reply(read.requestId, "query", true, balanceAt(state, at), at);
    }
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
  if (
    state.election !== undefined && state.view === 0 &&
    state.matched.size + 1 < majority(state.peers.length + 1)
  ) {
    // View 0's primary by rule cannot tell a bank's first start from its own restart with its data directory
    // emptied: then it holds a log of its own, which the others refuse to link to. Until a majority has
    // linked it takes no update, so that such a log stays empty and nothing of it meets the bank's.
    const message = `branch ${state.id} waits for a majority of the branches to link before it takes updates`;
    return refuse(state, requestId, "UNAVAILABLE", message);
  }
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
    // The first answer may still be on its way to the disk; the next sync is after it. With failover a
    // failure is an entry, answered once that is committed.
    const inLog = earlier.success || state.election !== undefined;
    const again = {
      ...answer,
      requestId,
      durable: inLog,
      ...(inLog ? { commitAt: entryPosition(earlier) } : {}),
    };
    return confirm(
      { ...state, waiting: [...state.waiting, again] },
      again.durable ? [] : [{ type: "persist" }],
    );
  }
  const balance = applied(state.balance, update);
  if (balance === undefined) {
    // Decided once, here, in log order: a failed update changes nothing, takes no position and is sent
    // nowhere. Its answer reflects every position it was decided after, so it too waits for them to be
    // committed; and when it can be retried, for the failure to be on disk, so a retry after a restart
    // fails again. (With failover, a keyed failure is an entry of the log instead: see failedEntry.)
    if (key !== undefined && state.election !== undefined) return failedEntry(state, requestId, update, key);
    const answer = {
      position: state.position,
      requestId,
      interface: update.kind,
      success: false,
      balance: state.balance,
      durable: key === undefined,
      round: state.election === undefined ? undefined : state.round + 1,
    };
    if (key === undefined) return confirm({ ...state, waiting: [...state.waiting, answer] }, []);
    const decided: Decided = {
      update,
      interface: update.kind,
      success: false,
      balance: state.balance,
      position: state.position,
    };
    return confirm(
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
  const views = state.views.push(state.view);
  const next = { ...state, balance, position, balances, views, waiting: [...state.waiting, answer], decided };
  const entry: Entry = { view: state.view, position, update, key, commit: state.commit };
  return release(next, [{ type: "persist", entry: { entry, balance } }]);
}

/**
 * With failover: a keyed update decided failed goes into the log, changing nothing, so that every replica
 * records the answer (in `decided`) and a retry that reaches a later primary fails again, rather than being
 * decided anew against a balance that has grown. Its answer reflects the positions before the entry, and is
 * given once the entry is committed: then, too, no other primary had been elected when it was decided.
 */
function failedEntry(state: BranchState, requestId: number, update: Update, key: string): Step {
  const position = state.position + 1;
  const entry: Entry = { view: state.view, position, update, key, commit: state.commit, failed: true };
  const decided = succeeded(entry, state.balance);
  const answer: Waiting = {
    position: state.position,
    commitAt: position,
    requestId,
    interface: update.kind,
    success: false,
    balance: state.balance,
    durable: true,
  };
  const next: BranchState = {
    ...state,
    position,
    balances: state.balances.push(state.balance),
    views: state.views.push(state.view),
    waiting: [...state.waiting, answer],
    decided: state.decided.with(key, decided),
  };
  return release(next, [{ type: "persist", entry: { entry, balance: state.balance } }]);
}

/** At a backup: hand `update` to the primary and wait for its decision. */
function forward(state: BranchState, requestId: number, update: Update, key: string | undefined): Step {
  assert(!state.forwarded.has(requestId), `request ${requestId} is already forwarded`);
  if (state.primary === undefined) return noPrimary(state, requestId);
  const forwarded = new Map(state.forwarded);
  forwarded.set(requestId, update.kind);
  return { state: { ...state, forwarded }, outbox: [{ type: "forward", requestId, update, key }] };
}

/**
 * At a backup: apply the primary's next entry, and persist it. The driver writes it before it sends the
 * acknowledgement. An entry this log already holds (the same view at the same position) is acknowledged
 * again; one that conflicts with what it holds there replaces it and everything after it: those came from
 * a primary whose view ended before they were committed (what this branch knows is committed never goes).
 */
function applyEntry(state: BranchState, input: Extract<BranchInput, { type: "entry" }>): Step {
  const { requestId, entry } = input;
  const followed = follow(state, input.from, input.view);
  if ("refused" in followed) {
    return refusedWith(state, requestId, followed.refused);
  }
  let next = followed.state;
  const outbox: BranchOutput[] = [...followed.outbox];
  if (entry.position <= next.position) {
    if (next.views.at(entry.position) === entry.view) {
      next = learnCommit(next, Math.min(entry.commit, entry.position));
      return serveReads(next, [...outbox, {
        type: "ack",
        requestId,
        balance: next.balance,
        position: entry.position,
      }]);
    }
    next = truncate(next, entry.position - 1);
    outbox.push({ type: "persist", truncate: entry.position - 1 });
  }
  if (entry.position !== next.position + 1) {
    const message = `entry at position ${entry.position}, but branch ${next.id} expects position ` +
      `${next.position + 1}`;
    return {
      state: next,
      outbox: [...outbox, { type: "refuse", requestId, refusal: { code: "ABORTED", message } }],
    };
  }
  // A failed update's entry changes nothing (see failedEntry).
  const balance = entry.failed ? next.balance : applied(next.balance, entry.update);
  if (balance === undefined) {
    // The primary accepted this update against its balance, so this replica started from a different one
    // (it was started by hand with another balance). Refuse rather than go below zero.
    const message = `branch ${next.id} cannot apply ${entry.update.kind} ${entry.update.amount} to its ` +
      `balance ${next.balance}: the replicas have diverged`;
    return {
      state: next,
      outbox: [...outbox, { type: "refuse", requestId, refusal: { code: "ABORTED", message } }],
    };
  }
  next = {
    ...next,
    balance,
    position: entry.position,
    balances: next.balances.push(balance),
    views: next.views.push(entry.view),
    decided: entry.key === undefined ? next.decided : next.decided.with(entry.key, succeeded(entry, balance)),
  };
  return serveReads(learnCommit(next, Math.min(entry.commit, entry.position)), [
    ...outbox,
    { type: "persist", entry: { entry, balance } },
    { type: "ack", requestId, balance, position: entry.position },
  ]);
}

/** At a backup: drops the log after `position`, which must not drop anything known to be committed. */
function truncate(state: BranchState, position: number): BranchState {
  assert(
    position >= state.commit,
    `branch ${state.id} would drop committed entries: position ${position} < commit ${state.commit}`,
  );
  return {
    ...state,
    position,
    balance: balanceAt(state, position),
    balances: state.balances.take(position + 1),
    views: state.views.take(position + 1),
    synced: Math.min(state.synced, position),
    decided: state.decided.filter((decided) => entryPosition(decided) <= position),
  };
}

/** At the primary: `backup` has the log up to `position` on its disk. */
function replicated(state: BranchState, position: number, backup: number): Step {
  // An answer to a primary that has stepped down since: nothing to count.
  if (!isPrimary(state)) return { state, outbox: [] };
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
  // Only an entry of this primary's own view is committed by counting disks: one of an earlier view on a
  // majority of them may still be replaced, by a primary of a later view whose log ends with a later view
  // (Raft, 5.4.2). Committing its own commits everything before it.
  if (state.views.at(commit) !== state.view) return release(state, []);
  return release(learnCommit(state, commit), []);
}

/**
 * At the primary: sends every held answer whose position is committed (and whose decision is durable),
 * in order, and every read that may be answered; adds them to `outbox`. With async propagation, an answer
 * waits only for this branch's own disk.
 */
function release(state: BranchState, outbox: readonly BranchOutput[]): Step {
  const answered = state.propagation === "sync" ? state.commit : state.synced;
  const round = confirmedRound(state);
  const ready = (answer: Waiting) =>
    (answer.commitAt ?? answer.position) <= answered && answer.durable &&
    (answer.round === undefined || round >= answer.round);
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

/** At the primary: starts the round of heartbeats something waits for, if it may, then release. */
function confirm(state: BranchState, outbox: readonly BranchOutput[]): Step {
  const started = startRound(state);
  return release(started.state, [...outbox, ...started.outbox]);
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
  // With sync propagation the decision's position is committed (the primary answered only then). With
  // failover this log may hold, there, entries of a replaced primary: it learns commits from the primary's
  // heartbeats and entries instead, which say where the logs agree.
  const learned = state.propagation === "sync" && state.election === undefined
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
  // The primary's commit position is committed: learn it, as far as this replica holds it (with failover,
  // from the heartbeat that confirmed this read index instead: see answerForwarded).
  const learned = next.election === undefined ? learnCommit(next, Math.min(commit, next.position)) : next;
  return awaitRead(learned, {
    requestId,
    kind: "query",
    at: Math.max(commit, after),
    mark: input.view === undefined ? undefined : { position: commit, view: input.view },
  });
}

/**
 * A query naming a position (Request.after) that the primary's log does not reach: no reply of this bank
 * ever reflected it (the client's session is of another bank, or of a run on fresh data directories).
 * Waiting for it would wait forever.
 */
function pastTheLog(state: BranchState, requestId: number, after: number, end: number): Step {
  if (state.election !== undefined) {
    // Or the primary asked was replaced, and the client has seen its successor's log.
    const message = `the request has seen position ${after}, past the end of the primary's log (${end})`;
    return refuse(state, requestId, "UNAVAILABLE", message);
  }
  const message = `the request has seen position ${after}, past the end of the log (${end}): its session ` +
    "is of another bank, or of a run on other data directories";
  return refuse(state, requestId, "INVALID_ARGUMENT", message);
}

/**
 * A forward or read index at a branch that is not the primary: with a fixed primary, a sender that got
 * the layout wrong; with failover, a sender that has not heard of the new view yet, which may try again.
 */
function notPrimary(state: BranchState, requestId: number): Step {
  const code = state.election === undefined ? "INVALID_ARGUMENT" : "UNAVAILABLE";
  return refuse(state, requestId, code, `branch ${state.id} is not the primary`);
}

/** A request that must go to the primary, at a branch that knows of none in its view (an election is on). */
function noPrimary(state: BranchState, requestId: number): Step {
  return refuse(
    state,
    requestId,
    "UNAVAILABLE",
    `branch ${state.id} knows of no primary in view ${state.view}`,
  );
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
  return refusedWith(state, requestId, { code, message });
}

function refusedWith(state: BranchState, requestId: number, refusal: Refusal): Step {
  return { state, outbox: [{ type: "refuse", requestId, refusal }] };
}
