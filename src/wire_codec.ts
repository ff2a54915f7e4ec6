/**
 * Decoding wire messages into the core's inputs, and the core's outputs into wire messages. Pure: the
 * checks a branch makes before anything reaches its state live here, so a malformed request is refused
 * with INVALID_ARGUMENT and changes nothing.
 *
 * @module
 */

import type { Entry, LogMark, Refusal, Update } from "./branch_core.ts";
import { type Interface, INTERFACES } from "./input.ts";
import type { ClockEvent, MessageKind, RequestRef } from "./lamport.ts";
import type {
  WireClockEvent,
  WireEntry,
  WireForward,
  WireHeartbeat,
  WireRequest,
  WireResponse,
  WireVoteRequest,
} from "./transport.ts";

/** A decoded value, or why it could not be decoded. */
export type Decoded<T> = { readonly ok: true; readonly value: T } | {
  readonly ok: false;
  readonly refusal: Refusal;
};

/** A customer's request, well-formed. */
export interface CustomerRequest {
  readonly interface: Interface;
  /** Units; 0 for a query. */
  readonly amount: number;
  /** "customer_id/request_id" when the request has a request_id: what a retry is recognised by. */
  readonly key: string | undefined;
  /** For a query: the log position the branch must have applied before it answers; 0 for none. */
  readonly after: number;
}

const INT32_MAX = 2 ** 31 - 1;

/** Decodes and checks a customer's request: a known interface and a non-negative safe amount. */
export function decodeRequest(wire: WireRequest): Decoded<CustomerRequest> {
  const kind = wire.interface;
  if (!INTERFACES.includes(kind as Interface)) {
    return invalid(`interface must be one of ${INTERFACES.join(", ")}, got ${JSON.stringify(kind)}`);
  }
  const customer = units(wire.customer_id);
  const request = units(wire.request_id);
  if (customer === undefined || request === undefined) {
    return invalid(
      `customer_id and request_id must be whole numbers, got ${wire.customer_id}, ${wire.request_id}`,
    );
  }
  const key = request === 0 ? undefined : `${customer}/${request}`;
  const after = units(wire.after ?? 0);
  if (after === undefined) return invalid(`after must be a whole number, got ${wire.after}`);
  if (kind === "query") return { ok: true, value: { interface: "query", amount: 0, key, after } };
  if (wire.money < 0) return invalid(`money must not be negative, got ${wire.money}`);
  const amount = units(wire.amount);
  if (amount === undefined) return invalid(`amount must be from 0 to 2^53 - 1, got ${wire.amount}`);
  if (amount !== 0 && wire.money !== 0 && wire.money !== amount) {
    return invalid(`money (${wire.money}) and amount (${amount}) disagree`);
  }
  return {
    ok: true,
    value: { interface: kind as Interface, amount: amount !== 0 ? amount : wire.money, key, after },
  };
}

/** Decodes and checks an update that a backup forwards to the primary, with its key (if any). */
export function decodeForward(
  wire: WireForward,
): Decoded<{ readonly update: Update; readonly key: string | undefined }> {
  const key = decodeKey(wire.key);
  if (!key.ok) return key;
  const update = decodeUpdate(wire.interface, wire.amount);
  return update.ok ? { ok: true, value: { update: update.value, key: key.value } } : update;
}

/**
 * A request's key as it travels between branches: "customer/request", or empty for none. Only the one way of
 * writing each pair of ids is taken (no leading zeros): a key is compared as text, so "07/3" would be another
 * request than "7/3".
 */
function decodeKey(wire: string): Decoded<string | undefined> {
  const ids = /^(0|[1-9]\d{0,15})\/(0|[1-9]\d{0,15})$/.exec(wire);
  const safe = ids !== null && Number.isSafeInteger(Number(ids[1])) && Number.isSafeInteger(Number(ids[2]));
  if (wire !== "" && !safe) {
    return invalid(
      `key must be "customer/request" (two whole numbers up to 2^53 - 1), got ${JSON.stringify(wire)}`,
    );
  }
  return { ok: true, value: wire === "" ? undefined : wire };
}

/** Decodes and checks a read index question: the key of the customer request it is asked for, if any. */
export function decodeReadIndex(wire: { readonly key?: string }): Decoded<string | undefined> {
  return decodeKey(wire.key ?? "");
}

