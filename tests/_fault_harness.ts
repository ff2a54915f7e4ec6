/**
 * The fault harness, in the manner of Jepsen: concurrent customers against real branch processes while,
 * on a seeded schedule, branches are killed with SIGKILL and started again on their directories, or paused
 * with SIGSTOP and resumed; then the whole history and every replica go through the checker. Used by
 * tests/fault_harness_test.ts (one run, in CI) and `deno task faults` (many runs, with a report).
 *
 * The branches run with `--failover`. The first fault kills the primary, so that every run meets that case,
 * and it stays down until the faults are over: the others elect a new one, and the customers move on from
 * it to other branches (CustomerRunOptions.moveOn). The harness measures the time until the bank serves
 * again (a query at another branch, which needs the new primary's commit position and its confirmation
 * that it still leads, is answered). The other faults come one at a time, each followed by a restart or a
 * resume, so that a majority is always up. At the end the primary killed for good is started again on its
 * directory, and rejoins as a backup.
 *
 * @module
 */

import { Bank } from "./_bank.ts";
import { checkHistory } from "../src/checker.ts";
import {
  connectAll,
  finalStates,
  runCustomers,
  type Session,
  type TimedResult,
} from "../src/customer_run.ts";
import { historyOf } from "../src/history.ts";
import type { CustomerEntry, Scenario } from "../src/input.ts";
import { Random } from "../src/random.ts";
import { BranchClient } from "../src/transport.ts";

/** One run's shape; by default 5 branches, 8 customers, and 4 faults. */
export interface HarnessOptions {
  readonly seed: number;
  /** Where the branches' data directories go. */
  readonly root: string;
  readonly branches?: number;
  readonly customers?: number;
  /** How many faults, one after another while the customers run; the first kills the primary. */
  readonly faults?: number;
}

/** The shape of a run when HarnessOptions leaves it out. */
export const HARNESS_DEFAULTS = { branches: 5, customers: 8, faults: 4 } as const;

/** What one run did. */
export interface HarnessReport {
  readonly seed: number;
  /** Each fault: what, to which branch, and whether that branch was the primary then. */
  readonly faults: readonly {
    readonly kind: "kill" | "pause";
    readonly branch: number;
    readonly primary: boolean;
  }[];
  /** Requests answered, and of those, updates that succeeded. */
  readonly requests: number;
  readonly updates: number;
  /** The checker's verdict on the history and the final states; undefined when they hold. */
  readonly violation: string | undefined;
  /** For each kill of the primary: ms from the kill until another branch answered a query through a new one. */
  readonly recoveriesMs: readonly number[];
}

const BALANCE = 1_000;
const DEADLINE_MS = 1_000;
/** Enough attempts, with backoff doubling to 1 s, to outlast any fault the harness injects. */
const ATTEMPTS = 40;
/** Requests per customer in each round; rounds go on until the last fault is over. */
const ROUND_REQUESTS = 10;

/**
 * Runs the harness once. The schedule of faults is drawn from the seed, but the processes run in real time:
 * a seed does not replay a run exactly, as the simulator's do.
 */
