/**
 * Assertions for programmer errors: a broken invariant crashes the process instead of carrying on with a
 * state that should not exist. Operating errors (an overdraft, a peer down) are values, never assertions.
 *
 * @module
 */

/** Thrown when an invariant does not hold: a bug, never a user's mistake. */
export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** Crashes with `message` unless `condition` holds. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
