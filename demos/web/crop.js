// Full-size photos through a fixed-size model: the crop plan and the resampling.
//
// Pure functions on plain arrays (no DOM), used by app.js. The plan follows the `crop`
// strategy of penet_tf's high-resolution inference (IOPaint's Crop, adapted to a network
// trained on 256 x 256 images with holes up to 128 x 128):
//
// 1. regions: the 8-connected components of the hole mask, each with its bounding box;
// 2. crop: a square of side max(S, 2 x the box's long side) centred on the box (S = the
//    model size), so the hole takes at most half the crop's side, as in training, and a
//    small hole is inpainted at the photo's own resolution; clipped to the photo's size
//    (then not square) and shifted to lie inside the photo;
// 3. regions whose crops overlap are merged (the union of their boxes), until none do;
// 4. each crop is resized so its long side is S (area averaging down, bilinear up), the
//    short side padded to S by reflection at the bottom/right (as the exported graph pads
//    to multiples of 64), inpainted, the S-scale output resized back to the crop's size,
//    and only the photo's hole pixels inside the crop are replaced.
//
// The resampling is TensorFlow's `tf.image.resize` (method "area" when shrinking,
// "bilinear" with half-pixel centres when enlarging), rounded to uint8, so the test can
// recompute it. The mask is resampled the same way and a model pixel is a hole when any
// hole pixel contributes to it (a conservative mask: no painted pixel is left to the
// known side).

/** Whether any element of a mask is nonzero. */
export function hasHole(mask) {
  for (let i = 0; i < mask.length; i += 1) if (mask[i]) return true;
  return false;
}

/** Bounding boxes {x0, y0, x1, y1} (end exclusive) of the 8-connected hole components. */
export function components(mask, width, height) {
  const seen = new Uint8Array(mask.length);
  const stack = new Int32Array(mask.length);
  const boxes = [];
  for (let start = 0; start < mask.length; start += 1) {
    if (!mask[start] || seen[start]) continue;
    let top = 0;
    stack[top++] = start;
    seen[start] = 1;
    const box = { x0: width, y0: height, x1: 0, y1: 0 };
    while (top) {
      const index = stack[--top];
      const x = index % width;
      const y = (index - x) / width;
      box.x0 = Math.min(box.x0, x);
      box.y0 = Math.min(box.y0, y);
      box.x1 = Math.max(box.x1, x + 1);
      box.y1 = Math.max(box.y1, y + 1);
      for (let dy = -1; dy <= 1; dy += 1) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx += 1) {
          const nx = x + dx;
          if (nx < 0 || nx >= width) continue;
          const next = ny * width + nx;
          if (mask[next] && !seen[next]) {
            seen[next] = 1;
            stack[top++] = next;
          }
        }
      }
    }
    boxes.push(box);
  }
  return boxes;
}

/** The crop {x, y, width, height} around a hole box (see the header, step 2). */
export function cropFor(box, width, height, size) {
  const side = Math.max(size, 2 * Math.max(box.x1 - box.x0, box.y1 - box.y0));
  const w = Math.min(width, side);
  const h = Math.min(height, side);
  const place = (first, last, extent, limit) => {
    const centred = Math.floor((first + last - extent) / 2);
    // Inside the photo and containing the box (extent >= the box's extent).
    return Math.min(Math.max(centred, last - extent, 0), first, limit - extent);
  };
  return {
    x: place(box.x0, box.x1, w, width),
    y: place(box.y0, box.y1, h, height),
    width: w,
    height: h,
  };
}

