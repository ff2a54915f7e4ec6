/**
 * `main`: the bank's command line. It runs the bank on an input file, and dispatches the `branch` and
 * `customer` subcommands (the only way a binary made by `deno compile` can start its children).
 *
 * @module
 */

import { runBank } from "./bank.ts";
import { durationFlag, integerFlag, parseFlags, UsageError } from "./cli_args.ts";
import { guarded, Interrupted } from "./guarded.ts";
import { currentContext } from "./launch.ts";
import { type Format, FORMATS } from "./output.ts";
import { Supervisor } from "./supervisor.ts";

/** What `main --help` prints. */
export const MAIN_USAGE = `Usage: main.ts [run] INPUT [options]
       main.ts check HISTORY
       main.ts status HOST:PORT ...
       main.ts simulate [--seeds N ...]
       main.ts branch --help | customer --help

Runs the replicated bank on INPUT (a JSON array of branches and customers) and writes what each customer
received to the output file.

  --output PATH        where to write the output (default output.txt); written only after a successful run
  --format F           ${FORMATS.join(", ")} (default json)
  --concurrent         run every customer entry at once (each entry's events still in order), as the
                       original program did; the output keeps its order
  --history PATH       also write the run's history, one JSON line per request, for main.ts check
  --clock-output DIR   also write the run's Lamport clock events in the logical-clock exercise's three
                       files, DIR/customer_events.json, branch_events.json and all_events.json (DIR is
                       made if missing; its parent must exist)
  --diagram PATH       also write a space-time diagram of the run: one self-contained HTML page, a lane
                       per process, an arrow per message, by Lamport clock
  --propagation P      sync (default): an update is answered once a majority of the branches has it;
                       async: once the primary has it, before any other branch does (the course's
                       client-centric exercise): a customer that moves on may read a stale balance
  --no-session         customers do not send what they have seen (Request.after) with their requests:
                       with --propagation async, reads at another branch may miss their own updates
  --failover           branches replace a primary that stops answering by election (see branch.ts
                       --failover); without it the lowest id is the primary for good
  --port-base N        branch ID listens on 127.0.0.1:N+ID (default: free ports)
  --deadline-ms MS     deadline of each attempt of a request (default 10000); an update forwarded to
                       the primary gets half of it, and an entry sent to a backup a quarter
  --start-timeout-ms MS  how long branches may take to start serving (default 30000)
  --data-dir DIR       keep each branch's log in DIR/branch-ID, and go on from what an earlier run left
                       there (default: a fresh temporary directory, removed after the run)
  --verbose            print progress (processes started, their pids and addresses) on stderr

Exit codes: 0 success, 1 a process failed while running, 2 bad input or usage, 130 interrupted (SIGINT),
143 terminated (SIGTERM).`;

/**
 * Runs main's command line; returns the exit code. Errors are printed as one line, never a stack trace.
 * The subcommands are imported when used: a run of the bank must not load grpc-js before it has started
 * its children (it loads it while they start).
 */
export async function main(args: readonly string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === "branch") {
    return await guarded("branch", async () => (await import("./branch_cli.ts")).runBranch(rest), {
      control: rest.includes("--control-stdin"),
    });
  }
  if (command === "check") {
    return await guarded("check", async () => (await import("./check_cli.ts")).runCheck(rest), {
      control: false,
    });
  }
  if (command === "status") {
    return await guarded("status", async () => (await import("./status_cli.ts")).runStatus(rest), {
      control: false,
    });
  }
  if (command === "simulate") {
    return await guarded("simulate", async () => (await import("./simulate_cli.ts")).runSimulate(rest), {
      control: false,
    });
  }
  if (command === "customer") {
    return await guarded("customer", async () => (await import("./customer_cli.ts")).runCustomer(rest), {
      control: rest.includes("--plan-stdin"),
    });
  }
  return await guarded("bank", () => runMain(command === "run" ? rest : args), { control: false });
}

async function runMain(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    output: { type: "string" },
    history: { type: "string" },
    "clock-output": { type: "string" },
    diagram: { type: "string" },
    concurrent: { type: "boolean" },
    propagation: { type: "string" },
    "no-session": { type: "boolean" },
    failover: { type: "boolean" },
    format: { type: "string" },
    "port-base": { type: "string" },
    "deadline-ms": { type: "string" },
    "start-timeout-ms": { type: "string" },
    "data-dir": { type: "string" },
    verbose: { type: "boolean" },
    help: { type: "boolean" },
  });
  if (values.help) {
    console.log(MAIN_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`expected one INPUT file, got ${positionals.length}`);
  const format = (values.format ?? "json") as Format;
  if (!FORMATS.includes(format)) {
    throw new UsageError(`--format: expected one of ${FORMATS.join(", ")}, got "${format}"`);
  }
  for (const flag of ["data-dir", "clock-output"] as const) {
    if (values[flag] === "") throw new UsageError(`--${flag}: expected a directory, got an empty string`);
  }
  const propagation = values.propagation ?? "sync";
  if (propagation !== "sync" && propagation !== "async") {
    throw new UsageError(`--propagation: expected sync or async, got "${propagation}"`);
  }
  const supervisor = new Supervisor();
  const interrupt = () => supervisor.fail(new Interrupted("SIGINT"));
  const terminate = () => supervisor.fail(new Interrupted("SIGTERM"));
  Deno.addSignalListener("SIGINT", interrupt);
  Deno.addSignalListener("SIGTERM", terminate);
  try {
    await runBank({
      inputPath: positionals[0] as string,
      outputPath: values.output ?? "output.txt",
      historyPath: values.history,
      clockOutputDir: values["clock-output"],
      diagramPath: values.diagram,
      concurrent: values.concurrent ?? false,
      propagation,
      session: !values["no-session"],
      failover: values.failover ?? false,
      format,
      portBase: values["port-base"] === undefined
        ? undefined
        : integerFlag("port-base", values["port-base"], 0),
      deadlineMs: durationFlag("deadline-ms", values["deadline-ms"], 10_000),
      startTimeoutMs: durationFlag("start-timeout-ms", values["start-timeout-ms"], 30_000),
      dataDir: values["data-dir"],
      context: currentContext(),
      supervisor,
      log: values.verbose
        ? (line) => console.error(`bank: ${Math.round(performance.now())} ms: ${line}`)
        : () => {},
    });
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", interrupt);
    Deno.removeSignalListener("SIGTERM", terminate);
  }
}
