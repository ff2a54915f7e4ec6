/**
 * The one module that touches grpc-js: loading the protos, serving a branch with its health service,
 * and the clients that call branches. Everything else speaks in the plain types declared here.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { RefusalCode } from "./branch_core.ts";
import { deadline } from "./deadline.ts";

/** `Request` of proto/bank.proto as grpc-js decodes it (int64 fields arrive as decimal strings). */
export interface WireRequest {
  readonly id: number;
  readonly interface: string;
  readonly money: number;
  readonly amount: string;
  readonly customer_id: string;
}

/** `Response` of proto/bank.proto as grpc-js decodes it. */
export interface WireResponse {
  readonly interface: string;
  readonly success: boolean;
  readonly money: number;
  readonly balance: string;
}

/** `Propagation` of proto/bank.proto as grpc-js decodes it. */
export interface WirePropagation {
  readonly origin: string;
  readonly interface: string;
  readonly amount: string;
  readonly seq: string;
}

/** `PropagationAck` of proto/bank.proto as grpc-js decodes it. */
export interface WirePropagationAck {
  readonly seq: string;
  readonly balance: string;
  readonly code: number;
  readonly message: string;
}

/** What a client sends: int64 fields may be given as numbers. */
export type Outgoing<T> = { readonly [K in keyof T]: T[K] extends string ? string | number : T[K] };

/** A call that ended with an error status, or an answer a handler wants to send as one. */
export class RpcError extends Error {
  constructor(readonly code: RefusalCode | "UNKNOWN", message: string) {
    super(message);
    this.name = "RpcError";
  }
}

/** Paths of the protos, resolved next to the source (and embedded by `deno compile --include proto/`). */
const PROTO_PATHS: readonly string[] = [
  fileURLToPath(new URL("../proto/bank.proto", import.meta.url)),
  fileURLToPath(new URL("../proto/health.proto", import.meta.url)),
];

// Explicit, so that a reader need not know proto-loader's defaults: field names as written in the
// .proto, int64 as exact decimal strings, enums by name, unset fields as their defaults.
const LOADER_OPTIONS: loader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

// Loopback traffic must never be sent through an HTTP proxy that the environment happens to name.
const CHANNEL_OPTIONS: grpc.ChannelOptions = { "grpc.enable_http_proxy": 0 };

// grpc-js logs its own copy of errors that reach us anyway (a failed bind, say) to stderr. Keep stderr
// to our one-line messages unless the user asks for grpc-js's logs through its own variables.
if (process.env.GRPC_VERBOSITY === undefined && process.env.GRPC_NODE_VERBOSITY === undefined) {
  grpc.setLogVerbosity(grpc.logVerbosity.NONE);
}

let services:
  | { readonly branch: grpc.ServiceDefinition; readonly health: grpc.ServiceDefinition }
  | undefined;

function loadServices() {
  if (services === undefined) {
    const definition = loader.loadSync([...PROTO_PATHS], LOADER_OPTIONS);
    services = {
      branch: definition["Branch"] as grpc.ServiceDefinition,
      health: definition["grpc.health.v1.Health"] as grpc.ServiceDefinition,
    };
  }
  return services;
}

/** The methods of the Branch service, each answering with a promise; a rejection with RpcError sets the status. */
export interface BranchHandlers {
  deliver(request: WireRequest): Promise<Outgoing<WireResponse>>;
  /**
   * A peer (named by its `bank-branch-id` header) opened a link; returns an RpcError to refuse it. The
   * link's propagations go to its `onPropagation`, which the handler sets through {@linkcode Link.serve}.
   */
  linked(peer: number, link: Link): RpcError | undefined;
}

/**
 * Answers one propagation arriving on a link with the balance after applying it. Must settle in arrival
 * order (the core answers each input as it steps it), since acks go out in that order.
 */
export type PropagationHandler = (propagation: WirePropagation) => Promise<number>;

/** A running branch server. */
export interface BranchServer {
  /** The port it listens on (the real one when it was asked for port 0). */
  readonly port: number;
  /** Sets the health status of the server ("") and of the "Branch" service. */
  setServing(serving: boolean): void;
  /** Stops taking calls, lets calls in progress finish for up to `graceMs`, then cuts the rest. */
  shutdown(graceMs: number): Promise<void>;
}

