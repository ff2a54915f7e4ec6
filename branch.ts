/**
 * One branch process: `deno run branch.ts --id 2 --listen 127.0.0.1:50002 --peer 1=127.0.0.1:50001 ...`.
 *
 * @module
 */

import { runBranch } from "./src/branch_cli.ts";
import { guarded } from "./src/guarded.ts";

if (import.meta.main) {
  Deno.exit(
    await guarded("branch", () => runBranch(Deno.args), { control: Deno.args.includes("--control-stdin") }),
  );
}
