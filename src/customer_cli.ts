/**
 * `customer`: runs customer entries in a process of their own.
 *
 * Started by hand, it reads an input file and prints the output to stdout. Started by `main` (with
 * `--plan-stdin`), it reads JSON lines on standard input: first the input, then each branch's address as
 * that branch starts listening. It connects to each branch as soon as it knows its address and watches
 * its health; once every branch reports SERVING it says so on stdout, runs the customers, and prints
 * each entry's result as a JSON line as soon as it completes. `main` starts it while the branches are
 * still starting, so that its start-up overlaps theirs.
 *
 * @module
 */

import { addressFlags, basePort, durationFlag, integerFlag, parseFlags, UsageError } from "./cli_args.ts";
import {
  connectAll,
  finalStates,
  runCustomers,
  type TimedResult,
  untilServing,
  waitUntilServing,
} from "./customer_run.ts";
import type { HistoryFinal } from "./history.ts";
import { readScenario, type Scenario, validateScenario } from "./input.ts";
import { type Format, FORMATS, renderOutput } from "./output.ts";
import { readLines } from "./lines.ts";
import type { LamportClock, ProcessEvents } from "./lamport.ts";
import { BranchClient, RpcError } from "./transport.ts";
import { decodeClockEvent } from "./wire_codec.ts";

/** What `customer --help` prints. */
export const CUSTOMER_USAGE = `Usage: customer INPUT (--branch ID=HOST:PORT ... | --port-base N) [--format F]

Runs the customer entries of INPUT, one after another, against running branches, and prints the output.

  --branch ID=HOST:PORT  where branch ID listens; repeat for each
  --port-base N          branch ID listens on 127.0.0.1:N+ID (the original's 50000 layout)
  --format F             ${FORMATS.join(", ")} (default json)
  --deadline-ms MS       deadline of each attempt of a request (default 10000; up to 4 attempts)
  --start-timeout-ms MS  how long to wait for every branch to serve (default 30000)
  --concurrent           run every customer entry at once (each entry's events still in order); start
                         the branches with --reads commit (their default) for linearizable answers
  --no-session           requests do not carry what the customers have seen (Request.after): a branch
                         with --reads local then answers from its replica at once, perhaps stale
  --plan-stdin           (used by main) read the input, then the addresses, as JSON lines from stdin`;

/** The first line `main` sends a customer process on its standard input: the input, as validated by main. */
export interface CustomerInput {
  readonly input: unknown;
  /** Whether to query every branch's final state once the customers are done (for a history). */
  readonly finalStates: boolean;
  /** Whether to run every customer entry at once. */
  readonly concurrent: boolean;
  /** Whether requests carry what the customers have seen (Request.after). */
  readonly session: boolean;
  /**
   * Whether to report the run's Lamport clock events (the branches must record theirs: --record-clocks),
   * as one {@linkcode CustomerClocks} line after the final states, if those are asked for too.
   */
  readonly clocks: boolean;
  /**
   * How many times a request is sent at most (default 4): with failover, enough for the retries to outlast
   * an election.
   */
  readonly attempts?: number;
  /** Whether a request that fails at its branch goes on to the next (see CustomerRunOptions.moveOn). */
  readonly moveOn?: boolean;
}

/** The line the customer process prints last when asked for clock events: every process's. */
export interface CustomerClocks {
  /** The customers, in the order they first act in the input, then the branches, in input order. */
  readonly clocks: readonly ProcessEvents[];
}

/** One line per customer entry, printed as soon as the entry is done. */
export interface CustomerResult {
  /** The entry's place among the input's customer entries. */
  readonly entry: number;
  readonly result: TimedResult;
}

/** The line the customer process prints after the last entry's, when asked for final states. */
export interface CustomerFinals {
  readonly finals: readonly HistoryFinal[];
}

/** One of the next lines, one per branch, sent as soon as that branch listens. */
export interface CustomerAddress {
  readonly branch: number;
  /** host:port */
  readonly address: string;
}

/** What the customer process prints once every branch's health service reports SERVING. */
export interface CustomerReady {
  /** How many branches serve. */
  readonly serving: number;
}

