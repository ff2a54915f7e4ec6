/**
 * `deno task faults [--runs N] [--first S] [--faults F]`: the fault harness (tests/_fault_harness.ts) run
 * after run, one seed each, and what it found: faults injected, requests acknowledged, violations, and the
 * time to recover from a primary kill. Exits 1 if any run found a violation.
 *
 * @module
 */

import { toolFlags } from "./_tool.ts";
import { HARNESS_DEFAULTS, quantile, runHarness } from "../tests/_fault_harness.ts";

const USAGE = "usage: deno task faults [--runs N] [--first SEED] [--faults N]";
const values = toolFlags("faults", USAGE, {
  runs: { type: "string", default: "10" },
  first: { type: "string", default: "1" },
  faults: { type: "string", default: String(HARNESS_DEFAULTS.faults) },
});
const [runs, first, faults] = [values.runs, values.first, values.faults].map(Number) as [
  number,
  number,
  number,
];
for (const [name, value] of [["runs", runs], ["first", first], ["faults", faults]] as const) {
  if (!Number.isSafeInteger(value) || value < 0) {
    console.error(`faults: --${name}: expected a whole number, got "${values[name]}"`);
    Deno.exit(2);
  }
}

const { branches, customers } = HARNESS_DEFAULTS;
console.log(
  `fault harness: ${runs} runs from seed ${first}, ${branches} branches, ${customers} customers acting ` +
    `until the faults are over, ${faults} faults each (the first kills the primary)`,
);
let [requests, updates, kills, pauses, primaryKills] = [0, 0, 0, 0, 0];
const recoveries: number[] = [];
const violations: string[] = [];
const started = performance.now();
for (let seed = first; seed < first + runs; seed++) {
  const root = await Deno.makeTempDir({ prefix: "bank-faults-" });
  try {
    const report = await runHarness({ seed, root, faults });
    requests += report.requests;
    updates += report.updates;
    for (const fault of report.faults) {
      if (fault.kind === "pause") pauses++;
      else if (fault.primary) primaryKills++;
      else kills++;
    }
    recoveries.push(...report.recoveriesMs);
    if (report.violation !== undefined) violations.push(`seed ${seed}: ${report.violation}`);
    console.log(
      `seed ${seed}: ${report.faults.map(({ kind, branch }) => `${kind} ${branch}`).join(", ")}; ` +
        `${report.requests} requests, ${report.updates} updates; ${report.violation ?? "holds"}`,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}
const ms = (value: number | undefined) => value === undefined ? "-" : `${value.toFixed(0)} ms`;
console.log(
  `\n${runs} runs in ${((performance.now() - started) / 1000).toFixed(0)} s: ${primaryKills} kills of the ` +
    `primary, ${kills} of a backup, ${pauses} pauses; ${requests} requests acknowledged (${updates} updates); ` +
    `${violations.length} violations`,
);
console.log(
  `recovery from a primary kill (killed and kept down, until another branch answers a query through a ` +
    `new primary): p50 ${ms(quantile(recoveries, 0.5))}, p99 ${ms(quantile(recoveries, 0.99))}, ` +
    `max ${ms(quantile(recoveries, 1))} (${recoveries.length} kills)`,
);
for (const violation of violations) console.log(violation);
if (violations.length > 0) Deno.exit(1);
