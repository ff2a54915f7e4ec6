/**
 * Thrifty replication's bookkeeping at the primary, shared by src/branch_node.ts and src/simulator.ts: which
 * live backups a batch of new entries goes to at once (sendAtOnce in src/branch_core.ts), what is held for
 * the others, and which backups are asking the primary for something. Pure: the drivers decide when held
 * entries go (a timer, or a backup asking) and send them.
 *
 * @module
 */

import { type BranchState, type Entry, sendAtOnce } from "./branch_core.ts";

/** At the primary: entries held for backups, and the backups waiting on a forward or read index. */
export class Holding {
  readonly #held = new Map<number, Entry[]>();
  readonly #asking = new Map<number, number>();

  /**
   * Entries just written: returns, by backup, what to send each of the `live` backups that a commit or a
   * customer waits on now (what was held for it, then `entries`), and holds `entries` for the others.
   */
  ship(state: BranchState, live: Iterable<number>, entries: readonly Entry[]): Map<number, Entry[]> {
    const backups = [...live];
    const now = sendAtOnce(state, { live: backups, asking: new Set(this.#asking.keys()) });
    const batches = new Map<number, Entry[]>();
    for (const backup of backups) {
      const held = this.#held.get(backup) ?? [];
      held.push(...entries);
      if (now.has(backup)) {
        this.#held.delete(backup);
        batches.set(backup, held);
      } else {
        this.#held.set(backup, held);
      }
    }
    return batches;
  }

  /** Whether anything is held for any backup. */
  get holding(): boolean {
    return this.#held.size > 0;
  }

  /** What is held for `backup`, no longer held: to send it now. */
  take(backup: number): Entry[] | undefined {
    const held = this.#held.get(backup);
    this.#held.delete(backup);
    return held;
  }

  /** Whether anything is held for `backup`. */
  holds(backup: number): boolean {
    return this.#held.has(backup);
  }

  /** The backups anything is held for. */
  heldFor(): number[] {
    return [...this.#held.keys()];
  }

  /** `backup`'s link broke: what was held for it is dropped (its next link catches it up from disk). */
  forget(backup: number): void {
    this.#held.delete(backup);
  }

  /** Everything held is dropped (the branch is stopping). */
  clear(): void {
    this.#held.clear();
  }

  /** `backup` sent a forward or a read index: until it is answered, entries go to it at once. */
  asked(backup: number): void {
    this.#asking.set(backup, (this.#asking.get(backup) ?? 0) + 1);
  }

  /** One of `backup`'s forwards or read indexes was answered, or failed. */
  answered(backup: number): void {
    const left = (this.#asking.get(backup) ?? 1) - 1;
    if (left === 0) this.#asking.delete(backup);
    else this.#asking.set(backup, left);
  }
}