function overlap(a, b) {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

/** The regions to inpaint: [{box, crop}], crops pairwise disjoint, top to bottom. */
export function planRegions(mask, width, height, size) {
  const regions = components(mask, width, height).map((box) => ({
    box,
    crop: cropFor(box, width, height, size),
  }));
  for (let merged = true; merged; ) {
    merged = false;
    for (let i = 0; i < regions.length && !merged; i += 1) {
      for (let j = i + 1; j < regions.length && !merged; j += 1) {
        if (!overlap(regions[i].crop, regions[j].crop)) continue;
        const [a, b] = [regions[i].box, regions[j].box];
        const box = {
          x0: Math.min(a.x0, b.x0),
          y0: Math.min(a.y0, b.y0),
          x1: Math.max(a.x1, b.x1),
          y1: Math.max(a.y1, b.y1),
        };
        regions[i] = { box, crop: cropFor(box, width, height, size) };
        regions.splice(j, 1);
        merged = true;
      }
    }
  }
  return regions.sort((a, b) => a.crop.y - b.crop.y || a.crop.x - b.crop.x);
}

/**
 * Per output index, the input indices and weights of a 1-D resize from `source` to
 * `target` samples: area averaging when shrinking, bilinear (half-pixel centres) when
 * enlarging, the identity when equal. Returns {start, count, index, weight} (CSR).
 */
export function axisWeights(source, target) {
  const start = new Int32Array(target + 1);
  const index = [];
  const weight = [];
  const ratio = source / target;
  for (let i = 0; i < target; i += 1) {
    start[i] = index.length;
    if (source === target) {
      index.push(i);
      weight.push(1);
    } else if (target < source) {
      const [a, b] = [i * ratio, (i + 1) * ratio];
      for (let j = Math.floor(a); j < Math.min(Math.ceil(b), source); j += 1) {
        const covered = Math.min(b, j + 1) - Math.max(a, j);
        if (covered > 1e-9) {
          index.push(j);
          weight.push(covered / ratio);
        }
      }
    } else {
      const x = Math.min(Math.max((i + 0.5) * ratio - 0.5, 0), source - 1);
      const j = Math.floor(x);
      const f = x - j;
      index.push(j);
      weight.push(1 - f);
      if (f > 0) {
        index.push(Math.min(j + 1, source - 1));
        weight.push(f);
      }
    }
  }
  start[target] = index.length;
  return { start, index: Int32Array.from(index), weight: Float64Array.from(weight) };
}

/**
 * Resizes a `width` x `height` window of an interleaved image (any number of channels,
 * `pixelStride` elements per pixel, `rowStride` per row, window at `offset`) to
 * `targetWidth` x `targetHeight`; returns Float32Array [targetHeight, targetWidth, channels].
 */
export function resample(source, layout, width, height, targetWidth, targetHeight) {
  const { offset = 0, rowStride, pixelStride, channels } = layout;
  const rows = axisWeights(height, targetHeight);
  const cols = axisWeights(width, targetWidth);
  // Vertical pass: [targetHeight, width, channels].
  const middle = new Float32Array(targetHeight * width * channels);
  for (let y = 0; y < targetHeight; y += 1) {
    for (let k = rows.start[y]; k < rows.start[y + 1]; k += 1) {
      const w = rows.weight[k];
      const from = offset + rows.index[k] * rowStride;
      const to = y * width * channels;
      for (let x = 0; x < width; x += 1) {
        for (let c = 0; c < channels; c += 1) {
          middle[to + x * channels + c] += w * source[from + x * pixelStride + c];
        }
      }
    }
  }
  // Horizontal pass.
  const out = new Float32Array(targetHeight * targetWidth * channels);
  for (let y = 0; y < targetHeight; y += 1) {
    const row = y * width * channels;
    for (let x = 0; x < targetWidth; x += 1) {
      const to = (y * targetWidth + x) * channels;
      for (let k = cols.start[x]; k < cols.start[x + 1]; k += 1) {
        const w = cols.weight[k];
        const from = row + cols.index[k] * channels;
        for (let c = 0; c < channels; c += 1) out[to + c] += w * middle[from + c];
      }
    }
  }
  return out;
}

/** Index i of a mirror extension of 0 .. size - 1 (penet_tf.inference.reflect_indices). */
function reflect(i, size) {
  const period = Math.max(2 * (size - 1), 1);
  const position = i % period;
  return position < size ? position : period - position;
}

const toByte = (value) => Math.min(255, Math.max(0, Math.round(value)));

/**
 * The model's input for one crop: {image: Uint8Array [S*S*3], mask: Uint8Array [S*S],
 * scaled: {width, height}} (the crop's size at the model's scale, before the padding).
 *
 * Args: `pixels` an ImageData-like {data (RGBA), width, height} of the whole photo,
 * `mask` one byte per photo pixel (nonzero = hole), `crop` from planRegions, `size` S.
 */
export function modelInput(pixels, mask, crop, size) {
  const scale = size / Math.max(crop.width, crop.height);
  const scaled = {
    width: Math.min(size, Math.round(crop.width * scale)),
    height: Math.min(size, Math.round(crop.height * scale)),
  };
  const offset = crop.y * pixels.width + crop.x;
  const image = resample(
    pixels.data,
    { offset: 4 * offset, rowStride: 4 * pixels.width, pixelStride: 4, channels: 3 },
    crop.width,
    crop.height,
    scaled.width,
    scaled.height
  );
  const holes = resample(
    mask,
    { offset, rowStride: pixels.width, pixelStride: 1, channels: 1 },
    crop.width,
    crop.height,
    scaled.width,
    scaled.height
  );
  const outImage = new Uint8Array(size * size * 3);
  const outMask = new Uint8Array(size * size);
  for (let y = 0; y < size; y += 1) {
    const sy = reflect(y, scaled.height);
    for (let x = 0; x < size; x += 1) {
      const sx = reflect(x, scaled.width);
      const from = sy * scaled.width + sx;
      const to = y * size + x;
      outMask[to] = holes[from] > 0 ? 1 : 0;
      for (let c = 0; c < 3; c += 1) outImage[3 * to + c] = toByte(image[3 * from + c]);
    }
  }
  return { image: outImage, mask: outMask, scaled };
}

/**
 * Pastes one crop's model output into `composite` (ImageData-like RGBA of the whole
 * photo): the S-scale output is resized back to the crop's size and written into the
 * photo's hole pixels inside the crop; every other pixel is left as it is.
 */
export function pasteBack(composite, mask, crop, output, input, size) {
  const { width: sw, height: sh } = input.scaled;
  const back = resample(
    output,
    { offset: 0, rowStride: 3 * size, pixelStride: 3, channels: 3 },
    sw,
    sh,
    crop.width,
    crop.height
  );
  const data = composite.data;
  for (let y = 0; y < crop.height; y += 1) {
    for (let x = 0; x < crop.width; x += 1) {
      const index = (crop.y + y) * composite.width + crop.x + x;
      if (!mask[index]) continue;
      const from = 3 * (y * crop.width + x);
      data[4 * index] = toByte(back[from]);
      data[4 * index + 1] = toByte(back[from + 1]);
      data[4 * index + 2] = toByte(back[from + 2]);
    }
  }
}
