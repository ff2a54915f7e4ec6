import { assertEquals, assertOk } from "./_assert.ts";
import { childCommand, currentContext, GRPC_ENV } from "../src/launch.ts";

const RUN = { execPath: "/usr/bin/deno", standalone: false, root: "/srv/bank" } as const;
const COMPILED = {
  execPath: "/usr/local/bin/bank",
  standalone: true,
  root: "/tmp/deno-compile-bank",
} as const;

Deno.test("childCommand() under deno run: the role's entry file with only the permissions it needs", () => {
  const command = childCommand("branch", ["--id", "2"], { context: RUN, net: ["127.0.0.1"] });
  assertEquals(command.command, "/usr/bin/deno");
  assertEquals(command.args, [
    "run",
    "--no-prompt",
    "--config=/srv/bank/deno.json",
    "--allow-net=127.0.0.1",
    `--allow-env=${GRPC_ENV.join(",")}`,
    "/srv/bank/branch.ts",
    "--id",
    "2",
  ]);
  assertOk(
    !command.args.some((arg) => /^--allow-(read|write|run|all|ffi|sys)|^-A$/.test(arg)),
    "no read, write, run or all",
  );
});

Deno.test("childCommand() lets a branch write its own data directory and nothing else", () => {
  const write = "/var/bank/run/branch-2";
  const command = childCommand("branch", ["--id", "2"], { context: RUN, net: ["127.0.0.1"], write });
  const allows = command.args.filter((arg) => arg.startsWith("--allow-"));
  assertEquals(allows, [
    "--allow-net=127.0.0.1",
    "--allow-read=/var/bank/run/branch-2",
    "--allow-write=/var/bank/run/branch-2",
    `--allow-env=${GRPC_ENV.join(",")}`,
  ]);
});

Deno.test("childCommand() limits a customer to the branch ports it is given", () => {
  const net = ["127.0.0.1:50001", "127.0.0.1:50002"];
  const command = childCommand("customer", ["--plan-stdin"], { context: RUN, net });
  assertOk(command.args.includes("--allow-net=127.0.0.1:50001,127.0.0.1:50002"));
  assertEquals(command.args.at(-2), "/srv/bank/customer.ts");
});

Deno.test("childCommand() from a compiled binary: the binary itself with a subcommand", () => {
  const command = childCommand("customer", ["--plan-stdin"], { context: COMPILED, net: ["127.0.0.1"] });
  assertEquals(command, { command: "/usr/local/bin/bank", args: ["customer", "--plan-stdin"] });
});

Deno.test("currentContext() under deno test: not standalone, rooted where branch.ts is", async () => {
  const context = currentContext();
  assertEquals(context.standalone, false);
  assertOk((await Deno.stat(`${context.root}/branch.ts`)).isFile);
});
