/**
 * The floor of the start-up benchmark: a bare process that loads grpc-js and the protos, serves their two
 * services with no handlers on 127.0.0.1:0, reports ready on stdout and exits. Nothing of the bank runs
 * here.
 *
 * It loads the protos as a gRPC program on this runtime usually does, with proto-loader, rather than
 * through src/transport.ts, whose codec is compiled in (src/protobuf.ts): the floor is what any gRPC
 * process pays, not what this one does. bench/bare_child.ts is the same without the protos.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { bindAndReport } from "./_floor.ts";
import * as loader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

const definition = loader.loadSync(
  ["bank.proto", "health.proto"].map((name) => fileURLToPath(new URL(`../proto/${name}`, import.meta.url))),
  { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true },
);
const server = new grpc.Server();
server.addService(definition["Branch"] as grpc.ServiceDefinition, {});
server.addService(definition["grpc.health.v1.Health"] as grpc.ServiceDefinition, {});
await bindAndReport(server);
