/**
 * The one module that touches grpc-js: the services of the protos (their messages coded by
 * src/protobuf.ts), serving a branch with its health service, and the clients that call branches.
 * Everything else speaks in the plain types declared here.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import process from "node:process";
import { setImmediate } from "node:timers";
import type { RefusalCode } from "./branch_core.ts";
import { deadline } from "./deadline.ts";
import { Codec, type MessageValue } from "./protobuf.ts";
import { MESSAGES, SERVICES } from "./protos.ts";

/** `Request` of proto/bank.proto as it is decoded (int64 fields as numbers: see src/protobuf.ts). */
export interface WireRequest {
  readonly id: number;
  readonly interface: string;
  readonly money: number;
  readonly amount: number;
  readonly customer_id: number;
  readonly request_id: number;
  /** Added after the first version: absent in what older code sends (and then 0 on arrival). */
  readonly after?: number;
  /** The sender's Lamport clock; added after the first version, like `after`. */
  readonly clock?: number;
}

/** `Response` of proto/bank.proto as it is decoded. */
export interface WireResponse {
  readonly interface: string;
  readonly success: boolean;
  readonly money: number;
  readonly balance: number;
  readonly position: number;
  /** The branch's Lamport clock for sending it (0 from a branch that keeps none). */
  readonly clock?: number;
}

/** `ClockEvent` of proto/bank.proto as it is decoded. */
export interface WireClockEvent {
  readonly clock: number;
  readonly kind: string;
  readonly peer_type: string;
  readonly peer_id: number;
  readonly message: string;
  readonly interface: string;
  readonly customer_id: number;
  readonly request_id: number;
  readonly sent: number;
}

/** `BranchStatus` of proto/bank.proto as it is decoded. */
export interface WireStatus {
  readonly id: number;
  readonly role: "primary" | "candidate" | "backup" | "starting";
  readonly view: number;
  readonly position: number;
  readonly commit: number;
  readonly synced: number;
  readonly balance: number;
  readonly serving: boolean;
  readonly backups: readonly { readonly id: number; readonly live: boolean; readonly matched: number }[];
  /** The positions on its disk that hold no update that succeeded (see isNoOp in the core). */
  readonly noops: readonly number[];
}

/** `Entry` of proto/bank.proto as it is decoded. */
export interface WireEntry {
  readonly view: number;
  readonly position: number;
  readonly interface: string;
  readonly amount: number;
  readonly commit: number;
  /** Added after the first version: absent in what older code sends (and then "" on arrival). */
  readonly key?: string;
  /** The sender's Lamport clock for sending this entry; added after the first version, like `key`. */
  readonly clock?: number;
  /** With failover: the entry of a keyed update that failed (false on arrival from older code). */
  readonly failed?: boolean;
}

/** `Forward` of proto/bank.proto as it is decoded. */
export interface WireForward {
  readonly interface: string;
  readonly amount: number;
  readonly key: string;
  /** The sender's Lamport clock (0 on arrival from older code). */
  readonly clock?: number;
}

/** `Heartbeat` of proto/bank.proto as it is decoded. */
export interface WireHeartbeat {
  readonly last_position: number;
  readonly last_view: number;
  readonly commit: number;
  readonly round: number;
  readonly clock?: number;
}

/** `VoteRequest` of proto/bank.proto as it is decoded. */
export interface WireVoteRequest {
  readonly candidate: number;
  readonly view: number;
  readonly last_position: number;
  readonly last_view: number;
}

/** `VoteAnswer` of proto/bank.proto as it is decoded. */
export interface WireVoteAnswer {
  readonly view: number;
  readonly granted: boolean;
}

/** A request on a link, as it is decoded: `kind` names the one that is set. */
export type WireLinkRequest =
  | { readonly kind: "entry"; readonly entry: WireEntry }
  | { readonly kind: "forward"; readonly forward: WireForward }
  | { readonly kind: "read"; readonly read: { readonly clock?: number; readonly key?: string } }
  | { readonly kind: "batch"; readonly batch: { readonly entries: readonly WireEntry[] } }
  | { readonly kind: "heartbeat"; readonly heartbeat: WireHeartbeat };

