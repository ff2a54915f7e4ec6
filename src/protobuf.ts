/**
 * The protobuf wire format, for the messages of proto/bank.proto and proto/health.proto (their tables are
 * in src/protos.ts): one encoder and one decoder, driven by a table of each message's fields.
 *
 * Why not proto-loader at run time: parsing the .proto files, building protobufjs's reflection and
 * generating a codec per message on first use cost every process about 45 ms of CPU, a third of its
 * start-up, and a run of the bank starts one process per branch on a machine with two cores. The tables
 * are checked against the .proto files, and both directions of the codec against protobufjs, in
 * tests/protobuf_test.ts, so the .proto files stay the contract.
 *
 * A decoded message has the shape proto-loader gives with the options `keepCase: true, longs: Number,
 * enums: String, defaults: true, oneofs: true`: field names as written in the .proto; int64 as numbers
 * (exact up to 2^53 - 1; beyond that, a number that is not a safe integer, which src/wire_codec.ts
 * refuses); enums by name; every field that is not set at its default (repeated ones as [], messages as
 * null); and a oneof's name holding the name of the member that is set. Fields this end does not know are
 * skipped, as is a known field sent with another wire type. Where protobufjs departs from the encoding's
 * rules, this follows the rules: a message field sent twice is merged, and a oneof keeps only the last of
 * its members on the wire. Encoding writes proto3's canonical form: no field at its default, except the
 * member of a oneof that is set; repeated numbers packed.
 *
 * @module
 */

/** The scalar types the protos use. */
export type Scalar = "int32" | "int64" | "bool" | "string";

/** A field's type: a scalar, an enum (its value names, by number from 0), or a message (by name). */
export type FieldType = Scalar | { readonly enum: readonly string[] } | { readonly message: string };

/** One field of a message, as the .proto declares it. */
export interface Field {
  readonly name: string;
  readonly number: number;
  readonly type: FieldType;
  readonly repeated: boolean;
  /** The oneof the field is a member of, if any. */
  readonly oneof: string | undefined;
}

/** Messages by name (package-qualified where the .proto has a package), each a list of its fields. */
export type Messages = Readonly<Record<string, readonly Field[]>>;

/** A message's value: fields by name. */
export type MessageValue = Record<string, unknown>;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_DELIMITED = 2;
const WIRE_START_GROUP = 3;
const WIRE_END_GROUP = 4;
const WIRE_FIXED32 = 5;

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

const ENCODER = new TextEncoder();
// A string that starts with a byte order mark keeps it, as protobufjs's decoder does.
const DECODER = new TextDecoder("utf-8", { ignoreBOM: true });

/** Encodes and decodes the messages of one set of tables. */
export class Codec {
  readonly #byNumber = new Map<string, ReadonlyMap<number, Field>>();
  /** Each message's fields by number: the order protobufjs writes them in, and proto-loader's objects have. */
  readonly #ordered = new Map<string, readonly Field[]>();

  /** Throws a TypeError if a field names a message that is not in `messages`. */
  constructor(messages: Messages) {
    for (const [name, fields] of Object.entries(messages)) {
      for (const { name: field, type } of fields) {
        if (typeof type === "object" && "message" in type && !(type.message in messages)) {
          throw new TypeError(`${name}.${field}: unknown message ${type.message}`);
        }
      }
      this.#byNumber.set(name, new Map(fields.map((field) => [field.number, field])));
      this.#ordered.set(name, [...fields].sort((a, b) => a.number - b.number));
    }
  }

  /**
   * The bytes of `value` as message `type`. Throws a RangeError for a number its field cannot hold (a
   * fraction, an int32 beyond its range, an int64 beyond 2^53 in size), and a TypeError for a value of
   * the wrong kind: both are bugs of the caller, which sends only what it built.
   */
  encode(type: string, value: MessageValue): Uint8Array {
    const writer = new Writer();
    this.#write(writer, type, value);
    return writer.finish();
  }

