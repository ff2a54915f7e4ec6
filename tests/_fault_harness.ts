/**
 * The fault harness, in the manner of Jepsen: concurrent customers against real branch processes while,
 * on a seeded schedule, branches are killed with SIGKILL and started again on their directories, or paused
 * with SIGSTOP and resumed; then the whole history and every replica go through the checker. Used by
 * tests/fault_harness_test.ts (one run, in CI) and `deno task faults` (many runs, with a report).
 *
 * One fault at a time, so that a majority is always up; the first kills the primary, so that every run
 * meets that case. A killed primary is started again at once, as a supervisor would (there is no failover
 * yet); the harness measures how long until the bank serves again: until a query at a backup, which needs
 * the primary's commit position (a read index), is answered.
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
  /** Each fault: what, and to which branch. */
  readonly faults: readonly { readonly kind: "kill" | "pause"; readonly branch: number }[];
  /** Requests answered, and of those, updates that succeeded. */
  readonly requests: number;
  readonly updates: number;
  /** The checker's verdict on the history and the final states; undefined when they hold. */
  readonly violation: string | undefined;
  /** For each kill of the primary: ms from the kill until a backup answered a query through it again. */
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
  await using bank = new Bank(root, { size: branches, balance: BALANCE, deadlineMs: DEADLINE_MS });
  await bank.startAll();
  const [primary, probed] = bank.ids as [number, number];
  const clients = connectAll(bank.addresses());
  try {
    await Promise.all([...clients.values()].map((client) => client.waitUntilServing(10_000)));
    const injected: { kind: "kill" | "pause"; branch: number }[] = [];
    const recoveriesMs: number[] = [];
    let faulting = true;
    const faulted = (async () => {
      for (let fault = 0; fault < faults; fault++) {
        await sleep(100 + random.below(200));
        const branch = fault === 0 ? primary : random.pick(bank.ids);
        const kind = fault === 0 ? "kill" : random.pick(["kill", "pause"] as const);
        const hold = 100 + random.below(300);
        injected.push({ kind, branch });
        if (kind === "pause") {
          bank.branch(branch).signal("SIGSTOP");
          await sleep(hold);
          bank.branch(branch).signal("SIGCONT");
        } else if (branch === primary) {
          // Started again at once, as a supervisor would: there is no failover yet.
          const killed = performance.now();
          await bank.branch(branch).kill();
          await bank.start(branch);
          recoveriesMs.push(await untilServedThroughPrimary(bank.address(probed), killed));
        } else {
          await bank.branch(branch).kill();
          await sleep(hold);
          await bank.start(branch);
        }
      }
    })().finally(() => (faulting = false));
    // Customers act at once, in rounds, until the last fault is over: every fault meets requests in flight.
    const session: Session = { seen: 0 };
    const runOptions = { deadlineMs: DEADLINE_MS, concurrent: true, session, attempts: ATTEMPTS };
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
    await faulted;
    if (gaveUp !== undefined) {
      const violation = `a customer gave up: ${gaveUp.message}`;
      return { seed, faults: injected, requests: results.length, updates: 0, violation, recoveriesMs };
    }
    await Promise.all([...clients.values()].map((client) => client.waitUntilServing(10_000)));
    const finals = await finalStates(clients, session, DEADLINE_MS);
    const scenario: Scenario = {
      branches: bank.ids.map((id) => ({ id, balance: BALANCE })),
      customers: entries,
    };
    // The checker also requires every replica to end at the replayed balance, with the whole log applied.
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The `fraction` quantile of `values` (nearest rank), or undefined for none. */
export function quantile(values: readonly number[], fraction: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)];
}
