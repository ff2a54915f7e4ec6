/**
 * The branch protocol as a deterministic state machine: no sockets, timers or clocks.
 *
 * A driver feeds it inputs (a customer's request, a propagation from another branch, the outcome of a
 * propagation it sent) through {@linkcode step}, and carries out the outbox it returns: replies to send and
 * propagations to make. Because every effect is a value in the outbox, the protocol is tested without a
 * network, and a simulator can drive any interleaving of inputs.
 *
 * The protocol of this version: the branch that receives a deposit or withdrawal (its origin) decides it
 * against its own balance, applies it, propagates it to every other branch at once, and replies to the
 * customer once every other branch has acknowledged. With customers acting one at a time, every replica
 * therefore holds the same balance whenever a customer sends a request.
 *
 * @module
 */

import { assert } from "./assert.ts";
import type { Interface } from "./input.ts";

/** A change to the balance, as it is propagated. */
export interface Update {
  readonly kind: "deposit" | "withdraw";
  /** Units, a safe non-negative integer. */
  readonly amount: number;
}

/** The gRPC status a refusal travels as. */
export type RefusalCode = "INVALID_ARGUMENT" | "UNAVAILABLE" | "ABORTED" | "DEADLINE_EXCEEDED" | "INTERNAL";

/** Why a propagation to a peer did not succeed. */
export interface Refusal {
  readonly code: RefusalCode;
  readonly message: string;
}

/** What the driver feeds the core. `requestId` is the driver's handle for the inbound call. */
export type BranchInput =
  /** A customer's request, already decoded and well-formed. */
  | {
    readonly type: "request";
    readonly requestId: number;
    readonly interface: Interface;
    readonly amount: number;
  }
  /** Another branch propagates an update it has applied. */
  | {
    readonly type: "propagation";
    readonly requestId: number;
    readonly origin: number;
    readonly update: Update;
  }
  /** A propagation this branch sent for `requestId` was acknowledged by `peer`, or failed. */
  | {
    readonly type: "propagated";
    readonly requestId: number;
    readonly peer: number;
    readonly refusal: Refusal | undefined;
  };

/** What the core asks the driver to do. */
export type BranchOutput =
  /** Answer the customer's request `requestId`. */
  | {
    readonly type: "reply";
    readonly requestId: number;
    readonly interface: Interface;
    readonly success: boolean;
    readonly balance: number;
  }
  /** Acknowledge the propagation `requestId`. */
  | { readonly type: "ack"; readonly requestId: number; readonly balance: number }
  /** Answer the inbound call `requestId` (request or propagation) with an error status. */
  | { readonly type: "refuse"; readonly requestId: number; readonly refusal: Refusal }
  /** Send `update` to branch `to`; feed its outcome back as a `propagated` input. */
  | { readonly type: "propagate"; readonly requestId: number; readonly to: number; readonly update: Update };

/** An update applied here whose reply waits for the other branches' acknowledgements. */
export interface Pending {
  readonly interface: Interface;
  /** The balance to reply with: this branch's balance right after applying the update. */
  readonly balance: number;
  readonly awaiting: ReadonlySet<number>;
}

/** A branch's whole protocol state. */
export interface BranchState {
  readonly id: number;
  /** The other branches' ids. */
  readonly peers: readonly number[];
  /** Units, a safe non-negative integer. */
  readonly balance: number;
  readonly pending: ReadonlyMap<number, Pending>;
}

/** The result of one step. */
export interface Step {
  readonly state: BranchState;
  readonly outbox: readonly BranchOutput[];
}

/** A branch with `balance` units and the given peers, nothing pending. */
export function initialState(id: number, balance: number, peers: readonly number[]): BranchState {
  assert(
    Number.isSafeInteger(balance) && balance >= 0,
    `balance ${balance} is not a safe non-negative integer`,
  );
  assert(!peers.includes(id), `branch ${id} lists itself as a peer`);
  assert(new Set(peers).size === peers.length, `branch ${id} lists a peer twice`);
  return { id, peers: [...peers], balance, pending: new Map() };
}

