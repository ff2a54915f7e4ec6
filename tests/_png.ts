/**
 * Just enough of PNG to look at a screenshot's pixels: 8-bit RGB or RGBA, not interlaced (what Chromium
 * writes), inflated with the runtime's own DecompressionStream.
 *
 * @module
 */

/** A decoded image: `pixels` holds `channels` bytes per pixel, row after row. */
export interface Image {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  readonly pixels: Uint8Array;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** Decodes `bytes`; throws an Error for anything it does not read. */
export async function decodePng(bytes: Uint8Array): Promise<Image> {
  if (!SIGNATURE.every((byte, index) => bytes[index] === byte)) throw new Error("not a PNG");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let width = 0, height = 0, channels = 0;
  const data: Uint8Array<ArrayBuffer>[] = [];
  for (let at = 8; at < bytes.length;) {
    const length = view.getUint32(at);
    const type = new TextDecoder().decode(bytes.subarray(at + 4, at + 8));
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      const [depth, colour, , , interlace] = body.subarray(8, 13);
      channels = colour === 2 ? 3 : colour === 6 ? 4 : 0;
      if (depth !== 8 || channels === 0 || interlace !== 0) {
        throw new Error(`unsupported PNG: depth ${depth}, colour type ${colour}, interlace ${interlace}`);
      }
    } else if (type === "IDAT") data.push(body.slice());
    at += 12 + length;
  }
  const inflated = new Uint8Array(
    await new Response(new Blob(data).stream().pipeThrough(new DecompressionStream("deflate"))).arrayBuffer(),
  );
  return { width, height, channels, pixels: unfilter(inflated, width, height, channels) };
}

/** Undoes PNG's per-row filters (None, Sub, Up, Average, Paeth). */
function unfilter(data: Uint8Array, width: number, height: number, channels: number): Uint8Array {
  const stride = width * channels;
  const out = new Uint8Array(stride * height);
  for (let row = 0; row < height; row++) {
    const filter = data[row * (stride + 1)] as number;
    const source = data.subarray(row * (stride + 1) + 1, (row + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const left = i >= channels ? out[row * stride + i - channels] as number : 0;
      const up = row > 0 ? out[(row - 1) * stride + i] as number : 0;
      const upLeft = row > 0 && i >= channels ? out[(row - 1) * stride + i - channels] as number : 0;
      const predictor = filter === 0
        ? 0
        : filter === 1
        ? left
        : filter === 2
        ? up
        : filter === 3
        ? (left + up) >> 1
        : paeth(left, up, upLeft);
      out[row * stride + i] = ((source[i] as number) + predictor) & 0xff;
    }
  }
  return out;
}

function paeth(left: number, up: number, upLeft: number): number {
  const estimate = left + up - upLeft;
  const [a, b, c] = [Math.abs(estimate - left), Math.abs(estimate - up), Math.abs(estimate - upLeft)];
  return a <= b && a <= c ? left : b <= c ? up : upLeft;
}