/** Serves `handlers` and the standard health service on `address` (host:port; port 0 picks one). */
export async function serveBranch(address: string, handlers: BranchHandlers): Promise<BranchServer> {
  const { branch, health } = loadServices();
  const server = new grpc.Server();
  server.addService(branch, {
    deliver: unary(handlers.deliver),
    link: linkHandler(handlers.linked),
  });
  const healthStatus = new HealthStatus();
  server.addService(health, healthStatus.handlers());
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) => {
      if (error === null) resolve(port);
      else reject(new Error(`cannot listen on ${address}: ${bindProblem(error)}`));
    })
  );
  return {
    port,
    setServing: (serving) => healthStatus.set(serving ? "SERVING" : "NOT_SERVING"),
    shutdown: (graceMs) => shutdownServer(server, healthStatus, graceMs),
  };
}

/** The reason a bind failed, without grpc-js's wrapping ("No address added out of total 1 resolved ..."). */
function bindProblem(error: Error): string {
  if (error.message.includes("EADDRINUSE")) return "address already in use";
  if (error.message.includes("EADDRNOTAVAIL")) return "address not available on this host";
  if (error.message.includes("EACCES")) return "permission denied";
  return error.message;
}

function unary<Req, Res>(handler: (request: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    handler(call.request).then(
      (response) => callback(null, response),
      (error: unknown) => callback(toServiceError(error)),
    );
  };
}

const BRANCH_ID_HEADER = "bank-branch-id";

function linkHandler(
  linked: BranchHandlers["linked"],
): grpc.handleBidiStreamingCall<WireLinkMessage, OutgoingLinkMessage> {
  return (call: grpc.ServerDuplexStream<WireLinkMessage, OutgoingLinkMessage>) => {
    const header = call.metadata.get(BRANCH_ID_HEADER)[0];
    const peer = typeof header === "string" && /^\d{1,15}$/.test(header) ? Number(header) : undefined;
    const link = new Link(`branch ${peer}`, call, Promise.resolve());
    const refusal = peer === undefined
      ? new RpcError("INVALID_ARGUMENT", `a link must name its opener in a ${BRANCH_ID_HEADER} header`)
      : linked(peer, link);
    if (refusal !== undefined) {
      call.emit("error", { code: grpc.status[refusal.code], details: refusal.message });
      return;
    }
    // Headers now, before any message: this is how the opener learns the link is accepted.
    call.sendMetadata(new grpc.Metadata());
  };
}

function toServiceError(error: unknown): Partial<grpc.StatusObject> {
  if (error instanceof RpcError) return { code: grpc.status[error.code], details: error.message };
  // Anything else is a bug in the handler: report it as INTERNAL rather than hang the caller.
  return { code: grpc.status.INTERNAL, details: error instanceof Error ? error.message : String(error) };
}

async function shutdownServer(server: grpc.Server, health: HealthStatus, graceMs: number): Promise<void> {
  health.set("NOT_SERVING");
  health.endWatches();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => resolve());
  });
  clearTimeout(timer);
}

type ServingStatus = "SERVING" | "NOT_SERVING";

/** The standard grpc.health.v1 service, for the whole server ("") and for "Branch", which share one status. */
class HealthStatus {
  #status: ServingStatus = "NOT_SERVING";
  readonly #watches = new Set<grpc.ServerWritableStream<{ service: string }, { status: string }>>();

