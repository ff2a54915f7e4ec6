/**
 * The bank: `deno run -A main.ts Input.json` runs every branch and customer of the input and writes
 * output.txt. Also `main.ts branch ...` and `main.ts customer ...`, as a compiled binary needs them.
 *
 * @module
 */

import { main } from "./src/main_cli.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
