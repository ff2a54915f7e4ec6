/**
 * `customer`: runs customer entries in a process of their own.
 *
 * Started by hand, it reads an input file and prints the output to stdout. Started by `main` (with
 * `--plan-stdin`), it reads two JSON lines on standard input: the branches' addresses, on which it
 * connects to every branch and watches each one's health until it serves, reporting that to main on
 * stdout; and then the input. It prints each entry's result as a JSON line as soon as it completes.
 * `main` starts it while the branches are still starting, so that its start-up overlaps theirs.
 *
 * @module
 */

import { addressFlags, durationFlag, integerFlag, parseFlags, UsageError } from "./cli_args.ts";
import { connectAll, runCustomers, waitUntilServing } from "./customer_run.ts";
import { readScenario, type Scenario, validateScenario } from "./input.ts";
import { type Format, FORMATS, renderOutput } from "./output.ts";
import { readLines } from "./lines.ts";
import type { BranchClient } from "./transport.ts";

/** What `customer --help` prints. */
export const CUSTOMER_USAGE = `Usage: customer INPUT (--branch ID=HOST:PORT ... | --port-base N) [--format F]

Runs the customer entries of INPUT, one after another, against running branches, and prints the output.

  --branch ID=HOST:PORT  where branch ID listens; repeat for each
  --port-base N          branch ID listens on 127.0.0.1:N+ID (the original's 50000 layout)
  --format F             ${FORMATS.join(", ")} (default json)
  --deadline-ms MS       deadline of each request (default 10000)
  --start-timeout-ms MS  how long to wait for every branch to serve (default 30000)
  --plan-stdin           (used by main) read the addresses, then the input, as JSON lines from stdin`;

/** The first line `main` sends a customer process on its standard input: where the branches listen. */
export interface CustomerAddresses {
  /** Branch id to host:port. */
  readonly branches: Record<string, string>;
}

/** What the customer process prints once every branch's health service reports SERVING. */
export interface CustomerReady {
  /** How many branches serve. */
  readonly serving: number;
}

/** The second line, sent once every branch serves: the input file's JSON, as validated by main. */
export interface CustomerInput {
  readonly input: unknown;
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
    const { branches } = JSON.parse(await nextLine(lines)) as CustomerAddresses;
    const addresses = new Map(Object.entries(branches).map(([id, address]) => [Number(id), address]));
    using clients = disposable(connectAll(addresses));
    // This process is main's readiness check: main itself never loads grpc-js.
    await waitUntilServing(clients.map, startTimeoutMs);
    console.log(JSON.stringify({ serving: clients.map.size } satisfies CustomerReady));
    const { input } = JSON.parse(await nextLine(lines)) as CustomerInput;
    // main closes stdin only to stop this process early (or by dying): stop at once, not at the next
    // request to a branch that main has stopped too.
    lines.next().finally(() => Deno.exit(1));
    const scenario = validateScenario(input, "plan");
    await runCustomers(scenario.customers, clients.map, {
      deadlineMs,
      onResult: (result) => console.log(JSON.stringify(result)),
    });
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
  const results = await runCustomers(scenario.customers, clients.map, { deadlineMs });
  await Deno.stdout.write(new TextEncoder().encode(renderOutput(results, format)));
  return 0;
}

function branchAddresses(scenario: Scenario, flags: string[] | undefined, portBase: string | undefined) {
  const addresses = addressFlags("branch", flags);
  if (portBase !== undefined) {
    const base = integerFlag("port-base", portBase, 0);
    for (const { id } of scenario.branches) {
      if (!addresses.has(id)) addresses.set(id, `127.0.0.1:${base + id}`);
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
  if (next.done) throw new Error("standard input closed before main sent the addresses and the input");
  return next.value;
}

/** The clients, closed when disposed. */
function disposable(
  map: Map<number, BranchClient>,
): Disposable & { readonly map: Map<number, BranchClient> } {
  return { map, [Symbol.dispose]: () => map.forEach((client) => client.close()) };
}
