/**
 * The customers' process: `deno run -A customer.ts Input.json --port-base 50000`.
 *
 * @module
 */

import { guarded } from "./src/guarded.ts";

if (import.meta.main) {
  // Imported inside guarded(), as in branch.ts: a permission refused while grpc-js loads is one line.
  Deno.exit(
    await guarded("customer", async () => (await import("./src/customer_cli.ts")).runCustomer(Deno.args), {
      control: Deno.args.includes("--plan-stdin"),
    }),
  );
}