  /** Decodes message `type` from `bytes`; throws a RangeError if they end inside a field. */
  decode(type: string, bytes: Uint8Array): MessageValue {
    const reader = new Reader(bytes);
    return this.#read(reader, type, bytes.length, undefined);
  }

  #write(writer: Writer, type: string, value: MessageValue): void {
    const fields = this.#ordered.get(type);
    if (fields === undefined) throw new TypeError(`unknown message ${type}`);
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new TypeError(`${type}: expected an object, got ${value}`);
    }
    for (const field of fields) {
      const item = value[field.name];
      if (item === undefined || item === null) continue;
      if (!field.repeated) {
        // proto3 leaves a field at its default out, but not a oneof's member: which one is set is news.
        if (field.oneof !== undefined || !isDefault(field.type, item)) this.#writeField(writer, field, item);
        continue;
      }
      if (!Array.isArray(item)) throw new TypeError(`${type}.${field.name}: expected an array`);
      if (item.length === 0) continue;
      if (packable(field.type)) {
        writer.tag(field.number, WIRE_DELIMITED);
        writer.delimited(() => {
          for (const one of item) writeScalar(writer, field, one);
        });
      } else {
        for (const one of item) this.#writeField(writer, field, one);
      }
    }
  }

  #writeField(writer: Writer, field: Field, value: unknown): void {
    const { type } = field;
    if (typeof type === "object" && "message" in type) {
      writer.tag(field.number, WIRE_DELIMITED);
      writer.delimited(() => this.#write(writer, type.message, value as MessageValue));
    } else if (type === "string") {
      if (typeof value !== "string") throw new TypeError(`${field.name}: expected a string, got ${value}`);
      writer.tag(field.number, WIRE_DELIMITED);
      writer.bytes(ENCODER.encode(value));
    } else {
      writer.tag(field.number, WIRE_VARINT);
      writeScalar(writer, field, value);
    }
  }

  #read(reader: Reader, type: string, end: number, into: MessageValue | undefined): MessageValue {
    const message = into ?? this.#defaults(type);
    const byNumber = this.#byNumber.get(type) as ReadonlyMap<number, Field>;
    while (reader.position < end) {
      const tag = reader.varint();
      const number = Math.floor(tag / 8);
      const wire = tag % 8;
      const field = byNumber.get(number);
      if (field === undefined) {
        reader.skip(wire, number);
      } else if (field.repeated && wire === WIRE_DELIMITED && packable(field.type)) {
        const packedEnd = reader.delimitedEnd();
        const values = message[field.name] as unknown[];
        while (reader.position < packedEnd) values.push(readScalar(reader, field.type));
        reader.expectAt(packedEnd);
      } else if (wire !== wireType(field.type)) {
        reader.skip(wire, number);
      } else if (field.repeated) {
        (message[field.name] as unknown[]).push(this.#readValue(reader, field, undefined));
      } else {
        this.#readSingle(reader, field, message);
      }
    }
    reader.expectAt(end);
    return message;
  }

  /** A singular field: the last one on the wire wins, except that a message is merged into one before. */
  #readSingle(reader: Reader, field: Field, message: MessageValue): void {
    const { oneof } = field;
    const earlier = oneof === undefined || message[oneof] === field.name ? message[field.name] : undefined;
    message[field.name] = this.#readValue(reader, field, (earlier ?? undefined) as MessageValue | undefined);
    if (oneof === undefined) return;
    const other = message[oneof];
    if (typeof other === "string" && other !== field.name) delete message[other];
    message[oneof] = field.name;
  }

  #readValue(reader: Reader, field: Field, into: MessageValue | undefined): unknown {
    const { type } = field;
    if (typeof type === "object" && "message" in type) {
      return this.#read(reader, type.message, reader.delimitedEnd(), into);
    }
    if (type === "string") return DECODER.decode(reader.delimited());
    return readScalar(reader, type);
  }

  /**
   * A message with every field at its default; a oneof's members are left unset. The repeated fields come
   * first, then the others, each by number, as proto-loader has them (`main.ts status --json` prints them
   * in this order).
   */
  #defaults(type: string): MessageValue {
    const message: MessageValue = {};
    const fields = this.#ordered.get(type);
    if (fields === undefined) throw new TypeError(`unknown message ${type}`);
    for (const { name, repeated } of fields) if (repeated) message[name] = [];
    for (const { name, type: fieldType, repeated, oneof } of fields) {
      if (!repeated && oneof === undefined) message[name] = defaultOf(fieldType);
    }
    return message;
  }
}

