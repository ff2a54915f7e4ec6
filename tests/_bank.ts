/**
 * A bank of real branch processes started by hand (branch.ts), each on a fixed loopback port and writing
 * its own directory, for tests that kill, pause and restart branches.
 *
 * @module
 */

import { freePorts, startBranch, type StartedBranch } from "./_processes.ts";
import type { CustomerEntry } from "../src/input.ts";
import type { Random } from "../src/random.ts";
import type { BranchClient, WireStatus } from "../src/transport.ts";

/** `size` branches, ids 1 to `size` (1 is the primary), each starting with `balance`. */
export class Bank {
  readonly ids: readonly number[];
  readonly ports: readonly number[];
  readonly branches = new Map<number, StartedBranch>();

  constructor(
    readonly root: string,
    readonly options: {
      readonly size: number;
      readonly balance: number;
      readonly deadlineMs: number;
      /** More flags for every branch, such as ["--propagation", "async"]. */
      readonly flags?: readonly string[];
    },
  ) {
    this.ids = Array.from({ length: options.size }, (_, index) => index + 1);
    this.ports = freePorts(options.size);
  }

  address(id: number): string {
    return `127.0.0.1:${this.ports[id - 1]}`;
  }

  /** Every branch's address, by id. */
  addresses(): Map<number, string> {
    return new Map(this.ids.map((id) => [id, this.address(id)]));
  }

  /** Starts every branch. */
  async startAll(): Promise<void> {
    await Promise.all(this.ids.map((id) => this.start(id)));
  }

  /** Starts branch `id` (again, after a kill: same port, same directory). */
  async start(id: number): Promise<void> {
    const peers = this.ids.filter((peer) => peer !== id).flatMap((
      peer,
    ) => ["--peer", `${peer}=${this.address(peer)}`]);
    this.branches.set(
      id,
      await startBranch([
        "--id",
        String(id),
        "--balance",
        String(this.options.balance),
        "--listen",
        this.address(id),
        "--data-dir",
        `${this.root}/branch-${id}`,
        "--deadline-ms",
        String(this.options.deadlineMs),
        ...this.options.flags ?? [],
        ...peers,
      ]),
    );
  }

  /** The running process of branch `id`. */
  branch(id: number): StartedBranch {
    const branch = this.branches.get(id);
    if (branch === undefined) throw new Error(`branch ${id} was never started`);
    return branch;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.branches.values()].map((branch) => branch.stop()));
  }
}

/**
 * `entries` customer entries (ids from `firstCustomer`) of six seeded random updates and queries each, sent
 * to the branches in `to`.
 */
export function workload(
  random: Random,
  entries: number,
  to: readonly number[],
  firstCustomer: number,
): CustomerEntry[] {
  return Array.from({ length: entries }, (_, index) => ({
    id: firstCustomer + index,
    events: Array.from({ length: 6 }, () => {
      const kind = random.pick(["query", "deposit", "withdraw"] as const);
      return {
        id: undefined,
        interface: kind,
        amount: kind === "query" ? 0 : random.below(300),
        branch: random.pick(to),
      };
    }),
  }));
}

/** The branch's status once `ready` holds of it, asked every 20 ms for up to 5 s. */
export async function statusUntil(
  client: BranchClient,
  ready: (status: WireStatus) => boolean,
  deadlineMs = 2_000,
): Promise<WireStatus> {
  for (let attempt = 1;; attempt++) {
    const status = await client.status(deadlineMs);
    if (ready(status) || attempt === 250) return status;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