/** A request to send on a link. */
export type OutgoingLinkRequest =
  | { readonly entry: WireEntry }
  | { readonly forward: WireForward }
  | { readonly read: { readonly clock: number; readonly key: string } }
  | { readonly batch: { readonly entries: readonly WireEntry[] } }
  | { readonly heartbeat: WireHeartbeat };

/** What a link request is answered with, when it is carried out (`Answer` without its error fields). */
export interface LinkAnswer {
  readonly success: boolean;
  /** Units. */
  readonly balance: number;
  readonly position: number;
  /** To a read index: the last position of the primary's log (Answer.end); 0 otherwise. */
  readonly end?: number;
  /** To a read index, with failover: the view of the primary's entry at its commit position. */
  readonly commitView?: number;
  /** The answering end's Lamport clock for sending the answer (Answer.clock); 0 when it keeps none. */
  readonly clock?: number;
}

/** A call that ended with an error status, or an answer a handler wants to send as one. */
export class RpcError extends Error {
  /**
   * `view`: with failover, a refusal of a message of an earlier view than the refuser's carries the
   * refuser's view (Answer.view on a link, the `bank-view` trailer of a refused link).
   */
  constructor(readonly code: RefusalCode | "UNKNOWN", message: string, readonly view?: number) {
    super(message);
    this.name = "RpcError";
  }
}

/** What a backup names when it accepts a link: the end of its disk, and what it knows is committed. */
export interface Accepted {
  readonly position: number;
  /** The view of its entry at `position` (0 for none). */
  readonly view: number;
  readonly commit: number;
}

// Loopback traffic must never be sent through an HTTP proxy that the environment happens to name.
// A branch that was down is reconnected to within a second of coming back: grpc-js's own backoff between
// connection attempts grows to 120 s by default, which left a restarted backup unlinked for half a minute.
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.enable_http_proxy": 0,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1_000,
};

// grpc-js logs its own copy of errors that reach us anyway (a failed bind, say) to stderr. Keep stderr
// to our one-line messages unless the user asks for grpc-js's logs through its own variables.
if (process.env.GRPC_VERBOSITY === undefined && process.env.GRPC_NODE_VERBOSITY === undefined) {
  grpc.setLogVerbosity(grpc.logVerbosity.NONE);
}

const CODEC = new Codec(MESSAGES);

/** A service of src/protos.ts as grpc-js takes it, each message coded by src/protobuf.ts. */
function serviceDefinition(service: string): grpc.ServiceDefinition {
  const methods = SERVICES[service];
  if (methods === undefined) throw new TypeError(`no service ${service} in src/protos.ts`);
  return Object.fromEntries(
    Object.entries(methods).map(([name, method]) => [name, {
      path: `/${service}/${name}`,
      requestStream: method.requestStream,
      responseStream: method.responseStream,
      requestSerialize: serializer(method.request),
      requestDeserialize: deserializer(method.request),
      responseSerialize: serializer(method.response),
      responseDeserialize: deserializer(method.response),
      originalName: name,
    }]),
  );
}