/** Decodes and checks an entry of the primary's log. */
export function decodeEntry(wire: WireEntry): Decoded<Entry> {
  const view = units(wire.view);
  if (view === undefined) return invalid(`view must be a whole number, got ${wire.view}`);
  const position = units(wire.position);
  if (position === undefined || position === 0) {
    return invalid(`position must be a whole number from 1, got ${wire.position}`);
  }
  const commit = units(wire.commit);
  if (commit === undefined || commit >= position) {
    return invalid(`commit must be a whole number below the position, got ${wire.commit}`);
  }
  const key = decodeKey(wire.key ?? "");
  if (!key.ok) return key;
  if (wire.failed === true && key.value === undefined) {
    return invalid("a failed update's entry names its request");
  }
  const update = decodeUpdate(wire.interface, wire.amount);
  if (!update.ok) return update;
  const failed = wire.failed === true ? { failed: true as const } : {};
  return { ok: true, value: { view, position, update: update.value, key: key.value, commit, ...failed } };
}

function decodeUpdate(kind: string, value: number): Decoded<Update> {
  if (kind !== "deposit" && kind !== "withdraw") {
    return invalid(`interface must be deposit or withdraw, got ${JSON.stringify(kind)}`);
  }
  const amount = units(value);
  if (amount === undefined) return invalid(`amount must be from 0 to 2^53 - 1, got ${value}`);
  return { ok: true, value: { kind, amount } };
}

/** The wire response for a reply; `money` keeps the original int32 field only while the balance fits. */
export function encodeResponse(
  kind: Interface,
  success: boolean,
  balance: number,
  position: number,
): WireResponse {
  return { interface: kind, success, money: balance <= INT32_MAX ? balance : 0, balance, position };
}

/** A heartbeat's fields (see the core's `heartbeat` input), each a whole number. */
export function decodeHeartbeat(
  wire: WireHeartbeat,
): Decoded<{ readonly last: LogMark; readonly commit: number; readonly round: number }> {
  const [position, view, commit, round] = [wire.last_position, wire.last_view, wire.commit, wire.round].map(
    units,
  );
  if (position === undefined || view === undefined || commit === undefined || round === undefined) {
    return invalid("a heartbeat names whole numbers only");
  }
  return { ok: true, value: { last: { position, view }, commit, round } };
}

/** A vote request's fields (see the core's `voteRequest` input), each a whole number. */
export function decodeVoteRequest(
  wire: WireVoteRequest,
): Decoded<{ readonly from: number; readonly view: number; readonly last: LogMark }> {
  const [from, view, position, lastView] = [wire.candidate, wire.view, wire.last_position, wire.last_view]
    .map(units);
  if (from === undefined || view === undefined || position === undefined || lastView === undefined) {
    return invalid("a vote request names whole numbers only");
  }
  return { ok: true, value: { from, view, last: { position, view: lastView } } };
}

/** An int64 field's value as a count of units (a safe non-negative integer), or undefined. */
export function units(value: number): number | undefined {
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

function invalid(message: string): { readonly ok: false; readonly refusal: Refusal } {
  return { ok: false, refusal: { code: "INVALID_ARGUMENT", message } };
}

/** The customer and request ids a key ("customer/request") names; undefined for none. */
export function requestOfKey(key: string | undefined): RequestRef | undefined {
  if (key === undefined || key === "") return undefined;
  const [customer, request] = key.split("/").map(Number);
  return customer === undefined || request === undefined ? undefined : { customer, request };
}

const MESSAGE_KINDS: readonly MessageKind[] = [
  "request",
  "reply",
  "forward",
  "answer",
  "entry",
  "ack",
  "read",
  "index",
];

/** Decodes and checks one of a branch's recorded clock events (Branch.events). */
export function decodeClockEvent(wire: WireClockEvent): Decoded<ClockEvent> {
  const [clock, peer, customer, request, sent] = [
    wire.clock,
    wire.peer_id,
    wire.customer_id,
    wire.request_id,
    wire.sent,
  ]
    .map(units);
  if (clock === undefined || peer === undefined || customer === undefined || request === undefined) {
    return invalid(`a clock event's numbers must be whole, got ${JSON.stringify(wire)}`);
  }
  if (sent === undefined || (wire.kind !== "send" && wire.kind !== "recv")) {
    return invalid(`a clock event is a send or a recv, got ${JSON.stringify(wire)}`);
  }
  if (wire.peer_type !== "customer" && wire.peer_type !== "branch") {
    return invalid(`a clock event's peer is a customer or a branch, got ${JSON.stringify(wire.peer_type)}`);
  }
  if (
    !MESSAGE_KINDS.includes(wire.message as MessageKind) || !INTERFACES.includes(wire.interface as Interface)
  ) {
    return invalid(
      `unknown message ${JSON.stringify(wire.message)} or interface ${JSON.stringify(wire.interface)}`,
    );
  }
  return {
    ok: true,
    value: {
      clock,
      kind: wire.kind,
      peer: { type: wire.peer_type, id: peer },
      message: wire.message as MessageKind,
      interface: wire.interface as Interface,
      about: { customer, request },
      ...(wire.kind === "recv" ? { sent } : {}),
    },
  };
}
