/**
 * The command lines that start branch and customer processes, under `deno run` and from a binary made by
 * `deno compile` (which can only run itself again, with a subcommand). Pure, so both modes are tested
 * here, where the compile step itself cannot run.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** The kinds of child process. */
export type Role = "branch" | "customer";

/** Where and how this program is running. */
export interface LaunchContext {
  /** The Deno executable, or the compiled binary. */
  readonly execPath: string;
  /** True inside a binary made by `deno compile`. */
  readonly standalone: boolean;
  /** The project's directory (holding deno.json, branch.ts and customer.ts). */
  readonly root: string;
}

/** A process to start. */
export interface ChildCommand {
  readonly command: string;
  readonly args: readonly string[];
}

/**
 * Environment variables that grpc-js reads when it loads. A child is allowed these and no others; the
 * proxy variables are read but ignored, since every channel disables proxies.
 */
export const GRPC_ENV: readonly string[] = [
  "GRPC_*",
  "grpc_proxy",
  "http_proxy",
  "https_proxy",
  "no_grpc_proxy",
  "no_proxy",
];

/** The context of the running program. */
export function currentContext(): LaunchContext {
  return {
    execPath: Deno.execPath(),
    standalone: Deno.build.standalone,
    root: fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, ""),
  };
}

/**
 * The command that starts a `role` process with `roleArgs`, allowed to reach only the `net` hosts (or
 * host:port pairs) and to write only in the `write` directory, if any. Under `deno run` the child gets
 * just that network access, reading and writing its `write` directory, and grpc-js's environment
 * variables: no other reads or writes (the protos are compiled in: see src/protobuf.ts), no subprocesses.
 * A compiled binary carries the permissions it was compiled with, so there the child runs the same binary
 * with a subcommand.
 */
export function childCommand(
  role: Role,
  roleArgs: readonly string[],
  options: { readonly context: LaunchContext; readonly net: readonly string[]; readonly write?: string },
): ChildCommand {
  const { context, net, write } = options;
  if (context.standalone) return { command: context.execPath, args: [role, ...roleArgs] };
  return {
    command: context.execPath,
    args: [
      "run",
      "--no-prompt",
      `--config=${context.root}/deno.json`,
      `--allow-net=${net.join(",")}`,
      ...(write === undefined ? [] : [`--allow-read=${write}`, `--allow-write=${write}`]),
      `--allow-env=${GRPC_ENV.join(",")}`,
      `${context.root}/${role}.ts`,
      ...roleArgs,
    ],
  };
}