function serializer(type: string): (value: MessageValue) => Buffer {
  return (value) => {
    const bytes = CODEC.encode(type, value);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(type: string): (bytes: Buffer) => MessageValue {
  return (bytes) => CODEC.decode(type, bytes);
}

let services:
  | { readonly branch: grpc.ServiceDefinition; readonly health: grpc.ServiceDefinition }
  | undefined;

function loadServices() {
  services ??= {
    branch: serviceDefinition("Branch"),
    health: serviceDefinition("grpc.health.v1.Health"),
  };
  return services;
}

/** The methods of the Branch service, each answering with a promise; a rejection with RpcError sets the status. */
export interface BranchHandlers {
  deliver(request: WireRequest): Promise<WireResponse>;
  /** Where the branch stands (Branch.status); without it the rpc answers UNIMPLEMENTED. */
  status?(): Promise<WireStatus>;
  /** The branch's recorded clock events (Branch.events); without it the rpc answers UNIMPLEMENTED. */
  events?(): Promise<readonly WireClockEvent[]>;
  /** A vote request (Branch.vote, with failover); without it the rpc answers UNIMPLEMENTED. */
  vote?(request: WireVoteRequest): Promise<WireVoteAnswer>;
  /**
   * A peer (named by its `bank-branch-id` header) opened a link; returns an RpcError to refuse it. The
   * handler keeps the link, answers its requests through {@linkcode Link.serve}, and sends its response
   * headers with {@linkcode Link.accept} when it is ready.
   */
  linked(peer: number, link: Link): RpcError | undefined;
}

/**
 * Answers one request arriving on a link. Must settle in arrival order (the core answers each input as it
 * steps it, or forwards it and answers in the order the primary decides), since answers are matched by seq.
 */
export type LinkRequestHandler = (request: WireLinkRequest) => Promise<LinkAnswer>;

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
    ...(handlers.status === undefined ? {} : { status: unary(handlers.status) }),
    ...(handlers.events === undefined ? {} : { events: unary(eventsHandler(handlers.events)) }),
    ...(handlers.vote === undefined ? {} : { vote: unary(handlers.vote) }),
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

function eventsHandler(events: () => Promise<readonly WireClockEvent[]>) {
  return async () => ({ events: await events() });
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
/**
 * How many messages one Bundle carries at most. A message carries at most 1,000 entries (src/branch_node.ts),
 * about 70 kB with keys at their longest, so a bundle stays near 1 MB, under grpc-js's 4 MB limit.
 */
const BUNDLE_MESSAGES_MAX = 16;
/** Request header of a link: the id of the opener's log (see Storage.logId); absent from older openers. */
const LOG_ID_HEADER = "bank-log-id";
/**
 * Request header of a link, with failover: the opener's view; absent (0) without. Also the trailer of a
 * link refused for an earlier view: the refuser's.
 */
const VIEW_HEADER = "bank-view";
/** Response header of an accepted link: the last log position on the accepting branch's disk. */
const LOG_POSITION_HEADER = "bank-log-position";
/** Response headers of an accepted link, with failover: the view of that entry, and the commit position. */
const LOG_VIEW_HEADER = "bank-log-view";
const COMMIT_HEADER = "bank-commit";

/** A header's value as a safe whole number, or `fallback` when it is absent or is not one. */
function numberHeader(metadata: grpc.Metadata, name: string, fallback: number): number {
  const value = metadata.get(name)[0];
  return typeof value === "string" && /^\d{1,16}$/.test(value) && Number.isSafeInteger(Number(value))
    ? Number(value)
    : fallback;
}

function linkHandler(
  linked: BranchHandlers["linked"],
): grpc.handleBidiStreamingCall<WireLinkMessage, OutgoingLinkMessage> {
  return (call: grpc.ServerDuplexStream<WireLinkMessage, OutgoingLinkMessage>) => {
    const header = call.metadata.get(BRANCH_ID_HEADER)[0];
    const peer = typeof header === "string" && /^\d{1,15}$/.test(header) ? Number(header) : undefined;
    const log = numberHeader(call.metadata, LOG_ID_HEADER, -1);
    const logId = log === -1 ? undefined : log;
    const view = numberHeader(call.metadata, VIEW_HEADER, 0);
    const accepted = Promise.resolve({ position: 0, view: 0, commit: 0 });
    const link = new Link(`branch ${peer}`, call, accepted, {
      view,
      ...(logId === undefined ? {} : { logId }),
    });
    const refusal = peer === undefined
      ? new RpcError("INVALID_ARGUMENT", `a link must name its opener in a ${BRANCH_ID_HEADER} header`)
      : linked(peer, link);
    if (refusal !== undefined) link.refuse(refusal);
  };
}

function toServiceError(error: unknown): Partial<grpc.StatusObject> {
  if (error instanceof RpcError) {
    const code = grpc.status[error.code === "UNKNOWN" ? "INTERNAL" : error.code];
    if (error.view === undefined) return { code, details: error.message };
    const metadata = new grpc.Metadata();
    metadata.set(VIEW_HEADER, String(error.view));
    return { code, details: error.message, metadata };
  }
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
  deliver(request: WireRequest, deadlineMs: number): Promise<WireResponse> {
    return this.#unary("deliver", request, deadlineMs);
  }

  /** Calls Branch.status; rejects with RpcError. */
  status(deadlineMs: number): Promise<WireStatus> {
    return this.#unary("status", {}, deadlineMs);
  }

  /** Calls Branch.events; rejects with RpcError. */
  async events(deadlineMs: number): Promise<readonly WireClockEvent[]> {
    const { events } = await this.#unary<object, { events: WireClockEvent[] }>("events", {}, deadlineMs);
    return events;
  }

  /** Calls Branch.vote; rejects with RpcError. */
  vote(request: WireVoteRequest, deadlineMs: number): Promise<WireVoteAnswer> {
    return this.#unary("vote", request, deadlineMs);
  }

  /**
   * Opens a Branch.link stream to this branch, naming this end `self` (a branch id), its log, and with
   * failover its view.
   */
  link(self: number, logId: number, view?: number): Link {
    const method = this.#methods["link"];
    if (method === undefined) throw new Error("src/protos.ts has no rpc link");
    // The link waits for the peer to come up (branches started by hand start in any order), bounded by
    // accepted()'s timeout.
    const metadata = new grpc.Metadata({ waitForReady: true });
    metadata.set(BRANCH_ID_HEADER, String(self));
    metadata.set(LOG_ID_HEADER, String(logId));
    if (view !== undefined) metadata.set(VIEW_HEADER, String(view));
    const call = this.#client.makeBidiStreamRequest<OutgoingLinkMessage, WireLinkMessage>(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      metadata,
      // The link lives as long as the branch; each request on it gets its own deadline instead.
      { deadline: Infinity },
    );
    const accepted = new Promise<Accepted>((resolve) =>
      call.on("metadata", (headers: grpc.Metadata) =>
        resolve({
          position: numberHeader(headers, LOG_POSITION_HEADER, 0),
          view: numberHeader(headers, LOG_VIEW_HEADER, 0),
          commit: numberHeader(headers, COMMIT_HEADER, 0),
        }))
    );
    return new Link(this.address, call, accepted, { logId, view: view ?? 0 });
  }

  /**
   * Resolves once the branch's health service reports SERVING, by watching it (no polling). Rejects with
   * RpcError when the deadline passes first or the branch cannot be reached.
   */
  waitUntilServing(deadlineMs: number): Promise<void> {
    const method = this.#health["Watch"];
    if (method === undefined) throw new Error("src/protos.ts has no Health.Watch");
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
    if (method === undefined) throw new Error(`src/protos.ts has no rpc ${name}`);
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

/** `Answer` of proto/bank.proto as it is decoded. */
interface WireAnswer {
  readonly success: boolean;
  readonly balance: number;
  readonly code: number;
  readonly message: string;
  readonly position: number;
  readonly end: number;
  readonly clock: number;
  readonly view: number;
  readonly commit_view: number;
}

/** `LinkMessage` of proto/bank.proto as it is decoded. */
type WireLinkMessage =
  & { readonly seq: number }
  & (WireLinkRequest | {
    readonly kind: "answer";
    readonly answer: WireAnswer;
  } | {
    readonly kind: "bundle";
    readonly bundle: { readonly messages: readonly WireLinkMessage[] };
  });

type OutgoingLinkMessage =
  & { readonly seq: number }
  & (OutgoingLinkRequest | {
    readonly answer: WireAnswer;
  } | {
    readonly bundle: { readonly messages: readonly OutgoingLinkMessage[] };
  });

type LinkCall =
  | grpc.ClientDuplexStream<OutgoingLinkMessage, WireLinkMessage>
  | grpc.ServerDuplexStream<WireLinkMessage, OutgoingLinkMessage>;

/** A request sent on a link and not answered yet. */
interface InFlight {
  /** performance.now() after which it has failed. */
  readonly deadline: number;
  readonly deadlineMs: number;
  resolve(answer: LinkAnswer): void;
  reject(error: RpcError): void;
}

/**
 * One end of a link between the primary and a backup (a Branch.link stream, from whichever side). It
 * sends this end's requests and matches their answers by `seq`, and answers the other end's requests
 * through the handler given to {@linkcode Link.serve}.
 */
export class Link {
  readonly #peer: string;
  readonly #call: LinkCall;
  readonly #accepted: Promise<Accepted>;
  /** In the order sent, which is the order of their deadlines when every request gets the same one. */
  readonly #inFlight = new Map<number, InFlight>();
  #onRequest: LinkRequestHandler = () => Promise.reject(new RpcError("UNAVAILABLE", "not serving yet"));
  #seq = 0;
  #broken: RpcError | undefined;
  /** Messages written this turn, to go as one bundle when it ends (see #write). */
  #bundling: OutgoingLinkMessage[] | undefined;
  /** Whether this end has half-closed the link or it has broken: nothing more is written. */
  #ended = false;
  readonly #onBroken: ((cause: RpcError) => void)[] = [];
  /** One timer for every request in flight, rather than one per request (see #watchDeadlines). */
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;

  /** The log the opener replicates, if it said. */
  readonly logId: number | undefined;
  /** The opener's view (0 without failover). */
  readonly view: number;

  /**
   * `peer` names the other end in messages; `accepted` settles when the other end has accepted, with what
   * it named. `opener` is what the opener said of itself: its log and view.
   */
  constructor(
    peer: string,
    call: LinkCall,
    accepted: Promise<Accepted>,
    opener: { readonly logId?: number | undefined; readonly view: number },
  ) {
    this.logId = opener.logId;
    this.view = opener.view;
    this.#peer = peer;
    this.#call = call;
    const failed = new Promise<never>((_, reject) => {
      call.on("error", (error: grpc.ServiceError) => {
        const cause = fromServiceError(error);
        // The refuser's view, if it named one, goes with it: the opener of a refused link enters it.
        reject(
          this.#break(new RpcError(cause.code, `link with ${peer} broke: ${cause.message}`, cause.view)),
        );
      });
    });
    this.#accepted = Promise.race([accepted, failed]);
    this.#accepted.catch(() => {}); // Seen by accepted() or by the requests in flight.
    call.on("data", (message: WireLinkMessage) => {
      for (const one of message.kind === "bundle" ? message.bundle.messages : [message]) {
        if (one.kind === "answer") this.#settle(one.seq, one.answer);
        else if (one.kind !== "bundle") this.#answer(one);
      }
    });
    call.on("end", () => {
      this.#break(new RpcError("UNAVAILABLE", `${peer} closed the link`));
      call.end();
    });
    // On the accepting end, the opener's process dying (or its connection dropping) cancels the call.
    if (!("cancel" in call)) {
      call.on("cancelled", () => this.#break(new RpcError("UNAVAILABLE", `${peer} went away`)));
    }
  }

  /** Calls `listener` once, with the cause, when the link breaks (or at once if it has). */
  onBroken(listener: (cause: RpcError) => void): void {
    if (this.#broken !== undefined) listener(this.#broken);
    else this.#onBroken.push(listener);
  }

  /** Whether the link has broken: every request on it fails. */
  get broken(): boolean {
    return this.#broken !== undefined;
  }

  /** Breaks the link from this end, failing what is in flight with `cause`. */
  abort(cause: RpcError): void {
    this.#break(cause);
    if ("cancel" in this.#call) this.#call.cancel();
    else this.#call.emit("error", { code: grpc.status.CANCELLED, details: cause.message });
  }

  /** Answers the other end's requests with `handler` from now on. */
  serve(handler: LinkRequestHandler): void {
    this.#onRequest = handler;
  }

  /** On the accepting end: ends the link with `error`'s status (and view) instead of accepting it. */
  refuse(error: RpcError): void {
    this.#call.emit("error", toServiceError(error));
  }

  /**
   * On the accepting end: sends the response headers, which tell the opener the link is accepted and what
   * this end's disk holds: the last log position, and with failover the view of the entry there and the
   * commit position it knows.
   */
  accept(held: Accepted | number): void {
    if (!("sendMetadata" in this.#call)) return;
    const { position, view, commit } = typeof held === "number"
      ? { position: held, view: 0, commit: 0 }
      : held;
    const headers = new grpc.Metadata();
    headers.set(LOG_POSITION_HEADER, String(position));
    if (typeof held !== "number") {
      headers.set(LOG_VIEW_HEADER, String(view));
      headers.set(COMMIT_HEADER, String(commit));
    }
    this.#call.sendMetadata(headers);
  }

  /**
   * Resolves, with what the other end named, once it has accepted the link; rejects if it does not within
   * `timeoutMs`, or the link breaks first.
   */
  accepted(timeoutMs: number): Promise<Accepted> {
    const message = `${this.#peer} did not accept a link within ${timeoutMs} ms`;
    return deadline(this.#accepted, timeoutMs, () => {
      // Broken with this cause first, so that it, not the cancel's, is what the link reports.
      const error = this.#break(new RpcError("DEADLINE_EXCEEDED", message));
      // Only the opener waits for acceptance, and the opener holds the client side of the call.
      if ("cancel" in this.#call) this.#call.cancel();
      return error;
    });
  }

  /** Sends one request; resolves with the other end's answer, or rejects with RpcError. */
  send(request: OutgoingLinkRequest, deadlineMs: number): Promise<LinkAnswer> {
    if (this.#broken !== undefined) return Promise.reject(this.#broken);
    const seq = ++this.#seq;
    return new Promise<LinkAnswer>((resolve, reject) => {
      this.#inFlight.set(seq, { deadline: performance.now() + deadlineMs, deadlineMs, resolve, reject });
      this.#deadlineTimer ??= setTimeout(() => this.#watchDeadlines(), deadlineMs);
      this.#write({ seq, ...request });
    });
  }

  /** Half-closes the link; the other end closes its side in turn. */
  end(): void {
    this.#ended = true;
    this.#call.end();
    this.#stopWatching();
  }

  /**
   * Fails the requests whose deadline has passed, then sleeps until the oldest one left is due. Requests
   * are answered in the order sent, so the oldest is the first due; a timer per request would cost a
   * timer set and a timer cleared for each of the thousands of entries a run sends.
   */
  #watchDeadlines(): void {
    this.#deadlineTimer = undefined;
    const now = performance.now();
    for (const [seq, inFlight] of this.#inFlight) {
      if (inFlight.deadline > now) {
        this.#deadlineTimer = setTimeout(() => this.#watchDeadlines(), inFlight.deadline - now);
        return;
      }
      this.#inFlight.delete(seq);
      inFlight.reject(
        new RpcError("DEADLINE_EXCEEDED", `${this.#peer} did not answer within ${inFlight.deadlineMs} ms`),
      );
    }
  }

  #stopWatching(): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
  }

  #answer(request: WireLinkMessage & WireLinkRequest): void {
    const { seq } = request;
    this.#onRequest(request).then(
      ({ success, balance, position, end = 0, clock = 0, commitView = 0 }) =>
        this.#write({
          seq,
          answer: {
            success,
            balance,
            position,
            end,
            clock,
            code: 0,
            message: "",
            view: 0,
            commit_view: commitView,
          },
        }),
      (error: unknown) => {
        const { code, details } = toServiceError(error);
        const answer = {
          success: false,
          balance: 0,
          position: 0,
          end: 0,
          clock: 0,
          code: code ?? grpc.status.INTERNAL,
          message: details ?? "",
          view: error instanceof RpcError ? error.view ?? 0 : 0,
          commit_view: 0,
        };
        this.#write({ seq, answer });
      },
    );
  }

  /**
   * Writes `message` when this turn of the event loop ends, with every other message written on this link
   * in the turn, as one Bundle. Under load the primary answers many forwards and sends a batch of entries in
   * one turn, and a backup forwards many updates: a message each cost a stream write each, and writes were
   * the primary's largest cost after its disk. With one customer at a time the turn ends at once: the wait
   * is not measurable on the example.
   */
  #write(message: OutgoingLinkMessage): void {
    if (this.#bundling !== undefined) {
      this.#bundling.push(message);
      // A full bundle goes at once, so that none comes near grpc-js's 4 MB message limit.
      if (this.#bundling.length === BUNDLE_MESSAGES_MAX) this.#flush([]);
      return;
    }
    this.#bundling = [message];
    setImmediate(() => this.#flush(undefined));
  }

  /** Writes what is bundled, as one message, and bundles into `next` from now on. */
  #flush(next: OutgoingLinkMessage[] | undefined): void {
    const messages = this.#bundling ?? [];
    this.#bundling = next;
    if (this.#ended || messages.length === 0) return;
    this.#call.write(
      messages.length === 1 ? messages[0] as OutgoingLinkMessage : { seq: 0, bundle: { messages } },
    );
  }

  #settle(seq: number, answer: WireAnswer): void {
    const inFlight = this.#inFlight.get(seq);
    // Unknown: its deadline already passed and the sender was told so.
    if (inFlight === undefined) return;
    // The deadline timer stays armed even when nothing is left in flight: it finds nothing when it fires,
    // which is cheaper than clearing it and setting it again for the next request.
    this.#inFlight.delete(seq);
    if (answer.code === 0) {
      const { success, balance, position, end, clock, commit_view } = answer;
      inFlight.resolve({ success, balance, position, end, clock, commitView: commit_view });
    } else {
      const view = answer.view > 0 ? answer.view : undefined;
      inFlight.reject(new RpcError(statusName(answer.code), answer.message, view));
    }
  }

  /** Fails every request in flight, and every later one, with the first cause; returns that cause. */
  #break(error: RpcError): RpcError {
    if (this.#broken !== undefined) return this.#broken;
    this.#broken = error;
    this.#ended = true;
    for (const inFlight of this.#inFlight.values()) inFlight.reject(error);
    this.#inFlight.clear();
    this.#stopWatching();
    for (const listener of this.#onBroken.splice(0)) listener(error);
    return error;
  }
}

const REFUSAL_CODES: readonly RefusalCode[] = [
  "INVALID_ARGUMENT",
  "UNAVAILABLE",
  "ABORTED",
  "FAILED_PRECONDITION",
  "DEADLINE_EXCEEDED",
  "INTERNAL",
];

function statusName(code: number): RefusalCode | "UNKNOWN" {
  const name = grpc.status[code] as string | undefined;
  return REFUSAL_CODES.find((candidate) => candidate === name) ?? "UNKNOWN";
}

/** The RpcError a failed call of this end comes back as. */
export function fromServiceError(error: grpc.ServiceError): RpcError {
  const name = grpc.status[error.code] as string | undefined;
  // grpc-js ends some details with an empty "Resolution note: ".
  const details = error.details.replace(/\s*Resolution note:\s*$/, "");
  // When this end's connection fails under a call (the server process died as the request was written:
  // "write EPIPE", "read ECONNRESET"), grpc-js reports INTERNAL, "Received RST_STREAM with code 2 triggered
  // by internal client error: ...". The server said nothing: like any broken connection, that is
  // UNAVAILABLE, and a request with an id may be sent again.
  if (error.code === grpc.status.INTERNAL && details.includes("triggered by internal client error")) {
    return new RpcError("UNAVAILABLE", `UNAVAILABLE (grpc-js: INTERNAL): ${details}`);
  }
  // This end's own cancels are settled before their errors come here, so a CANCELLED call was cut by the
  // other end: a server shutting down resets the calls still open when its grace ends. Whether the
  // request took effect is unknown, as with a broken connection: UNAVAILABLE too.
  if (error.code === grpc.status.CANCELLED) {
    return new RpcError("UNAVAILABLE", `UNAVAILABLE (grpc-js: CANCELLED): ${details}`);
  }
  const view = error.metadata === undefined ? 0 : numberHeader(error.metadata, VIEW_HEADER, 0);
  return new RpcError(
    statusName(error.code),
    `${name ?? error.code}: ${details}`,
    view > 0 ? view : undefined,
  );
}