  set(status: ServingStatus): void {
    this.#status = status;
    for (const call of this.#watches) call.write({ status });
  }

  endWatches(): void {
    for (const call of this.#watches) call.end();
    this.#watches.clear();
  }

  handlers(): grpc.UntypedServiceImplementation {
    const known = (service: string) => service === "" || service === "Branch";
    const check: grpc.handleUnaryCall<{ service: string }, { status: string }> = (call, callback) => {
      if (known(call.request.service)) callback(null, { status: this.#status });
      else callback({ code: grpc.status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
    };
    const watch: grpc.handleServerStreamingCall<{ service: string }, { status: string }> = (call) => {
      if (!known(call.request.service)) {
        call.write({ status: "SERVICE_UNKNOWN" });
        return;
      }
      this.#watches.add(call);
      call.on("cancelled", () => this.#watches.delete(call));
      call.write({ status: this.#status });
    };
    return { Check: check, Watch: watch };
  }
}

/** A client of one branch. Every call carries a deadline. */
export class BranchClient {
  readonly #client: grpc.Client;
  readonly #methods: grpc.ServiceDefinition;
  readonly #health: grpc.ServiceDefinition;

  /** A client of the branch at `address` (host:port). It connects on the first call. */
  constructor(readonly address: string) {
    const { branch, health } = loadServices();
    this.#methods = branch;
    this.#health = health;
    this.#client = new grpc.Client(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  /** Calls Branch.deliver; rejects with RpcError. */
  deliver(request: Outgoing<WireRequest>, deadlineMs: number): Promise<WireResponse> {
    return this.#unary("deliver", request, deadlineMs);
  }

  /** Opens a Branch.link stream to this branch, naming this end `self` (a branch id). */
  link(self: number): Link {
    const method = this.#methods["link"];
    if (method === undefined) throw new Error("proto/bank.proto has no rpc link");
    // The link waits for the peer to come up (branches started by hand start in any order), bounded by
    // accepted()'s timeout.
    const metadata = new grpc.Metadata({ waitForReady: true });
    metadata.set(BRANCH_ID_HEADER, String(self));
    const call = this.#client.makeBidiStreamRequest<OutgoingLinkMessage, WireLinkMessage>(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      metadata,
      // The link lives as long as the branch; each propagation gets its own deadline instead.
      { deadline: Infinity },
    );
    const accepted = new Promise<void>((resolve) => call.on("metadata", () => resolve()));
    return new Link(this.address, call, accepted);
  }

  /**
   * Resolves once the branch's health service reports SERVING, by watching it (no polling). Rejects with
   * RpcError when the deadline passes first or the branch cannot be reached.
   */
  waitUntilServing(deadlineMs: number): Promise<void> {
    const method = this.#health["Watch"];
    if (method === undefined) throw new Error("proto/health.proto has no Watch");
    const call = this.#client.makeServerStreamRequest<{ service: string }, { status: string }>(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      { service: "Branch" },
      // A branch that is not up yet is waited for (within the deadline), not reported as down.
      new grpc.Metadata({ waitForReady: true }),
      { deadline: Date.now() + deadlineMs },
    );
    return new Promise<void>((resolve, reject) => {
      call.on("data", (response: { status: string }) => {
        if (response.status !== "SERVING") return;
        call.cancel();
        resolve();
      });
      call.on("error", (error: grpc.ServiceError) => {
        // Our own cancel() after SERVING ends the call with CANCELLED; the promise is settled by then.
        if (error.code !== grpc.status.CANCELLED) reject(fromServiceError(error));
      });
      call.on("end", () => reject(new RpcError("UNAVAILABLE", `${this.address} stopped before serving`)));
    });
  }

  /** Starts connecting now instead of at the first call. */
  connect(): void {
    this.#client.getChannel().getConnectivityState(true);
  }

  /** Closes the channel; calls in flight fail. */
  close(): void {
    this.#client.close();
  }

  #unary<Req, Res>(name: string, request: Req, deadlineMs: number): Promise<Res> {
    const method = this.#methods[name];
    if (method === undefined) throw new Error(`proto/bank.proto has no rpc ${name}`);
    return new Promise<Res>((resolve, reject) =>
      this.#client.makeUnaryRequest<Req, Res>(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        { deadline: Date.now() + deadlineMs },
        (error, response) => {
          if (error !== null) reject(fromServiceError(error));
          else if (response === undefined) reject(new RpcError("INTERNAL", `${name}: empty response`));
          else resolve(response);
        },
      )
    );
  }
}

/** `LinkMessage` of proto/bank.proto as grpc-js decodes it: `kind` names the one field that is set. */
type WireLinkMessage =
  | { readonly kind: "propagation"; readonly propagation: WirePropagation }
  | { readonly kind: "ack"; readonly ack: WirePropagationAck };

type OutgoingLinkMessage =
  | { readonly propagation: Outgoing<WirePropagation> }
  | { readonly ack: Outgoing<WirePropagationAck> };

type LinkCall =
  | grpc.ClientDuplexStream<OutgoingLinkMessage, WireLinkMessage>
  | grpc.ServerDuplexStream<WireLinkMessage, OutgoingLinkMessage>;

/**
 * One end of a link between two branches (a Branch.link stream, from whichever side opened it). It sends
 * this branch's propagations and matches their acks by `seq`, and answers the other side's propagations
 * through the handler given to {@linkcode Link.serve}.
 */
export class Link {
  readonly #peer: string;
  readonly #call: LinkCall;
  readonly #accepted: Promise<void>;
  readonly #pending = new Map<string, { resolve(balance: number): void; reject(error: RpcError): void }>();
  #onPropagation: PropagationHandler = () => Promise.reject(new RpcError("UNAVAILABLE", "not serving yet"));
  #seq = 0;
  #broken: RpcError | undefined;

  /** `peer` names the other end in messages; `accepted` settles when the other end has accepted. */
  constructor(peer: string, call: LinkCall, accepted: Promise<void>) {
    this.#peer = peer;
    this.#call = call;
    const failed = new Promise<never>((_, reject) => {
      call.on("error", (error: grpc.ServiceError) => {
        const cause = fromServiceError(error);
        reject(this.#break(new RpcError(cause.code, `link with ${peer} broke: ${cause.message}`)));
      });
    });
    this.#accepted = Promise.race([accepted, failed]);
    this.#accepted.catch(() => {}); // Seen by accepted() or by the pending sends.
    call.on("data", (message: WireLinkMessage) => {
      if (message.kind === "ack") this.#settle(message.ack);
      else this.#answer(message.propagation);
    });
    call.on("end", () => {
      this.#break(new RpcError("UNAVAILABLE", `${peer} closed the link`));
      call.end();
    });
  }

  /** Answers the other side's propagations with `handler` from now on. */
  serve(handler: PropagationHandler): void {
    this.#onPropagation = handler;
  }

  /** Resolves once the other end has accepted the link; rejects if it does not within `timeoutMs`. */
  async accepted(timeoutMs: number): Promise<void> {
    const message = `${this.#peer} did not accept a link within ${timeoutMs} ms`;
    await deadline(this.#accepted, timeoutMs, () => {
      // Only the opener waits for acceptance, and the opener holds the client side of the call.
      if ("cancel" in this.#call) this.#call.cancel();
      return new RpcError("DEADLINE_EXCEEDED", message);
    });
  }

  /** Sends one update; resolves with the other end's balance after it, or rejects with RpcError. */
  send(
    update: { readonly origin: number; readonly interface: string; readonly amount: number },
    deadlineMs: number,
  ): Promise<number> {
    if (this.#broken !== undefined) return Promise.reject(this.#broken);
    const seq = String(++this.#seq);
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(seq);
        reject(
          new RpcError("DEADLINE_EXCEEDED", `${this.#peer} did not acknowledge within ${deadlineMs} ms`),
        );
      }, deadlineMs);
      this.#pending.set(seq, {
        resolve: (balance) => (clearTimeout(timer), resolve(balance)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
      this.#call.write({ propagation: { ...update, seq } });
    });
  }

  /** Half-closes the link; the other end closes its side in turn. */
  end(): void {
    this.#call.end();
  }

  #answer(propagation: WirePropagation): void {
    const ack = (balance: number, code: number, message: string) =>
      this.#call.write({ ack: { seq: propagation.seq, balance: String(balance), code, message } });
    this.#onPropagation(propagation).then(
      (balance) => ack(balance, 0, ""),
      (error: unknown) => {
        const { code, details } = toServiceError(error);
        ack(0, code ?? grpc.status.INTERNAL, details ?? "");
      },
    );
  }

  #settle(ack: WirePropagationAck): void {
    const pending = this.#pending.get(ack.seq);
    // Unknown: its deadline already passed and the sender was told so.
    if (pending === undefined) return;
    this.#pending.delete(ack.seq);
    if (ack.code === 0) pending.resolve(Number(ack.balance));
    else pending.reject(new RpcError(statusName(ack.code), ack.message));
  }

  /** Fails every pending send, and every later one, with the first cause; returns that cause. */
  #break(error: RpcError): RpcError {
    this.#broken ??= error;
    for (const pending of this.#pending.values()) pending.reject(this.#broken);
    this.#pending.clear();
    return this.#broken;
  }
}

const REFUSAL_CODES: readonly RefusalCode[] = [
  "INVALID_ARGUMENT",
  "UNAVAILABLE",
  "ABORTED",
  "DEADLINE_EXCEEDED",
  "INTERNAL",
];

function statusName(code: number): RefusalCode | "UNKNOWN" {
  const name = grpc.status[code] as string | undefined;
  return REFUSAL_CODES.find((candidate) => candidate === name) ?? "UNKNOWN";
}

function fromServiceError(error: grpc.ServiceError): RpcError {
  const name = grpc.status[error.code] as string | undefined;
  return new RpcError(statusName(error.code), `${name ?? error.code}: ${error.details}`);
}