function defaultOf(type: FieldType): unknown {
  if (typeof type === "object") return "enum" in type ? type.enum[0] : null;
  return type === "string" ? "" : type === "bool" ? false : 0;
}

function isDefault(type: FieldType, value: unknown): boolean {
  return value === defaultOf(type);
}

/** Whether a repeated field of this type is packed: numbers, bools and enums are, strings and messages not. */
function packable(type: FieldType): boolean {
  return type !== "string" && !(typeof type === "object" && "message" in type);
}

function wireType(type: FieldType): number {
  return packable(type) ? WIRE_VARINT : WIRE_DELIMITED;
}

function writeScalar(writer: Writer, field: Field, value: unknown): void {
  const { type } = field;
  if (type === "bool") {
    if (typeof value !== "boolean") throw new TypeError(`${field.name}: expected a boolean, got ${value}`);
    writer.varint(value ? 1 : 0);
    return;
  }
  if (typeof type === "object" && "enum" in type) {
    const number = type.enum.indexOf(value as string);
    if (number === -1) {
      throw new TypeError(`${field.name}: expected one of ${type.enum.join(", ")}, got ${value}`);
    }
    writer.varint(number);
    return;
  }
  if (typeof value !== "number") throw new TypeError(`${field.name}: expected a number, got ${value}`);
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`${field.name}: expected an integer of at most 2^53 - 1 in size, got ${value}`);
  }
  if (type === "int32" && (value < INT32_MIN || value > INT32_MAX)) {
    throw new RangeError(`${field.name}: expected an int32, got ${value}`);
  }
  writer.varint(value);
}

function readScalar(reader: Reader, type: FieldType): unknown {
  if (type === "int64") return reader.int64();
  if (type === "int32") return reader.int32();
  if (type === "bool") return reader.varint() !== 0;
  if (typeof type === "object" && "enum" in type) {
    const number = reader.int32();
    return type.enum[number] ?? number;
  }
  throw new TypeError(`a ${JSON.stringify(type)} is not a scalar`);
}

/** Bytes written one after another into a buffer that grows as needed. */
class Writer {
  #buffer = new Uint8Array(64);
  #length = 0;

  tag(number: number, wire: number): void {
    this.varint(number * 8 + wire);
  }

  /** A safe integer; a negative one as ten bytes of its 64-bit two's complement, as protobuf has it. */
  varint(value: number): void {
    this.#reserve(10);
    this.#length = this.#put(this.#length, value);
  }

  /** Length-delimited bytes. */
  bytes(bytes: Uint8Array): void {
    this.varint(bytes.length);
    this.#reserve(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
  }

  /**
   * Length-delimited bytes that `write` writes: written in place, then moved up to make room for their
   * length, whose size is known only then.
   */
  delimited(write: () => void): void {
    const start = this.#length;
    write();
    const size = this.#length - start;
    const prefix = varintSize(size);
    this.#reserve(prefix);
    this.#buffer.copyWithin(start + prefix, start, start + size);
    this.#put(start, size);
    this.#length = start + prefix + size;
  }

  finish(): Uint8Array {
    return this.#buffer.subarray(0, this.#length);
  }

  /** Writes `value` as a varint at `at`, which has room for it; returns where it ends. */
  #put(at: number, value: number): number {
    let end = at;
    if (value < 0) {
      let rest = BigInt.asUintN(64, BigInt(value));
      for (let i = 0; i < 9; i++, rest >>= 7n) this.#buffer[end++] = Number(rest & 0x7fn) | 0x80;
      this.#buffer[end++] = Number(rest);
      return end;
    }
    let rest = value;
    while (rest > 0x7f) {
      this.#buffer[end++] = (rest % 0x80) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    this.#buffer[end++] = rest;
    return end;
  }

