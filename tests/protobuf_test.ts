/**
 * src/protobuf.ts and src/protos.ts against the .proto files and protobufjs: the tables name every message,
 * field and rpc as the .proto files declare them, and whatever either codec writes, the other reads to the
 * object proto-loader gives (with the options src/protobuf.ts follows).
 */

import * as loader from "@grpc/proto-loader";
import protobuf from "protobufjs";
import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import { assertEquals, assertOk, assertThrows } from "./_assert.ts";
import { Codec, type Field, type FieldType, type MessageValue } from "../src/protobuf.ts";
import { MESSAGES, type Method, SERVICES } from "../src/protos.ts";
import { Random } from "../src/random.ts";

const PROTOS = ["bank.proto", "health.proto"].map((name) =>
  fileURLToPath(new URL(`../proto/${name}`, import.meta.url))
);
const reference = loader.loadSync(PROTOS, {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const codec = new Codec(MESSAGES);

/** What proto-loader makes of `value` as message `type`: serialized, then deserialized. */
function referenceOf(type: string) {
  const definition = reference[type] as loader.MessageTypeDefinition<MessageValue, MessageValue>;
  return {
    encode: (value: MessageValue) => new Uint8Array(definition.serialize(value)),
    decode: (bytes: Uint8Array) => definition.deserialize(Buffer.from(bytes)),
  };
}

/** The .proto files as protobufjs reads them. */
function protoRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.loadSync(PROTOS, { keepCase: true });
  root.resolveAll();
  return root;
}

function nested(namespace: protobuf.NamespaceBase): protobuf.ReflectionObject[] {
  return namespace.nestedArray.flatMap((one) =>
    one instanceof protobuf.Namespace ? [one, ...nested(one)] : [one]
  );
}

const fullName = (one: protobuf.ReflectionObject) => one.fullName.replace(/^\./, "");

/** A field of the .proto, as src/protos.ts writes it. */
function tableField(field: protobuf.Field): Field {
  const { resolvedType } = field;
  let type: FieldType;
  if (resolvedType instanceof protobuf.Enum) {
    const names = Object.entries(resolvedType.values).sort(([, a], [, b]) => a - b);
    assertEquals(names.map(([, number]) => number), names.map((_, index) => index), "enum numbers 0, 1, ...");
    type = { enum: names.map(([name]) => name) };
  } else if (resolvedType instanceof protobuf.Type) {
    type = { message: fullName(resolvedType) };
  } else {
    type = field.type as FieldType;
  }
  return { name: field.name, number: field.id, type, repeated: field.repeated, oneof: field.partOf?.name };
}

Deno.test("src/protos.ts has every message of the .proto files, each field with its name, number and type", () => {
  const types = nested(protoRoot()).filter((one) => one instanceof protobuf.Type) as protobuf.Type[];
  assertEquals(Object.keys(MESSAGES).sort(), types.map(fullName).sort());
  const byNumber = (fields: readonly Field[]) => [...fields].sort((a, b) => a.number - b.number);
  for (const type of types) {
    assertEquals(
      byNumber(MESSAGES[fullName(type)] ?? []),
      byNumber(type.fieldsArray.map(tableField)),
      type.name,
    );
  }
});

Deno.test("src/protos.ts has every rpc of the .proto files, with its messages and streams", () => {
  const services = nested(protoRoot()).filter((one) => one instanceof protobuf.Service) as protobuf.Service[];
  const expected = Object.fromEntries(services.map((service) => [
    fullName(service),
    Object.fromEntries(service.methodsArray.map((method): [string, Method] => [method.name, {
      request: fullName(method.resolvedRequestType as protobuf.Type),
      response: fullName(method.resolvedResponseType as protobuf.Type),
      requestStream: method.requestStream === true,
      responseStream: method.responseStream === true,
    }])),
  ]));
  assertEquals(SERVICES, expected);
});

const INT32_MAX = 2 ** 31 - 1;

/** A value for `field`, often one at a limit of its type. */
function randomValue(random: Random, field: Field, depth: number): unknown {
  const { type } = field;
  if (typeof type === "object") {
    if ("enum" in type) return random.pick(type.enum);
    // Beyond a depth the messages are empty, so that a Bundle of LinkMessages ends.
    return depth >= 3 ? {} : randomMessage(random, type.message, depth + 1);
  }
  if (type === "bool") return random.below(2) === 1;
  if (type === "string") {
    return random.pick(["", "deposit", "3/14", "é", "日本語", "💸", "\uFEFFdeposit", "x".repeat(300)]);
  }
  if (type === "int32") return random.pick([0, 1, -1, 170, INT32_MAX, -INT32_MAX - 1, random.below(2 ** 31)]);
  return random.pick([
    0,
    1,
    127,
    128,
    -1,
    2 ** 32,
    Number.MAX_SAFE_INTEGER,
    -Number.MAX_SAFE_INTEGER,
    random.below(2 ** 21) * 2 ** 32 + random.below(2 ** 32),
  ]);
}

/** A message of `type` with some fields set and some not, and at most one member of each oneof. */
function randomMessage(random: Random, type: string, depth = 0): MessageValue {
  const message: MessageValue = {};
  const oneofs = new Map<string, Field[]>();
  for (const field of MESSAGES[type] ?? []) {
    if (field.oneof !== undefined) oneofs.set(field.oneof, [...oneofs.get(field.oneof) ?? [], field]);
    else if (random.below(4) === 0) continue;
    else if (!field.repeated) message[field.name] = randomValue(random, field, depth);
    else {message[field.name] = Array.from({ length: random.below(4) }, () =>
        randomValue(random, field, depth));}
  }
  for (const members of oneofs.values()) {
    const member = members[random.below(members.length + 1)];
    if (member !== undefined) message[member.name] = randomValue(random, member, depth);
  }
  return message;
}

Deno.test("what protobufjs writes decodes to proto-loader's object, and what this codec writes too", () => {
  for (const type of Object.keys(MESSAGES)) {
    const protobufjs = referenceOf(type);
    for (let seed = 1; seed <= 200; seed++) {
      const value = randomMessage(new Random(seed), type);
      const expected = protobufjs.decode(protobufjs.encode(value));
      const bytes = codec.encode(type, value);
      const context = `${type}, seed ${seed}`;
      assertEquals(
        codec.decode(type, protobufjs.encode(value)),
        expected,
        `this codec reads protobufjs: ${context}`,
      );
      assertEquals(protobufjs.decode(bytes), expected, `protobufjs reads this codec: ${context}`);
      assertEquals(codec.decode(type, bytes), expected, `this codec reads itself: ${context}`);
      // Key order too, which deep equality ignores: `main.ts status --json` prints the decoded object.
      assertEquals(JSON.stringify(codec.decode(type, bytes)), JSON.stringify(expected), context);
    }
  }
});

/** `value` without the fields at their default, which protobufjs writes when they are present. */
function withoutDefaults(type: string, value: MessageValue): MessageValue {
  const kept: MessageValue = {};
  for (const field of MESSAGES[type] ?? []) {
    const item = value[field.name];
    const { type: fieldType } = field;
    if (item === undefined) continue;
    if (typeof fieldType === "object" && "message" in fieldType) {
      kept[field.name] = field.repeated
        ? (item as MessageValue[]).map((one) => withoutDefaults(fieldType.message, one))
        : withoutDefaults(fieldType.message, item as MessageValue);
    } else if (field.repeated || field.oneof !== undefined || item !== defaultOf(fieldType)) {
      kept[field.name] = item;
    }
  }
  return kept;
}

function defaultOf(type: Exclude<FieldType, { message: string }>): unknown {
  return typeof type === "object" ? type.enum[0] : type === "string" ? "" : type === "bool" ? false : 0;
}

Deno.test("encode() writes the bytes protobufjs writes, when no field is at its default", () => {
  for (const type of Object.keys(MESSAGES)) {
    for (let seed = 1; seed <= 100; seed++) {
      const value = withoutDefaults(type, randomMessage(new Random(seed), type));
      assertEquals(codec.encode(type, value), referenceOf(type).encode(value), `${type}, seed ${seed}`);
    }
  }
});

/** The bytes of a field: its tag, then `rest` (already encoded). */
function field(number: number, wire: number, ...rest: number[]): number[] {
  return [...varint(number * 8 + wire), ...rest];
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = BigInt.asUintN(64, BigInt(value));
  for (; rest > 0x7fn; rest >>= 7n) bytes.push(Number(rest & 0x7fn) | 0x80);
  return [...bytes, Number(rest)];
}

/** Both codecs decode `bytes` as `type` to the same object, which is returned. */
function decodedAlike(type: string, bytes: readonly number[]): MessageValue {
  const decoded = codec.decode(type, new Uint8Array(bytes));
  assertEquals(decoded, referenceOf(type).decode(new Uint8Array(bytes)));
  return decoded;
}

Deno.test("decode() reads an int64 beyond 2^53 as the number protobufjs gives, and a negative one exactly", () => {
  for (const amount of ["9007199254740993", "9223372036854775807", "-1", "-9007199254740993", "-4"]) {
    const bytes = [...referenceOf("Request").encode({ amount })];
    assertEquals(decodedAlike("Request", bytes)["amount"], Number(amount));
  }
});

Deno.test("decode() reads an int32 sent as a varint beyond 32 bits as its low 32 bits, signed", () => {
  // money = 2^32 - 5, as a sender that writes int32 as uint32 would; and -5 the long way, as ten bytes.
  assertEquals(decodedAlike("Request", field(3, 0, ...varint(2 ** 32 - 5)))["money"], -5);
  assertEquals(decodedAlike("Request", field(3, 0, ...varint(-5)))["money"], -5);
});

Deno.test("decode() skips fields it does not know, of every wire type, groups included", () => {
  const bytes = [
    ...field(99, 0, ...varint(2 ** 40)),
    ...field(98, 1, 1, 2, 3, 4, 5, 6, 7, 8),
    ...field(97, 2, 3, 97, 98, 99),
    ...field(96, 5, 1, 2, 3, 4),
    ...field(95, 3, ...field(1, 0, 7), ...field(95, 4)),
    ...field(1, 0, 42),
  ];
  assertEquals(decodedAlike("Request", bytes)["id"], 42);
});

Deno.test("decode() skips fields it does not know inside a nested message too", () => {
  const entry = [...field(99, 0, 1), ...field(97, 3, ...field(1, 0, 5), ...field(97, 4)), ...field(2, 0, 9)];
  const decoded = decodedAlike("LinkMessage", field(2, 2, entry.length, ...entry));
  assertEquals((decoded["entry"] as MessageValue)["position"], 9);
});

Deno.test("decode() throws a RangeError for a group that ends with another's end", () => {
  const bytes = [...field(95, 3, ...field(1, 0, 7)), ...field(94, 4)];
  assertThrows(() => codec.decode("Request", new Uint8Array(bytes)), RangeError);
});

Deno.test("decode() throws a RangeError for a nested message whose last field runs past its length", () => {
  // An Entry of 2 bytes whose view (a varint of 150: 0x96 0x01) takes 3.
  const bytes = [...field(2, 2, 2, ...field(1, 0, 0x96, 0x01))];
  assertThrows(() => codec.decode("LinkMessage", new Uint8Array(bytes)), RangeError);
});

Deno.test("decode() reads repeated numbers packed and unpacked, and both in one message", () => {
  const packed = field(10, 2, 3, 1, 2, 3);
  const unpacked = [...field(10, 0, 4), ...field(10, 0, 5)];
  assertEquals(decodedAlike("BranchStatus", [...packed, ...unpacked])["noops"], [1, 2, 3, 4, 5]);
});

Deno.test("decode() keeps the last member of a oneof on the wire, and drops the one before", () => {
  const entry = field(2, 2, 2, ...field(1, 0, 1));
  const answer = field(4, 2, 2, ...field(1, 0, 1));
  // protobufjs names the last as the oneof's but keeps both; the encoding's rule is that the last wins.
  const decoded = codec.decode("LinkMessage", new Uint8Array([...entry, ...answer]));
  assertEquals([decoded["kind"], "entry" in decoded], ["answer", false]);
  assertEquals(referenceOf("LinkMessage").decode(new Uint8Array([...entry, ...answer]))["kind"], "answer");
});

Deno.test("decode() merges a message field sent twice, as protobuf's encoding says parsers must", () => {
  // protobufjs keeps the second alone; the encoding's rule is to merge them. Nothing here sends it twice.
  const bytes = [...field(2, 2, 2, ...field(1, 0, 7)), ...field(2, 2, 2, ...field(2, 0, 9))];
  const { entry } = codec.decode("LinkMessage", new Uint8Array(bytes)) as { entry: MessageValue };
  assertEquals([entry["view"], entry["position"]], [7, 9]);
});

Deno.test("decode() skips a known field sent with another wire type", () => {
  const bytes = [...field(1, 2, 2, 104, 105), ...field(2, 0, 1)];
  assertEquals(codec.decode("Request", new Uint8Array(bytes))["id"], 0);
  assertEquals(codec.decode("Request", new Uint8Array(bytes))["interface"], "");
});

Deno.test("decode() throws a RangeError for every cut of a message that ends inside a field", () => {
  const bytes = codec.encode("LinkMessage", randomMessage(new Random(7), "LinkMessage"));
  assertOk(bytes.length > 20, `a message worth cutting: ${bytes.length} bytes`);
  let cutInside = 0;
  for (let length = 0; length < bytes.length; length++) {
    try {
      codec.decode("LinkMessage", bytes.subarray(0, length));
    } catch (error) {
      assertOk(error instanceof RangeError, `cut at ${length}: ${error}`);
      cutInside++;
    }
  }
  assertOk(cutInside > 0);
});

Deno.test("encode() refuses a value its field cannot hold, which only a bug would send", () => {
  for (const amount of [2 ** 53, 1.5, Number.NaN]) {
    assertThrows(() => codec.encode("Request", { amount }), RangeError);
  }
  assertThrows(() => codec.encode("Request", { money: 2 ** 31 }), RangeError);
  assertThrows(() => codec.encode("Request", { interface: 3 }), TypeError);
  assertThrows(() => codec.encode("Request", { amount: "5" }), TypeError);
  assertThrows(() => codec.encode("LinkMessage", { entry: 5 }), TypeError);
  assertThrows(() => codec.encode("grpc.health.v1.HealthCheckResponse", { status: "FINE" }), TypeError);
  assertThrows(() => new Codec({ A: [{ ...MESSAGES["Bundle"]![0]!, name: "b" }] }), TypeError);
});

Deno.test("encode() leaves out fields at their default, but not a oneof's member that is set", () => {
  assertEquals([...codec.encode("Entry", { view: 0, interface: "", failed: false })], []);
  assertEquals([...codec.encode("LinkMessage", { seq: 0, read: { clock: 0, key: "" } })], field(5, 2, 0));
});
