// What the page reads from a photo file's first bytes, before decoding it: its size, to
// refuse a photo over the page's limits at once and by name (a 400-MP PNG decoded for
// 6 s and 1.6 GB before it was refused; past about 536 MP Chromium's decode failed and the
// page said only that the file could not be read), and its colour profile, carried into
// the downloaded PNG.
//
// The page reads a photo's stored pixel values (no colour-space conversion), so the result
// holds the photo's values; a PNG without a profile is shown as sRGB, and a phone's Display
// P3 photo (or an Adobe RGB one) came back with every pixel's colour moved, not only the
// painted ones. As penet_tf.image_io.colour_profile / with_colour_profile do for the CLIs
// (Pillow's readers), the ICC profile of a JPEG (APP2 segments, all of them), PNG (iCCP),
// WebP (ICCP) or AVIF (colr) is read when it describes RGB and written into the download
// as its iCCP chunk.
//
// Pure functions on byte arrays and Blobs (no DOM); the zlib streams are the platform's
// CompressionStream / DecompressionStream ("deflate" is zlib's format), in browsers and in
// Node alike.

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const ASCII = (bytes, start, length) =>
  String.fromCharCode(...bytes.subarray(start, start + length));
const bigEndian16 = (bytes, at) => (bytes[at] << 8) | bytes[at + 1];
const bigEndian32 = (bytes, at) =>
  ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
const littleEndian16 = (bytes, at) => bytes[at] | (bytes[at + 1] << 8);
const littleEndian24 = (bytes, at) => bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16);
const littleEndian32 = (bytes, at) => (littleEndian24(bytes, at) | (bytes[at + 3] << 24)) >>> 0;

async function throughStream(bytes, stream) {
  const body = new Blob([bytes]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(body).arrayBuffer());
}

// The largest ICC profile kept: Pillow's (so penet_tf's) PNG reader refuses an iCCP chunk
// that inflates past 1 MiB (PngImagePlugin.MAX_TEXT_CHUNK), so a download holding a
// larger one could not be opened there (penet_tf.image_io.MAX_PROFILE_BYTES, the same).
export const MAX_PROFILE_BYTES = 1 << 20;

/**
 * An ICC profile's zlib stream inflated, or null: stopped once past MAX_PROFILE_BYTES (a
 * 1 MB PNG's iCCP inflated to 1 GiB, 4 s, then 11 s to deflate again for each
 * download), and kept when the stream has bytes after its end but the profile its
 * declared size (Chromium's DecompressionStream throws there, Node's and Pillow's
 * readers do not: the profile was dropped in the browser only).
 */
async function inflatedProfile(bytes) {
  let at = 0; // fed 4 KiB at a time (at most about 4 MiB inflated each), as read
  const source = new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) controller.close();
      else controller.enqueue(bytes.slice(at, (at += 4096)));
    },
  });
  const reader = source.pipeThrough(new DecompressionStream('deflate')).getReader();
  const parts = [];
  let length = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      length += value.length;
      if (length > MAX_PROFILE_BYTES) {
        reader.cancel().catch(() => {});
        return null;
      }
    }
  } catch {
    const read = concatenate(parts);
    const declared = read.length >= 4 ? bigEndian32(read, 0) : 0;
    return declared >= 128 && read.length >= declared ? read.subarray(0, declared) : null;
  }
  return concatenate(parts);
}

function isPng(bytes) {
  return PNG_SIGNATURE.every((value, i) => bytes[i] === value);
}

/** A PNG's chunks: [{type, start (of the length field), end, data: [begin, end)}]. */
function pngChunks(bytes, stopAt = 'IEND') {
  const chunks = [];
  let at = PNG_SIGNATURE.length;
  while (at + 12 <= bytes.length) {
    const length = bigEndian32(bytes, at);
    const type = ASCII(bytes, at + 4, 4);
    const end = at + 12 + length;
    chunks.push({ type, start: at, end, data: [at + 8, Math.min(at + 8 + length, bytes.length)] });
    if (type === stopAt || end > bytes.length) break;
    at = end;
  }
  return chunks;
}

/** A JPEG's segments before its image data: [{marker, data}] (fill and junk bytes skipped). */
function jpegSegments(bytes) {
  const segments = [];
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff || bytes[at + 1] === 0xff || bytes[at + 1] === 0) {
      at += 1; // junk before a marker, or a fill byte (libjpeg skips them too)
      continue;
    }
    const marker = bytes[at + 1];
    if (marker === 0xd9 || marker === 0xda) break; // end of image, start of scan
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2; // markers without a length
      continue;
    }
    const length = bigEndian16(bytes, at + 2);
    segments.push({ marker, data: bytes.subarray(at + 4, at + 2 + length) });
    at += 2 + length;
  }
  return segments;
}

