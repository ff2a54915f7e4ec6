/**
 * Stepping a branch's pure core by hand, for the clause tests.
 *
 * @module
 */

import { type BranchInput, type BranchOutput, type BranchState, step } from "../src/branch_core.ts";
import type { Interface } from "../src/input.ts";

/** Steps `state` through `inputs`, returning the final state and every output in order. */
export function run(
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

/** The reply to a request that succeeded. */
export function reply(requestId: number, kind: Interface, balance: number, position: number): BranchOutput {
  return { type: "reply", requestId, interface: kind, success: true, balance, position };
}

/** The reply to an update that failed, decided after `position`, the balance then `balance`. */
export function failedReply(
  requestId: number,
  kind: Interface,
  balance: number,
  position: number,
): BranchOutput {
  return { type: "reply", requestId, interface: kind, success: false, balance, position };
}
