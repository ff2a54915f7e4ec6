/**
 * The least a gRPC process on this runtime pays to start: it loads grpc-js alone, no proto, binds
 * 127.0.0.1:0, reports ready on stdout and exits. The start-up benchmark prints it beside the floor
 * (bench/floor_child.ts), since the bank's processes load no proto either (src/protobuf.ts).
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { bindAndReport } from "./_floor.ts";

const server = new grpc.Server();
await bindAndReport(server);
