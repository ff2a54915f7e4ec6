/**
 * Stepping a branch's pure core by hand, for the clause tests.
 *
 * @module
 */

import { type BranchInput, type BranchOutput, type BranchState, step } from "../src/branch_core.ts";

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
