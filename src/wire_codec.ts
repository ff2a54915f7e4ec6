/**
 * Decoding wire messages into the core's inputs, and the core's outputs into wire messages. Pure: the
 * checks a branch makes before anything reaches its state live here, so a malformed request is refused
 * with INVALID_ARGUMENT and changes nothing.
 *
 * @module
 */

import type { Refusal, Update } from "./branch_core.ts";
import { type Interface, INTERFACES } from "./input.ts";
import type { Outgoing, WirePropagation, WireRequest, WireResponse } from "./transport.ts";

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
}

const INT32_MAX = 2 ** 31 - 1;

/** Decodes and checks a customer's request: a known interface and a non-negative safe amount. */
export function decodeRequest(wire: WireRequest): Decoded<CustomerRequest> {
  const kind = wire.interface;
  if (!INTERFACES.includes(kind as Interface)) {
    return invalid(`interface must be one of ${INTERFACES.join(", ")}, got ${JSON.stringify(kind)}`);
  }
  if (kind === "query") return { ok: true, value: { interface: "query", amount: 0 } };
  if (wire.money < 0) return invalid(`money must not be negative, got ${wire.money}`);
  const amount = parseUnits(wire.amount);
  if (amount === undefined) return invalid(`amount must be from 0 to 2^53 - 1, got ${wire.amount}`);
  if (amount !== 0 && wire.money !== 0 && wire.money !== amount) {
    return invalid(`money (${wire.money}) and amount (${amount}) disagree`);
  }
  return { ok: true, value: { interface: kind as Interface, amount: amount !== 0 ? amount : wire.money } };
}

/** Decodes and checks a propagated update (its `seq` belongs to the link, not to the update). */
export function decodePropagation(
  wire: WirePropagation,
): Decoded<{ readonly origin: number; readonly update: Update }> {
  const origin = parseUnits(wire.origin);
  if (origin === undefined) return invalid(`origin must be a branch id, got ${wire.origin}`);
  if (wire.interface !== "deposit" && wire.interface !== "withdraw") {
    return invalid(`interface must be deposit or withdraw, got ${JSON.stringify(wire.interface)}`);
  }
  const amount = parseUnits(wire.amount);
  if (amount === undefined) return invalid(`amount must be from 0 to 2^53 - 1, got ${wire.amount}`);
  return { ok: true, value: { origin, update: { kind: wire.interface, amount } } };
}

/** The wire response for a reply; `money` keeps the original int32 field only while the balance fits. */
export function encodeResponse(kind: Interface, success: boolean, balance: number): Outgoing<WireResponse> {
  return { interface: kind, success, money: balance <= INT32_MAX ? balance : 0, balance: String(balance) };
}

/** A decimal string from an int64 field as a safe non-negative integer, or undefined. */
export function parseUnits(decimal: string): number | undefined {
  if (!/^\d{1,16}$/.test(decimal)) return undefined;
  const value = Number(decimal);
  return Number.isSafeInteger(value) ? value : undefined;
}

function invalid(message: string): { readonly ok: false; readonly refusal: Refusal } {
  return { ok: false, refusal: { code: "INVALID_ARGUMENT", message } };
}