export async function runHarness(options: HarnessOptions): Promise<HarnessReport> {
  const { seed, root } = options;
  const { branches, customers, faults } = { ...HARNESS_DEFAULTS, ...options };
  const random = new Random(seed);
  const flags = ["--failover"];
  await using bank = new Bank(root, { size: branches, balance: BALANCE, deadlineMs: DEADLINE_MS, flags });
  await bank.startAll();
  const clients = connectAll(bank.addresses());
  /** The branch that is primary now, by asking them (the first start's is the lowest id). */
  const currentPrimary = async () => {
    const roles = await Promise.all(
      bank.ids.map((id) =>
        (clients.get(id) as BranchClient).status(DEADLINE_MS).then((s) => s, () => undefined)
      ),
    );
    return roles.find((status) => status?.role === "primary")?.id;
  };
  try {
    await Promise.all([...clients.values()].map((client) => client.waitUntilServing(10_000)));
    const injected: { kind: "kill" | "pause"; branch: number; primary: boolean }[] = [];
    /** The primary killed for good, until the faults are over (one at most: a majority stays up). */
    const down: number[] = [];
    const recoveriesMs: number[] = [];
    let faulting = true;
    const faulted = (async () => {
      for (let fault = 0; fault < faults; fault++) {
        await sleep(100 + random.below(200));
        const primary = await currentPrimary();
        const up = bank.ids.filter((id) => !down.includes(id));
        const branch = fault === 0 && primary !== undefined ? primary : random.pick(up);
        const kind = fault === 0 ? "kill" : random.pick(["kill", "pause"] as const);
        const hold = 100 + random.below(300);
        injected.push({ kind, branch, primary: branch === primary });
        if (kind === "pause") {
          bank.branch(branch).signal("SIGSTOP");
          await sleep(hold);
          bank.branch(branch).signal("SIGCONT");
        } else if (branch === primary && down.length === 0) {
          // Down for good: the others elect a new primary, and the customers move on to other branches.
          const killed = performance.now();
          await bank.branch(branch).kill();
          down.push(branch);
          const probed = up.find((id) => id !== branch) as number;
          recoveriesMs.push(await untilServedThroughPrimary(bank.address(probed), killed));
        } else {
          await bank.branch(branch).kill();
          await sleep(hold);
          await bank.start(branch);
        }
      }
      // Once the faults are over, the primary killed for good comes back, and rejoins as a backup.
      for (const id of down.splice(0)) await bank.start(id);
    })().then(
      () => undefined,
      // The bank not serving again after a kill (no primary elected) is a liveness failure of the run.
      (error: Error) => `the bank did not serve again after a fault: ${error.message}`,
    ).finally(() => (faulting = false));
    // Customers act at once, in rounds, until the last fault is over: every fault meets requests in flight.
    const session: Session = { seen: 0 };
    const runOptions = {
      deadlineMs: DEADLINE_MS,
      concurrent: true,
      session,
      attempts: ATTEMPTS,
      moveOn: true,
    };
    const entries: CustomerEntry[] = [];
    const results: TimedResult[] = [];
    let gaveUp: Error | undefined;
    while (faulting && gaveUp === undefined) {
      const round = Array.from({ length: customers }, (_, index) => ({
        id: index + 1,
        events: Array.from({ length: ROUND_REQUESTS }, () => {
          const kind = random.pick(["query", "deposit", "withdraw"] as const);
          const amount = kind === "query" ? 0 : random.below(300);
          return { id: undefined, interface: kind, amount, branch: random.pick(bank.ids) };
        }),
      }));
      entries.push(...round);
      // A customer that gives up (a request that failed every attempt) is a liveness failure of the run.
      const done = await runCustomers(round, clients, runOptions).catch((error: Error) => error);
      if (done instanceof Error) gaveUp = done;
      else results.push(...done);
    }
    const stalled = await faulted;
    if (gaveUp !== undefined || stalled !== undefined) {
      const violation = stalled ?? `a customer gave up: ${gaveUp?.message}`;
      return { seed, faults: injected, requests: results.length, updates: 0, violation, recoveriesMs };
    }
    // Every branch follows one primary and has applied its whole log (the one brought back last included)
    // before the final queries, which a branch without a primary refuses.
    await untilSettled([...clients.values()]);
    const finals = await finalStates(clients, session, DEADLINE_MS);
    const scenario: Scenario = {
      branches: bank.ids.map((id) => ({ id, balance: BALANCE })),
      customers: entries,
    };
    // The checker also requires every replica to end at the replayed balance, with the whole log applied (the
    // final states name the positions no reply names: new primaries' first entries and failures' entries).
    const checked = checkHistory(historyOf(scenario, results, finals));
    return {
      seed,
      faults: injected,
      requests: results.reduce((sum, { recv }) => sum + recv.length, 0),
      updates: checked.ok ? checked.summary.updates : 0,
      violation: checked.ok ? undefined : checked.violation,
      recoveriesMs,
    };
  } finally {
    for (const client of clients.values()) client.close();
  }
}

/**
 * Ms from `since` until a query at the backup at `address` is answered: it asks the primary for its commit
 * position, which a restarted primary gives once a majority holds everything it recovered.
 */
async function untilServedThroughPrimary(address: string, since: number): Promise<number> {
  const client = new BranchClient(address);
  try {
    const query = { id: 0, interface: "query", money: 0, amount: 0, customer_id: 0, request_id: 0 };
    for (let attempt = 1;; attempt++) {
      try {
        await client.deliver(query, 200);
        return performance.now() - since;
      } catch (error) {
        if (attempt === 500) throw error;
        await sleep(5);
      }
    }
  } finally {
    client.close();
  }
}

/** Waits (every 20 ms, for up to 20 s) until one branch leads every other, all at the same position. */
async function untilSettled(clients: readonly BranchClient[]): Promise<void> {
  for (let polls = 0; polls < 1_000; polls++) {
    const statuses = await Promise.all(
      clients.map((client) => client.status(DEADLINE_MS).catch(() => undefined)),
    );
    const primary = statuses.find((status) => status?.role === "primary");
    const settled = primary !== undefined &&
      statuses.every((status) =>
        status !== undefined && status.view === primary.view && status.position === primary.position &&
        (status.role === "primary" || status.commit === primary.position)
      );
    if (settled) return;
    await sleep(20);
  }
  throw new Error("the branches did not settle on one primary and one log within 20 s");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The `fraction` quantile of `values` (nearest rank), or undefined for none. */
export function quantile(values: readonly number[], fraction: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)];
}
