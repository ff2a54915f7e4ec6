/**
 * One branch process: `deno run -A branch.ts --id 2 --listen 127.0.0.1:50002 --peer 1=127.0.0.1:50001 ...`.
 *
 * @module
 */

import { guarded } from "./src/guarded.ts";

if (import.meta.main) {
  // Imported inside guarded(): grpc-js reads its environment variables as it loads, so a run without
  // --allow-env fails there, and that failure too should be one line rather than a stack trace.
  Deno.exit(
    await guarded("branch", async () => (await import("./src/branch_cli.ts")).runBranch(Deno.args), {
      control: Deno.args.includes("--control-stdin"),
    }),
  );
}
