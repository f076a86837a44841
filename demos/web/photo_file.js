// The photo's colour profile, carried into the downloaded PNG.
//
// The page reads a photo's stored pixel values (no colour-space conversion), so the
// result holds the photo's values; a PNG without a profile is shown as sRGB, and a phone's
// Display P3 photo (or an Adobe RGB one) came back with every pixel's colour moved, not
// only the painted ones. As penet_tf.image_io.colour_profile / with_colour_profile do for
// the CLIs, the ICC profile of the opened JPEG, PNG or WebP is read from its header
// (when it describes RGB) and written into the downloaded PNG as its iCCP chunk.
//
// Pure functions on byte arrays (no DOM); the zlib streams are the platform's
// CompressionStream / DecompressionStream ("deflate" is zlib's format), in browsers and
// in Node alike.

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const ASCII = (bytes, start, length) =>
  String.fromCharCode(...bytes.subarray(start, start + length));
const bigEndian32 = (bytes, at) =>
  ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
const littleEndian32 = (bytes, at) =>
  (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;

async function throughStream(bytes, stream) {
  const body = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(body).arrayBuffer());
}

/** Whether `bytes` start as a PNG. */
function isPng(bytes) {
  return PNG_SIGNATURE.every((value, i) => bytes[i] === value);
}

/** A PNG's chunks: [{type, start (of the length field), data: [begin, end)}]. */
function pngChunks(bytes) {
  const chunks = [];
  let at = PNG_SIGNATURE.length;
  while (at + 12 <= bytes.length) {
    const length = bigEndian32(bytes, at);
    const type = ASCII(bytes, at + 4, 4);
    const end = at + 12 + length;
    if (end > bytes.length) break; // cut short: what was read is kept
    chunks.push({ type, start: at, end, data: [at + 8, at + 8 + length] });
    if (type === 'IEND') break;
    at = end;
  }
  return chunks;
}

/** The ICC profile of a JPEG: its APP2 "ICC_PROFILE" segments in sequence order. */
function jpegProfile(bytes) {
  const parts = [];
  let at = 2;
  while (at + 4 <= bytes.length && bytes[at] === 0xff) {
    const marker = bytes[at + 1];
    if (marker === 0xff) {
      at += 1; // fill byte
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) break; // end of image, start of scan
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2; // markers without a length
      continue;
    }
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    const start = at + 4;
    if (marker === 0xe2 && length >= 16 && ASCII(bytes, start, 12) === 'ICC_PROFILE\0') {
      parts.push({ order: bytes[start + 12], data: bytes.subarray(start + 14, at + 2 + length) });
    }
    at += 2 + length;
  }
  if (!parts.length) return null;
  parts.sort((a, b) => a.order - b.order);
  const profile = new Uint8Array(parts.reduce((sum, part) => sum + part.data.length, 0));
  let offset = 0;
  for (const part of parts) {
    profile.set(part.data, offset);
    offset += part.data.length;
  }
  return profile;
}

/** The ICC profile of a WebP: its ICCP chunk. */
function webpProfile(bytes) {
  let at = 12;
  while (at + 8 <= bytes.length) {
    const type = ASCII(bytes, at, 4);
    const length = littleEndian32(bytes, at + 4);
    if (type === 'ICCP') return bytes.slice(at + 8, Math.min(at + 8 + length, bytes.length));
    at += 8 + length + (length % 2);
  }
  return null;
}

/** The ICC profile of a PNG: its iCCP chunk, inflated. */
async function pngProfile(bytes) {
  const chunk = pngChunks(bytes).find(({ type }) => type === 'iCCP');
  if (!chunk) return null;
  const data = bytes.subarray(...chunk.data);
  const nameEnd = data.indexOf(0);
  if (nameEnd < 0 || data[nameEnd + 1] !== 0) return null; // 0: the only method, deflate
  return throughStream(data.subarray(nameEnd + 2), new DecompressionStream('deflate'));
}

/**
 * The ICC colour profile embedded in an image file's bytes (JPEG, PNG or WebP) when it
 * describes RGB; else null (none, a grey or CMYK one, another format, a damaged one).
 */
export async function colourProfile(bytes) {
  let profile = null;
  try {
    if (bytes[0] === 0xff && bytes[1] === 0xd8) profile = jpegProfile(bytes);
    else if (isPng(bytes)) profile = await pngProfile(bytes);
    else if (ASCII(bytes, 0, 4) === 'RIFF' && ASCII(bytes, 8, 4) === 'WEBP') profile = webpProfile(bytes);
  } catch {
    return null; // a damaged profile: the photo is shown (and saved) without one
  }
  return profile && profile.length >= 128 && ASCII(profile, 16, 4) === 'RGB ' ? profile : null;
}

let crcTable = null;
function crc32(bytes, crc = 0xffffffff) {
  if (!crcTable) {
    crcTable = new Uint32Array(256).map((_, n) => {
      let c = n;
      for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      return c >>> 0;
    });
  }
  for (let i = 0; i < bytes.length; i += 1) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return crc;
}

function pngChunk(type, data) {
  const chunk = new Uint8Array(12 + data.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i += 1) chunk[4 + i] = type.charCodeAt(i);
  chunk.set(data, 8);
  view.setUint32(8 + data.length, (crc32(chunk.subarray(4, 8 + data.length)) ^ 0xffffffff) >>> 0);
  return chunk;
}

// Chunks that say how to read the colours: replaced by the photo's profile.
const COLOUR_CHUNKS = new Set(['iCCP', 'sRGB', 'gAMA', 'cHRM', 'cICP']);

/**
 * PNG bytes with `profile` as their iCCP chunk, right after IHDR (before the pixels, as
 * PNG requires), and without the encoder's own colour chunks (sRGB, gAMA, cHRM, cICP, an
 * iCCP); the bytes unchanged when `profile` is null.
 */
export async function withColourProfile(png, profile) {
  if (!profile) return png;
  if (!isPng(png)) throw new Error('withColourProfile: not a PNG');
  const name = new TextEncoder().encode('ICC profile');
  const compressed = await throughStream(profile, new CompressionStream('deflate'));
  const data = new Uint8Array(name.length + 2 + compressed.length);
  data.set(name, 0); // then a 0 ending the name and a 0 for the method (deflate)
  data.set(compressed, name.length + 2);
  const parts = [png.subarray(0, PNG_SIGNATURE.length)];
  for (const chunk of pngChunks(png)) {
    if (COLOUR_CHUNKS.has(chunk.type)) continue;
    parts.push(png.subarray(chunk.start, chunk.end));
    if (chunk.type === 'IHDR') parts.push(pngChunk('iCCP', data));
  }
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