/** Feeds one input to the branch; returns its next state and what to send. */
export function step(state: BranchState, input: BranchInput): Step {
  switch (input.type) {
    case "request":
      return input.interface === "query"
        ? { state, outbox: [reply(input.requestId, "query", true, state.balance)] }
        : becomeOrigin(state, input.requestId, { kind: input.interface, amount: input.amount });
    case "propagation":
      return applyPropagation(state, input.requestId, input.origin, input.update);
    case "propagated":
      return maybeReply(state, input.requestId, input.peer, input.refusal);
  }
}

/** The balance after `update`, or undefined when the update must be refused. */
export function applied(balance: number, update: Update): number | undefined {
  const next = update.kind === "deposit" ? balance + update.amount : balance - update.amount;
  return next >= 0 && Number.isSafeInteger(next) ? next : undefined;
}

function becomeOrigin(state: BranchState, requestId: number, update: Update): Step {
  assert(!state.pending.has(requestId), `request ${requestId} is already pending`);
  const balance = applied(state.balance, update);
  // A refused update changes nothing here and so is not propagated: the other replicas already agree.
  if (balance === undefined) return { state, outbox: [reply(requestId, update.kind, false, state.balance)] };
  if (state.peers.length === 0) {
    return { state: { ...state, balance }, outbox: [reply(requestId, update.kind, true, balance)] };
  }
  const pending = new Map(state.pending);
  pending.set(requestId, { interface: update.kind, balance, awaiting: new Set(state.peers) });
  const outbox = state.peers.map((to): BranchOutput => ({ type: "propagate", requestId, to, update }));
  return { state: { ...state, balance, pending }, outbox };
}

function applyPropagation(state: BranchState, requestId: number, origin: number, update: Update): Step {
  assert(origin !== state.id, `branch ${state.id} received its own propagation`);
  const balance = applied(state.balance, update);
  if (balance === undefined) {
    // The origin accepted this update against its balance, so ours differs from it: the replicas have
    // diverged (customers acting at once can do that in this version). Refuse rather than go negative.
    const message = `branch ${state.id} cannot apply ${update.kind} ${update.amount} from branch ${origin} ` +
      `to its balance ${state.balance}: the replicas have diverged`;
    return { state, outbox: [{ type: "refuse", requestId, refusal: { code: "ABORTED", message } }] };
  }
  return { state: { ...state, balance }, outbox: [{ type: "ack", requestId, balance }] };
}

function maybeReply(state: BranchState, requestId: number, peer: number, refusal: Refusal | undefined): Step {
  const pending = state.pending.get(requestId);
  // Unknown: an earlier refusal already answered this request; later outcomes have nobody to tell.
  if (pending === undefined) return { state, outbox: [] };
  assert(pending.awaiting.has(peer), `branch ${peer} answered request ${requestId} twice`);
  const rest = new Map(state.pending);
  rest.delete(requestId);
  if (refusal !== undefined) {
    const message = `propagation to branch ${peer} failed: ${refusal.message}`;
    return {
      state: { ...state, pending: rest },
      outbox: [{ type: "refuse", requestId, refusal: { ...refusal, message } }],
    };
  }
  const awaiting = new Set(pending.awaiting);
  awaiting.delete(peer);
  if (awaiting.size > 0) {
    rest.set(requestId, { ...pending, awaiting });
    return { state: { ...state, pending: rest }, outbox: [] };
  }
  return {
    state: { ...state, pending: rest },
    outbox: [reply(requestId, pending.interface, true, pending.balance)],
  };
}

function reply(requestId: number, kind: Interface, success: boolean, balance: number): BranchOutput {
  return { type: "reply", requestId, interface: kind, success, balance };
}