/**
 * A JPEG's ICC profile: its APP2 "ICC_PROFILE" segments joined in sequence order, as
 * Pillow joins them; none when a segment is missing or repeated (Pillow gives none).
 */
function jpegProfile(segments) {
  const parts = segments
    .filter(({ marker, data }) => marker === 0xe2 && ASCII(data, 0, 12) === 'ICC_PROFILE\0')
    .map(({ data }) => ({ order: data[12], count: data[13], data: data.subarray(14) }));
  if (!parts.length) return null;
  const count = parts[0].count;
  const orders = new Set(parts.map((part) => part.order));
  const whole =
    parts.length === count &&
    parts.every((part) => part.count === count) &&
    orders.size === count &&
    [...orders].every((order) => order >= 1 && order <= count);
  if (!whole) return null;
  parts.sort((a, b) => a.order - b.order);
  return concatenate(parts.map((part) => part.data));
}

function concatenate(parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

// WebP chunks of image data: its header chunks (VP8X, ICCP) come before them.
const WEBP_IMAGE = new Set(['VP8 ', 'VP8L', 'ANIM', 'ANMF', 'ALPH']);

/** A RIFF WebP's chunks up to its first image data: [{type, data}] (within the RIFF
 * size: zero padding after a file was walked 8 bytes at a time, seconds for 16 MiB). */
function webpChunks(bytes) {
  const chunks = [];
  const end = Math.min(bytes.length, 8 + littleEndian32(bytes, 4));
  let at = 12;
  while (at + 8 <= end) {
    const type = ASCII(bytes, at, 4);
    const length = littleEndian32(bytes, at + 4);
    chunks.push({ type, data: bytes.subarray(at + 8, Math.min(at + 8 + length, end)) });
    if (WEBP_IMAGE.has(type)) break;
    at += 8 + length + (length % 2);
  }
  return chunks;
}

/** The boxes of an ISO media file (AVIF) inside [start, end): [{type, data}]. */
function isoBoxes(bytes, start = 0, end = bytes.length) {
  const boxes = [];
  let at = start;
  while (at + 8 <= end) {
    let size = bigEndian32(bytes, at);
    let header = 8;
    if (size === 1) {
      size = bigEndian32(bytes, at + 8) * 2 ** 32 + bigEndian32(bytes, at + 12);
      header = 16;
    } else if (size === 0) {
      size = end - at; // to the end of the file
    }
    if (size < header) break;
    boxes.push({ type: ASCII(bytes, at + 4, 4), data: bytes.subarray(at + header, Math.min(at + size, end)) });
    at += size;
  }
  return boxes;
}

/** An AVIF's item properties (meta > iprp > ipco): [{type, data}]. */
function avifProperties(bytes) {
  const meta = isoBoxes(bytes).find((box) => box.type === 'meta');
  if (!meta) return [];
  const iprp = isoBoxes(meta.data, 4).find((box) => box.type === 'iprp'); // (meta is a full box)
  const ipco = iprp && isoBoxes(iprp.data).find((box) => box.type === 'ipco');
  return ipco ? isoBoxes(ipco.data) : [];
}

/** The file's format by its first bytes: 'jpeg', 'png', 'webp', 'gif', 'bmp', 'avif' or null. */
function format(bytes) {
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return 'jpeg';
  if (isPng(bytes)) return 'png';
  if (ASCII(bytes, 0, 4) === 'RIFF' && ASCII(bytes, 8, 4) === 'WEBP') return 'webp';
  if (ASCII(bytes, 0, 4) === 'GIF8') return 'gif';
  if (ASCII(bytes, 0, 2) === 'BM') return 'bmp';
  if (ASCII(bytes, 4, 4) === 'ftyp') {
    // The major brand, or a compatible one (a 'mif1' file with 'avif' among them).
    const size = Math.min(bigEndian32(bytes, 0), bytes.length, 1024); // (a corrupt size: 16 MiB)
    for (let at = 8; at + 4 <= size; at += at === 8 ? 8 : 4) {
      if (['avif', 'avis'].includes(ASCII(bytes, at, 4))) return 'avif';
    }
  }
  return null;
}

/** A JPEG's EXIF orientation (1-8; 1 when there is none or it cannot be read). */
function exifOrientation(segments) {
  const app1 = segments.find(({ marker, data }) => marker === 0xe1 && ASCII(data, 0, 6) === 'Exif\0\0');
  if (!app1 || app1.data.length < 14) return 1;
  const tiff = app1.data.subarray(6);
  const little = ASCII(tiff, 0, 2) === 'II';
  const read16 = (at) => (little ? littleEndian16(tiff, at) : bigEndian16(tiff, at));
  const read32 = (at) => (little ? littleEndian32(tiff, at) : bigEndian32(tiff, at));
  const ifd = read32(4);
  if (ifd + 2 > tiff.length) return 1;
  const count = read16(ifd);
  for (let i = 0; i < count && ifd + 2 + 12 * (i + 1) <= tiff.length; i += 1) {
    const entry = ifd + 2 + 12 * i;
    if (read16(entry) === 0x0112) {
      const value = read16(entry + 8);
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

// JPEG start-of-frame markers (not DHT C4, JPG C8, DAC CC).
const SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

/**
 * A GIF's size: its logical screen, enlarged to hold its first frame, as Chromium and
 * Pillow decode it (a GIF whose screen said 1 x 1 decoded at 60 x 40: a huge first frame
 * passed the check made before decoding). The screen alone when the first image
 * descriptor is past the bytes read.
 */
function gifSize(bytes, size) {
  if (bytes.length < 13) return null;
  let width = littleEndian16(bytes, 6);
  let height = littleEndian16(bytes, 8);
  let at = 13 + (bytes[10] & 0x80 ? 3 << ((bytes[10] & 7) + 1) : 0); // global colour table
  while (at < bytes.length) {
    if (bytes[at] === 0x21) {
      at += 2; // extension introducer and label, then data sub-blocks up to an empty one
      while (at < bytes.length && bytes[at]) at += bytes[at] + 1;
      at += 1;
    } else {
      if (bytes[at] === 0x2c && at + 9 <= bytes.length) {
        width = Math.max(width, littleEndian16(bytes, at + 1) + littleEndian16(bytes, at + 5));
        height = Math.max(height, littleEndian16(bytes, at + 3) + littleEndian16(bytes, at + 7));
      }
      break; // the first frame, the trailer, or not a GIF block
    }
  }
  return size(width, height);
}

/** {width, height} from the file's header, or null (another format, or not found). */
export function photoSize(bytes) {
  const size = (width, height) => (width > 0 && height > 0 ? { width, height } : null);
  switch (format(bytes)) {
    case 'png':
      return bytes.length >= 24 ? size(bigEndian32(bytes, 16), bigEndian32(bytes, 20)) : null;
    case 'jpeg': {
      const segments = jpegSegments(bytes);
      const frame = segments.find(({ marker }) => SOF.has(marker));
      if (!frame) return null;
      const [width, height] = [bigEndian16(frame.data, 3), bigEndian16(frame.data, 1)];
      // As shown: turned a quarter by EXIF orientations 5-8 (the browser applies them; a
      // portrait photo over the limit was refused as "8000 x 6000")
      return exifOrientation(segments) >= 5 ? size(height, width) : size(width, height);
    }
    case 'webp': {
      const [first] = webpChunks(bytes);
      const data = first && first.data;
      if (!data) return null;
      if (first.type === 'VP8X' && data.length >= 10) {
        return size(littleEndian24(data, 4) + 1, littleEndian24(data, 7) + 1);
      }
      if (first.type === 'VP8 ' && data.length >= 10) {
        return size(littleEndian16(data, 6) & 0x3fff, littleEndian16(data, 8) & 0x3fff);
      }
      if (first.type === 'VP8L' && data.length >= 5) {
        const bits = littleEndian32(data, 1);
        return size((bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
      }
      return null;
    }
    case 'gif':
      return gifSize(bytes, size);
    case 'bmp': {
      if (bytes.length < 26) return null;
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      if (view.getUint32(14, true) === 12) {
        // OS/2 1.x: 16-bit sizes (read as 32 bits, a 500 x 300 file was "30924570.6 MP")
        return size(view.getUint16(18, true), view.getUint16(20, true));
      }
      return size(Math.abs(view.getInt32(18, true)), Math.abs(view.getInt32(22, true)));
    }
    case 'avif': {
      // The largest image spatial extent (the primary image's, not a thumbnail's).
      let best = null;
      for (const { type, data } of avifProperties(bytes)) {
        if (type !== 'ispe' || data.length < 12) continue;
        const found = size(bigEndian32(data, 4), bigEndian32(data, 8));
        if (found && (!best || found.width * found.height > best.width * best.height)) best = found;
      }
      return best;
    }
    default:
      return null;
  }
}

/** The ICC profile of a PNG: its (first) iCCP chunk, inflated; none when the chunk's CRC
 * is wrong (Chromium then ignores it, and Pillow cannot open the file). */
async function pngProfile(bytes) {
  const chunk = pngChunks(bytes, 'IDAT').find(({ type }) => type === 'iCCP');
  if (!chunk || chunk.end > bytes.length) return null;
  const stored = bigEndian32(bytes, chunk.end - 4);
  if (((crc32(bytes.subarray(chunk.start + 4, chunk.end - 4)) ^ 0xffffffff) >>> 0) !== stored) {
    return null;
  }
  const data = bytes.subarray(...chunk.data);
  const nameEnd = data.indexOf(0);
  if (nameEnd < 0 || data[nameEnd + 1] !== 0) return null; // 0: the only method, deflate
  return inflatedProfile(data.subarray(nameEnd + 2));
}

/** The ICC profile of a WebP: its ICCP chunk, where its VP8X header's ICC flag says there
 * is one (Chromium ignores the chunk otherwise). */
function webpProfile(bytes) {
  const chunks = webpChunks(bytes);
  const header = chunks.find(({ type }) => type === 'VP8X');
  const chunk = chunks.find(({ type }) => type === 'ICCP');
  return chunk && header && header.data.length && header.data[0] & 0x20 ? chunk.data : null;
}

/** The ICC profile of an AVIF: its colr property of type 'prof' or 'rICC'. */
function avifProfile(bytes) {
  for (const { type, data } of avifProperties(bytes)) {
    const kind = ASCII(data, 0, 4);
    if (type === 'colr' && (kind === 'prof' || kind === 'rICC')) return data.slice(4);
  }
  return null;
}

/**
 * The ICC colour profile embedded in an image file's first bytes (JPEG, PNG, WebP or
 * AVIF) when it describes RGB; else null (none, a grey or CMYK one, another format, a
 * damaged one).
 */
export async function colourProfile(bytes) {
  let profile = null;
  try {
    const kind = format(bytes);
    if (kind === 'jpeg') profile = jpegProfile(jpegSegments(bytes));
    else if (kind === 'png') profile = await pngProfile(bytes);
    else if (kind === 'webp') profile = webpProfile(bytes);
    else if (kind === 'avif') profile = avifProfile(bytes);
  } catch {
    return null; // a damaged profile: the photo is shown (and saved) without one
  }
  const kept = profile && profile.length >= 128 && profile.length <= MAX_PROFILE_BYTES;
  return kept && ASCII(profile, 16, 4) === 'RGB ' ? profile : null;
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
// Bytes of the PNG read to find its chunks before the image data (an encoder's are small).
const PNG_HEAD = 1 << 20;

/**
 * A PNG Blob with `profile` as its iCCP chunk, right after IHDR (before the pixels, as PNG
 * requires), and without the encoder's own colour chunks (sRGB, gAMA, cHRM, cICP, an
 * iCCP); the Blob itself when `profile` is null. The pixels are not copied: the new Blob
 * is made of slices of the old one.
 */
export async function withColourProfile(png, profile) {
  if (!profile) return png;
  const head = new Uint8Array(await png.slice(0, PNG_HEAD).arrayBuffer());
  const chunks = isPng(head) ? pngChunks(head, 'IDAT') : [];
  const pixels = chunks.find(({ type }) => type === 'IDAT');
  if (!pixels || chunks[0].type !== 'IHDR') throw new Error('withColourProfile: not a PNG');
  const name = new TextEncoder().encode('ICC profile');
  const compressed = await throughStream(profile, new CompressionStream('deflate'));
  const data = new Uint8Array(name.length + 2 + compressed.length);
  data.set(name, 0); // then a 0 ending the name and a 0 for the method (deflate)
  data.set(compressed, name.length + 2);
  const parts = [png.slice(0, PNG_SIGNATURE.length)];
  for (const chunk of chunks) {
    if (chunk.type === 'IDAT') break;
    if (COLOUR_CHUNKS.has(chunk.type)) continue;
    parts.push(png.slice(chunk.start, chunk.end));
    if (chunk.type === 'IHDR') parts.push(pngChunk('iCCP', data));
  }
  parts.push(png.slice(pixels.start));
  return new Blob(parts, { type: 'image/png' });
}
