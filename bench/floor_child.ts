/**
 * The floor of the start-up benchmark: a bare process that loads grpc-js and the protos, binds
 * 127.0.0.1:0, reports ready on stdout and exits. Nothing of the bank's protocol runs here.
 *
 * @module
 */

import { RpcError, serveBranch } from "../src/transport.ts";

const refuse = () => Promise.reject(new Error("the floor serves nothing"));
const server = await serveBranch("127.0.0.1:0", {
  deliver: refuse,
  linked: () => new RpcError("UNAVAILABLE", "the floor serves nothing"),
});
console.log(JSON.stringify({ ready: server.port }));
await server.shutdown(0);