  #reserve(bytes: number): void {
    if (this.#length + bytes <= this.#buffer.length) return;
    let size = this.#buffer.length * 2;
    while (size < this.#length + bytes) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
  }
}

function varintSize(value: number): number {
  let size = 1;
  for (let rest = value; rest > 0x7f; rest = Math.floor(rest / 0x80)) size++;
  return size;
}

/** Reads fields from bytes, throwing a RangeError where they end too soon. */
class Reader {
  readonly #bytes: Uint8Array;
  position = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  /**
   * A varint as a number: exact when it is below 2^53, as every tag, length and amount here is; larger
   * ones (a negative int64, say) are rounded, and int32() and int64() read those exactly.
   */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const byte = this.#byte();
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
    }
    throw new RangeError(`a varint at byte ${this.position - 10} is longer than 10 bytes`);
  }

  /** An int64 varint as a number: exact up to 2^53 - 1 in size, rounded beyond (as longs: Number gives). */
  int64(): number {
    const start = this.position;
    const value = this.varint();
    return value < 2 ** 53 ? value : Number(BigInt.asIntN(64, this.#bigVarint(start)));
  }

  /** An int32 varint: its low 32 bits, signed (a negative one is sent as ten bytes). */
  int32(): number {
    const start = this.position;
    const value = this.varint();
    return value < 2 ** 53 ? value | 0 : Number(BigInt.asIntN(32, this.#bigVarint(start)));
  }

  /** Where a length-delimited field that starts here ends; reads its length. */
  delimitedEnd(): number {
    const length = this.varint();
    const end = this.position + length;
    if (end > this.#bytes.length) {
      throw new RangeError(`a field of ${length} bytes at byte ${this.position} runs past the end`);
    }
    return end;
  }

  /** A length-delimited field's bytes. */
  delimited(): Uint8Array {
    const end = this.delimitedEnd();
    const bytes = this.#bytes.subarray(this.position, end);
    this.position = end;
    return bytes;
  }

  /** Skips a field of wire type `wire` (of field `number`, which a group's end must name). */
  skip(wire: number, number: number): void {
    if (wire === WIRE_VARINT) this.varint();
    else if (wire === WIRE_FIXED64) this.#advance(8);
    else if (wire === WIRE_DELIMITED) this.position = this.delimitedEnd();
    else if (wire === WIRE_FIXED32) this.#advance(4);
    else if (wire === WIRE_START_GROUP) this.#skipGroup(number);
    else throw new RangeError(`wire type ${wire} at byte ${this.position} is not one protobuf has`);
  }

  /** Throws unless the last field read ended exactly at `end`. */
  expectAt(end: number): void {
    if (this.position !== end) {
      throw new RangeError(`a field at byte ${this.position} runs past its message's end ${end}`);
    }
  }

  #skipGroup(number: number): void {
    for (;;) {
      const tag = this.varint();
      if (tag % 8 === WIRE_END_GROUP) {
        if (Math.floor(tag / 8) !== number) throw new RangeError(`group ${number} ends with another's end`);
        return;
      }
      this.skip(tag % 8, Math.floor(tag / 8));
    }
  }

  #bigVarint(start: number): bigint {
    let value = 0n;
    for (let i = this.position - 1; i >= start; i--) {
      value = (value << 7n) | BigInt((this.#bytes[i] as number) & 0x7f);
    }
    return value;
  }

  #advance(bytes: number): void {
    if (this.position + bytes > this.#bytes.length) {
      throw new RangeError(`a field of ${bytes} bytes at byte ${this.position} runs past the end`);
    }
    this.position += bytes;
  }

  #byte(): number {
    const byte = this.#bytes[this.position];
    if (byte === undefined) throw new RangeError(`the message ends inside a varint at byte ${this.position}`);
    this.position++;
    return byte;
  }
}
