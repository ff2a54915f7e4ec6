/**
 * proto/bank.proto and proto/health.proto as tables for src/protobuf.ts: each message's fields, and each
 * service's methods. The .proto files are the contract and document every field; these tables only
 * repeat their names, numbers and types, and tests/protobuf_test.ts fails when the two differ.
 *
 * @module
 */

import type { Field, FieldType, Messages } from "./protobuf.ts";

function field(name: string, number: number, type: FieldType): Field {
  return { name, number, type, repeated: false, oneof: undefined };
}

const int32 = (name: string, number: number) => field(name, number, "int32");
const int64 = (name: string, number: number) => field(name, number, "int64");
const bool = (name: string, number: number) => field(name, number, "bool");
const string = (name: string, number: number) => field(name, number, "string");
const message = (name: string, number: number, type: string) => field(name, number, { message: type });
const repeated = (one: Field): Field => ({ ...one, repeated: true });
const oneof = (name: string, members: readonly Field[]) => members.map((one) => ({ ...one, oneof: name }));

/** The messages of both protos, by their full names. */
export const MESSAGES: Messages = {
  // proto/bank.proto
  VoteRequest: [int64("candidate", 1), int64("view", 2), int64("last_position", 3), int64("last_view", 4)],
  VoteAnswer: [int64("view", 1), bool("granted", 2)],
  EventsRequest: [],
  ClockEvents: [repeated(message("events", 1, "ClockEvent"))],
  ClockEvent: [
    int64("clock", 1),
    string("kind", 2),
    string("peer_type", 3),
    int64("peer_id", 4),
    string("message", 5),
    string("interface", 6),
    int64("customer_id", 7),
    int64("request_id", 8),
    int64("sent", 9),
  ],
  StatusRequest: [],
  BranchStatus: [
    int64("id", 1),
    string("role", 2),
    int64("view", 3),
    int64("position", 4),
    int64("commit", 5),
    int64("synced", 6),
    int64("balance", 7),
    bool("serving", 8),
    repeated(message("backups", 9, "BackupStatus")),
    repeated(int64("noops", 10)),
  ],
  BackupStatus: [int64("id", 1), bool("live", 2), int64("matched", 3)],
  Request: [
    int32("id", 1),
    string("interface", 2),
    int32("money", 3),
    int64("amount", 4),
    int64("customer_id", 5),
    int64("request_id", 6),
    int64("after", 7),
    int64("clock", 8),
  ],
  Response: [
    string("interface", 1),
    bool("success", 2),
    int32("money", 3),
    int64("balance", 4),
    int64("position", 5),
    int64("clock", 6),
  ],
  LinkMessage: [
    int64("seq", 1),
    ...oneof("kind", [
      message("entry", 2, "Entry"),
      message("forward", 3, "Forward"),
      message("answer", 4, "Answer"),
      message("read", 5, "ReadIndex"),
      message("batch", 6, "EntryBatch"),
      message("bundle", 7, "Bundle"),
      message("heartbeat", 8, "Heartbeat"),
    ]),
  ],
  Heartbeat: [
    int64("last_position", 1),
    int64("last_view", 2),
    int64("commit", 3),
    int64("round", 4),
    int64("clock", 5),
  ],
  Bundle: [repeated(message("messages", 1, "LinkMessage"))],
  EntryBatch: [repeated(message("entries", 1, "Entry"))],
  ReadIndex: [string("key", 2), int64("clock", 1)],
  Entry: [
    int64("view", 1),
    int64("position", 2),
    string("interface", 3),
    int64("amount", 4),
    int64("commit", 5),
    string("key", 6),
    int64("clock", 7),
    bool("failed", 8),
  ],
  Forward: [string("interface", 1), int64("amount", 2), string("key", 3), int64("clock", 4)],
  Answer: [
    bool("success", 1),
    int64("balance", 2),
    int32("code", 3),
    string("message", 4),
    int64("position", 5),
    int64("end", 6),
    int64("clock", 7),
    int64("view", 8),
    int64("commit_view", 9),
  ],
  // proto/health.proto
  "grpc.health.v1.HealthCheckRequest": [string("service", 1)],
  "grpc.health.v1.HealthCheckResponse": [
    field("status", 1, { enum: ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] }),
  ],
};

/** One rpc: its request and response messages, and which of them are streams. */
export interface Method {
  readonly request: string;
  readonly response: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

const unary = (request: string, response: string): Method => ({
  request,
  response,
  requestStream: false,
  responseStream: false,
});

/** The services of both protos, by their full names: each rpc by its name. */
export const SERVICES: Readonly<Record<string, Readonly<Record<string, Method>>>> = {
  Branch: {
    deliver: unary("Request", "Response"),
    link: { ...unary("LinkMessage", "LinkMessage"), requestStream: true, responseStream: true },
    status: unary("StatusRequest", "BranchStatus"),
    events: unary("EventsRequest", "ClockEvents"),
    vote: unary("VoteRequest", "VoteAnswer"),
  },
  "grpc.health.v1.Health": {
    Check: unary("grpc.health.v1.HealthCheckRequest", "grpc.health.v1.HealthCheckResponse"),
    Watch: {
      ...unary("grpc.health.v1.HealthCheckRequest", "grpc.health.v1.HealthCheckResponse"),
      responseStream: true,
    },
  },
};
