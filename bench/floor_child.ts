/**
 * The floor of the start-up benchmark: a bare process that loads grpc-js and the protos, binds
 * 127.0.0.1:0, reports ready on stdout and exits. Nothing of the bank runs here.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";
import { PROTO_PATHS } from "../src/transport.ts";

loader.loadSync([...PROTO_PATHS], {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const server = new grpc.Server();
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error !== null) throw error;
  console.log(JSON.stringify({ ready: port }));
  server.forceShutdown();
});
