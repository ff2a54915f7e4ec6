/**
 * The throughput benchmark's load: `--concurrency` workers, each sending one request at a time to the
 * branches at `--addresses` in turn, for `--seconds`. Deposits and withdrawals of 1 alternate, each with
 * its own request id. Prints one JSON line: requests completed, seconds, and p50 and p99 latency in ms.
 *
 * @module
 */

import { integerFlag, parseFlags } from "../src/cli_args.ts";
import { BranchClient } from "../src/transport.ts";

const { values } = parseFlags(Deno.args, {
  addresses: { type: "string" },
  concurrency: { type: "string" },
  seconds: { type: "string" },
});
const clients = (values.addresses ?? "").split(",").map((address) => new BranchClient(address));
await Promise.all(clients.map((client) => client.waitUntilServing(30_000)));
const concurrency = integerFlag("concurrency", values.concurrency, 128);
const until = performance.now() + 1000 * Number(values.seconds ?? "3");
const latencies: number[] = [];
const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, async (_, worker) => {
  for (let request = 1; performance.now() < until; request++) {
    const client = clients[(worker + request) % clients.length] as BranchClient;
    const kind = request % 2 === 0 ? "withdraw" : "deposit";
    const sent = performance.now();
    await client.deliver(
      { id: 0, interface: kind, money: 1, amount: 1, customer_id: worker + 1, request_id: request },
      10_000,
    );
    latencies.push(performance.now() - sent);
  }
}));
const seconds = (performance.now() - started) / 1000;
for (const client of clients) client.close();
latencies.sort((a, b) => a - b);
const at = (fraction: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor(fraction * latencies.length))];
console.log(JSON.stringify({ requests: latencies.length, seconds, p50: at(0.5), p99: at(0.99) }));
