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
 * primary decides it against its balance, gives it the next **log position**, applies it, sends it as an
 * **entry** to every backup at once, and answers (the customer, or the backup that forwarded it) once every
 * backup has applied the entry. Each backup applies entries strictly in position order. Since only the
 * primary decides, and every replica applies the same updates in the same order, customers acting one at
 * a time always find every replica holding the same balance.
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
  /** A customer's request, already decoded and well-formed. */
  | {
    readonly type: "request";
    readonly requestId: number;
    readonly interface: Interface;
    readonly amount: number;
  }
  /** At the primary: backup `from` forwards a customer's update. */
  | { readonly type: "forward"; readonly requestId: number; readonly from: number; readonly update: Update }
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
     * update or a query, the last position applied when it was decided or read (0 before the first).
     */
    readonly position: number;
  }
  /** Answer the entry `requestId`: applied, leaving this replica at `balance`. */
  | { readonly type: "ack"; readonly requestId: number; readonly balance: number; readonly position: number }
  /** Answer the inbound call `requestId` with an error status. */
  | { readonly type: "refuse"; readonly requestId: number; readonly refusal: Refusal }
  /** At the primary: send `entry` to backup `to`; feed its outcome back as a `replicated` input. */
  | { readonly type: "replicate"; readonly to: number; readonly entry: Entry }
  /** At a backup: send `update` to the primary; feed its outcome back as a `decided` input. */
  | { readonly type: "forward"; readonly requestId: number; readonly update: Update };

/** At the primary: an entry applied here whose answer waits for the backups. */
export interface Replicating {
  /** The request or forward to answer once every backup has applied the entry. */
  readonly requestId: number;
  readonly interface: Interface;
  /** The balance to answer with: the primary's balance right after applying the entry. */
  readonly balance: number;
  readonly awaiting: ReadonlySet<number>;
}

/** A branch's whole protocol state. */
export interface BranchState {
  readonly id: number;
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
  /** At the primary: entries waiting for backups, by position. */
  readonly replicating: ReadonlyMap<number, Replicating>;
  /** At a backup: forwarded requests waiting for the primary's decision, by request id. */
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
export function initialState(id: number, balance: number, peers: readonly number[]): BranchState {
  assert(
    Number.isSafeInteger(balance) && balance >= 0,
    `balance ${balance} is not a safe non-negative integer`,
  );
  assert(!peers.includes(id), `branch ${id} lists itself as a peer`);
  assert(new Set(peers).size === peers.length, `branch ${id} lists a peer twice`);
  const primary = primaryOf([id, ...peers]);
  return {
    id,
    primary,
    view: 0,
    backups: id === primary ? [...peers] : [],
    balance,
    position: 0,
    replicating: new Map(),
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
      if (input.interface === "query") {
        return { state, outbox: [reply(input.requestId, "query", true, state.balance, state.position)] };
      }
      return isPrimary(state)
        ? sequence(state, input.requestId, { kind: input.interface, amount: input.amount })
        : forward(state, input.requestId, { kind: input.interface, amount: input.amount });
    case "forward":
      if (!isPrimary(state)) {
        return refuse(state, input.requestId, "INVALID_ARGUMENT", `branch ${state.id} is not the primary`);
      }
      assert(state.backups.includes(input.from), `branch ${input.from} is not a backup`);
      return sequence(state, input.requestId, input.update);
    case "entry":
      return applyEntry(state, input.requestId, input.entry);
    case "replicated":
      return maybeAnswer(state, input.position, input.backup, input.refusal);
    case "decided":
      return answerForwarded(state, input.requestId, input.decision, input.refusal);
  }
}

/** The balance after `update`, or undefined when the update must be refused. */
export function applied(balance: number, update: Update): number | undefined {
  const next = update.kind === "deposit" ? balance + update.amount : balance - update.amount;
  return next >= 0 && Number.isSafeInteger(next) ? next : undefined;
}

/** At the primary: decide `update`, and if it succeeds, apply it and send it to every backup. */
function sequence(state: BranchState, requestId: number, update: Update): Step {
  const balance = applied(state.balance, update);
  // Decided once, here, in log order: a failed update changes nothing and takes no position.
  if (balance === undefined) {
    return { state, outbox: [reply(requestId, update.kind, false, state.balance, state.position)] };
  }
  const position = state.position + 1;
  const next = { ...state, balance, position };
  if (state.backups.length === 0) {
    return { state: next, outbox: [reply(requestId, update.kind, true, balance, position)] };
  }
  const replicating = new Map(state.replicating);
  replicating.set(position, { requestId, interface: update.kind, balance, awaiting: new Set(state.backups) });
  const entry: Entry = { view: state.view, position, update };
  const outbox = state.backups.map((to): BranchOutput => ({ type: "replicate", to, entry }));
  return { state: { ...next, replicating }, outbox };
}

/** At a backup: hand `update` to the primary and wait for its decision. */
function forward(state: BranchState, requestId: number, update: Update): Step {
  assert(!state.forwarded.has(requestId), `request ${requestId} is already forwarded`);
  const forwarded = new Map(state.forwarded);
  forwarded.set(requestId, update.kind);
  return { state: { ...state, forwarded }, outbox: [{ type: "forward", requestId, update }] };
}

/** At a backup: apply the primary's next entry, which must follow the last one applied here. */
function applyEntry(state: BranchState, requestId: number, entry: Entry): Step {
  if (isPrimary(state)) {
    return refuse(state, requestId, "INVALID_ARGUMENT", `branch ${state.id} is the primary`);
  }
  if (entry.view !== state.view) {
    return refuse(
      state,
      requestId,
      "ABORTED",
      `entry of view ${entry.view}, but branch ${state.id} is in view ${state.view}`,
    );
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
  return {
    state: { ...state, balance, position: entry.position },
    outbox: [{ type: "ack", requestId, balance, position: entry.position }],
  };
}

/** At the primary: count `backup`'s answer for `position`; answer once every backup has applied it. */
function maybeAnswer(
  state: BranchState,
  position: number,
  backup: number,
  refusal: Refusal | undefined,
): Step {
  const waiting = state.replicating.get(position);
  // Unknown: an earlier refusal already answered this entry's request; later outcomes have nobody to tell.
  if (waiting === undefined) return { state, outbox: [] };
  assert(waiting.awaiting.has(backup), `branch ${backup} answered position ${position} twice`);
  const replicating = new Map(state.replicating);
  replicating.delete(position);
  if (refusal !== undefined) {
    const message = `replication to branch ${backup} failed: ${refusal.message}`;
    return {
      state: { ...state, replicating },
      outbox: [{ type: "refuse", requestId: waiting.requestId, refusal: { ...refusal, message } }],
    };
  }
  const awaiting = new Set(waiting.awaiting);
  awaiting.delete(backup);
  if (awaiting.size > 0) {
    replicating.set(position, { ...waiting, awaiting });
    return { state: { ...state, replicating }, outbox: [] };
  }
  return {
    state: { ...state, replicating },
    outbox: [reply(waiting.requestId, waiting.interface, true, waiting.balance, position)],
  };
}

/** At a backup: answer a forwarded request with the primary's decision, or with why there is none. */
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
    state: next,
    outbox: [reply(requestId, kind, decision.success, decision.balance, decision.position)],
  };
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
