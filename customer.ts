/**
 * The customers' process: `deno run customer.ts Input.json --port-base 50000`.
 *
 * @module
 */

import { runCustomer } from "./src/customer_cli.ts";
import { guarded } from "./src/guarded.ts";

if (import.meta.main) {
  Deno.exit(
    await guarded("customer", () => runCustomer(Deno.args), { control: Deno.args.includes("--plan-stdin") }),
  );
}
