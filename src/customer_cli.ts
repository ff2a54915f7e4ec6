/**
 * `customer`: runs customer entries in a process of their own.
 *
 * Started by hand, it reads an input file and prints the output to stdout. Started by `main` (with
 * `--plan-stdin`), it waits for one JSON line on standard input with the input and the branches'
 * addresses, and prints each entry's result as a JSON line as soon as it completes. `main` starts it
 * while the branches are still starting, so that its start-up overlaps theirs.
 *
 * @module
 */

import { addressFlags, durationFlag, integerFlag, parseFlags, UsageError } from "./cli_args.ts";
import { runCustomers, waitUntilServing } from "./customer_run.ts";
import { readScenario, type Scenario, validateScenario } from "./input.ts";
import { type Format, FORMATS, renderOutput } from "./output.ts";
import { readLines } from "./lines.ts";

/** What `customer --help` prints. */
export const CUSTOMER_USAGE = `Usage: customer INPUT (--branch ID=HOST:PORT ... | --port-base N) [--format F]

Runs the customer entries of INPUT, one after another, against running branches, and prints the output.

  --branch ID=HOST:PORT  where branch ID listens; repeat for each
  --port-base N          branch ID listens on 127.0.0.1:N+ID (the original's 50000 layout)
  --format F             ${FORMATS.join(", ")} (default json)
  --deadline-ms MS       deadline of each request (default 10000)
  --start-timeout-ms MS  how long to wait for every branch to serve (default 30000)
  --plan-stdin           (used by main) read the input and addresses as one JSON line from stdin`;

/** The line `main` sends a customer process on its standard input. */
export interface CustomerPlan {
  /** The input file's JSON, as validated by main. */
  readonly input: unknown;
  /** Branch id to host:port. */
  readonly branches: Record<string, string>;
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
  if (values["plan-stdin"]) {
    const plan = await readPlan();
    const scenario = validateScenario(plan.input, "plan");
    const addresses = new Map(Object.entries(plan.branches).map(([id, address]) => [Number(id), address]));
    await runCustomers(scenario.customers, addresses, {
      deadlineMs,
      onResult: (result) => console.log(JSON.stringify(result)),
    });
    return 0;
  }
  const format = (values.format ?? "json") as Format;
  if (!FORMATS.includes(format)) throw new UsageError(`--format: expected one of ${FORMATS.join(", ")}`);
  if (positionals.length !== 1) throw new UsageError("expected one INPUT file");
  const scenario = await readScenario(positionals[0] as string);
  const addresses = branchAddresses(scenario, values.branch, values["port-base"]);
  const startTimeoutMs = durationFlag("start-timeout-ms", values["start-timeout-ms"], 30_000);
  await Promise.all([...addresses.values()].map((address) => waitUntilServing(address, startTimeoutMs)));
  const results = await runCustomers(scenario.customers, addresses, { deadlineMs });
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

async function readPlan(): Promise<CustomerPlan> {
  for await (const line of readLines(Deno.stdin.readable)) return JSON.parse(line) as CustomerPlan;
  throw new Error("standard input closed before the plan arrived");
}
