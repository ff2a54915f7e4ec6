/**
 * The throughput benchmark's baseline server: the bank's own gRPC transport answering every deliver call
 * at once, with no protocol behind it. Prints its address, serves until stdin closes.
 *
 * @module
 */

import { readLines } from "../src/lines.ts";
import { RpcError, serveBranch } from "../src/transport.ts";

const server = await serveBranch("127.0.0.1:0", {
  deliver: (request) =>
    Promise.resolve({ interface: request.interface, success: true, money: 0, balance: 0, position: 0 }),
  linked: () => new RpcError("UNAVAILABLE", "the echo server takes no links"),
});
server.setServing(true);
console.log(JSON.stringify({ listening: `127.0.0.1:${server.port}` }));
for await (const _ of readLines(Deno.stdin.readable));
await server.shutdown(0);