/** Runs customers with the given arguments; returns the exit code. */
export async function runCustomer(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    branch: { type: "string", multiple: true },
    "port-base": { type: "string" },
    format: { type: "string" },
    "deadline-ms": { type: "string" },
    "start-timeout-ms": { type: "string" },
    "plan-stdin": { type: "boolean" },
    concurrent: { type: "boolean" },
    "no-session": { type: "boolean" },
    help: { type: "boolean" },
  });
  if (values.help) {
    console.log(CUSTOMER_USAGE);
    return 0;
  }
  const deadlineMs = durationFlag("deadline-ms", values["deadline-ms"], 10_000);
  const startTimeoutMs = durationFlag("start-timeout-ms", values["start-timeout-ms"], 30_000);
  if (values["plan-stdin"]) {
    const lines = readLines(Deno.stdin.readable);
    const plan = JSON.parse(await nextLine(lines)) as CustomerInput;
    const { input, finalStates: finals, concurrent } = plan;
    const scenario = validateScenario(input, "plan");
    using clients = disposable(new Map());
    // This process is main's readiness check (main itself never loads grpc-js). Each branch is watched
    // from the moment its address arrives, while the others may still be starting.
    const watches: Promise<void>[] = [];
    while (clients.map.size < scenario.branches.length) {
      const { branch, address } = JSON.parse(await nextLine(lines)) as CustomerAddress;
      const client = new BranchClient(address);
      clients.map.set(branch, client);
      const watch = untilServing(client, startTimeoutMs);
      watch.catch(() => {}); // Seen below, once every address is in.
      watches.push(watch);
    }
    await Promise.all(watches);
    console.log(JSON.stringify({ serving: clients.map.size } satisfies CustomerReady));
    // main closes stdin only to stop this process early (or by dying): stop at once, not at the next
    // request to a branch that main has stopped too.
    lines.next().finally(() => Deno.exit(1));
    const session = { seen: 0 };
    const clocks = plan.clocks ? new Map<number, LamportClock>() : undefined;
    await runCustomers(scenario.customers, clients.map, {
      deadlineMs,
      concurrent,
      session,
      carrySession: plan.session,
      ...(plan.attempts === undefined ? {} : { attempts: plan.attempts }),
      moveOn: plan.moveOn ?? false,
      onResult: (result, entry) => console.log(JSON.stringify({ entry, result } satisfies CustomerResult)),
      ...(clocks === undefined ? {} : { clocks }),
    });
    // The final queries wait until every branch has applied all that was answered: by then each has
    // received every entry, and recorded it, before its events are asked for.
    const states = finals || clocks !== undefined ? await finalStates(clients.map, session, deadlineMs) : [];
    if (finals) console.log(JSON.stringify({ finals: states } satisfies CustomerFinals));
    if (clocks !== undefined) {
      const line: CustomerClocks = {
        clocks: [...customerEvents(clocks), ...await branchEvents(scenario, clients.map, deadlineMs)],
      };
      console.log(JSON.stringify(line));
    }
    return 0;
  }
  const format = (values.format ?? "json") as Format;
  if (!FORMATS.includes(format)) {
    throw new UsageError(`--format: expected one of ${FORMATS.join(", ")}, got "${format}"`);
  }
  if (positionals.length !== 1) throw new UsageError("expected one INPUT file");
  const scenario = await readScenario(positionals[0] as string);
  using clients = disposable(connectAll(branchAddresses(scenario, values.branch, values["port-base"])));
  await waitUntilServing(clients.map, startTimeoutMs);
  const results = await runCustomers(scenario.customers, clients.map, {
    deadlineMs,
    concurrent: values.concurrent ?? false,
    carrySession: !values["no-session"],
  });
  await Deno.stdout.write(new TextEncoder().encode(renderOutput(results, format)));
  return 0;
}

function customerEvents(clocks: ReadonlyMap<number, LamportClock>): ProcessEvents[] {
  return [...clocks].map(([id, clock]) => ({ process: { type: "customer", id }, events: clock.events() }));
}

/** Every branch's recorded clock events (Branch.events), in the input's order of branches. */
function branchEvents(
  scenario: Scenario,
  clients: ReadonlyMap<number, BranchClient>,
  deadlineMs: number,
): Promise<ProcessEvents[]> {
  return Promise.all(scenario.branches.map(async ({ id }) => {
    const client = clients.get(id) as BranchClient;
    const events = (await client.events(deadlineMs)).map((wire) => {
      const event = decodeClockEvent(wire);
      if (!event.ok) {
        throw new RpcError("INTERNAL", `branch ${id} sent a malformed event: ${event.refusal.message}`);
      }
      return event.value;
    });
    return { process: { type: "branch", id }, events };
  }));
}

function branchAddresses(scenario: Scenario, flags: string[] | undefined, portBase: string | undefined) {
  const addresses = addressFlags("branch", flags);
  if (portBase !== undefined) {
    const base = integerFlag("port-base", portBase, 0);
    for (const { id } of scenario.branches) {
      if (!addresses.has(id)) addresses.set(id, `127.0.0.1:${basePort(base, id)}`);
    }
  }
  for (const { id } of scenario.branches) {
    if (!addresses.has(id)) {
      throw new UsageError(`no address for branch ${id}: give --branch ${id}=HOST:PORT`);
    }
  }
  return addresses;
}

async function nextLine(lines: AsyncGenerator<string>): Promise<string> {
  const next = await lines.next();
  if (next.done) throw new Error("standard input closed before main sent the input and every address");
  return next.value;
}

/** The clients, closed when disposed. */
function disposable(
  map: Map<number, BranchClient>,
): Disposable & { readonly map: Map<number, BranchClient> } {
  return { map, [Symbol.dispose]: () => map.forEach((client) => client.close()) };
}
