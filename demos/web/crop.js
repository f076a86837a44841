// Full-size photos through a fixed-size model: the crop plan and the resampling.
//
// Pure functions on plain arrays (no DOM), used by app.js. The plan is the `crop`
// strategy of penet_tf's high-resolution inference (penet_tf/high_resolution.py), for a
// TF.js graph whose input is fixed at S x S:
//
// 1. hole groups: the 8-connected components of the painted mask, merged while their
//    boxes enlarged by the margin (128 photo pixels) overlap;
// 2. the window: a group's box plus the margin on every side, clipped to the photo's
//    size and shifted to lie inside it;
// 3. the region: the window enlarged, centred and shifted inside the photo, to a square
//    of S/4 x `tile` photo pixels per side, `tile` the fewest photo pixels per cell of
//    the network's S/4 x S/4 attention grid that hold the window (at least 4: a window
//    smaller than S keeps the photo's resolution, with more of the photo around it). A
//    region larger than the photo is mirrored past its edges. (The Python strategy sizes
//    the network input to the window, a multiple of 64 per side; here it is always S.)
//    A thin panorama's long group is cut into pieces first when more than half of its
//    region would be mirror (penet_tf.high_resolution.region_pieces): equal pieces along
//    the photo's long side, each short enough that its square region about spans the
//    short side, each shrunk to its painted pixels' box; the group stays whole when the
//    pieces' regions would hold more pixels than its own.
// 4. the region is shrunk to S x S by area averaging (a model pixel is a hole when any
//    painted pixel contributes to it), inpainted, the output enlarged back (bilinear,
//    half-pixel centres) and pasted into the group's painted pixels only. Every region
//    reads the original photo, so regions may overlap. Across each cut between pieces the
//    two outputs are blended over a zone of 2 x `overlap` pixels, linear weights that sum
//    to 1 (penet_tf.high_resolution.PieceCut), by `blendCuts` once every piece is pasted.
//
// The resampling is TensorFlow's `tf.image.resize` ("area" to shrink, "bilinear" to
// enlarge), rounded to uint8, so tests/test_web_demo.py recomputes it.

export const MARGIN = 128; // photo pixels of context around each hole group (Python's default)
const CELL = 4; // model pixels per attention cell of at_conv01

/** Whether any element of a mask is nonzero. */
export function hasHole(mask) {
  for (let i = 0; i < mask.length; i += 1) if (mask[i]) return true;
  return false;
}

/**
 * Bounding boxes {x0, y0, x1, y1} (end exclusive) of the `mask` pixels of each 8-connected
 * component of `region` (nonzero = in; `region` must hold every `mask` pixel).
 */
function componentBoxes(region, mask, width, height) {
  const seen = new Uint8Array(region.length);
  const stack = new Int32Array(region.length);
  const boxes = [];
  for (let start = 0; start < region.length; start += 1) {
    if (!mask[start] || seen[start]) continue;
    let top = 0;
    stack[top++] = start;
    seen[start] = 1;
    const box = { x0: width, y0: height, x1: 0, y1: 0 };
    while (top) {
      const index = stack[--top];
      const x = index % width;
      const y = (index - x) / width;
      if (mask[index]) {
        box.x0 = Math.min(box.x0, x);
        box.y0 = Math.min(box.y0, y);
        box.x1 = Math.max(box.x1, x + 1);
        box.y1 = Math.max(box.y1, y + 1);
      }
      for (let dy = -1; dy <= 1; dy += 1) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx += 1) {
          const nx = x + dx;
          if (nx < 0 || nx >= width) continue;
          const next = ny * width + nx;
          if (region[next] && !seen[next]) {
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

/** Bounding boxes {x0, y0, x1, y1} (end exclusive) of the 8-connected hole components. */
export function components(mask, width, height) {
  return componentBoxes(mask, mask, width, height);
}

// More components than this are first merged by their pixels (`componentsNear`).
export const MANY_HOLES = 1000;

/**
 * `components(mask)`, or, for more than MANY_HOLES of them (a speckled or dithered mask),
 * the hole's boxes per component of the hole grown by `margin` (a 2 * margin square
 * maximum filter, rows y - margin .. y + margin - 1 and the same for columns, as
 * scipy's): penet_tf.high_resolution.hole_boxes_near. Pixels whose grown squares meet lie
 * in boxes that `holeGroups` joins anyway, so the groups are the same; the sweep alone
 * took 71 s for 187,500 specks.
 */
export function componentsNear(mask, width, height, margin = MARGIN) {
  const boxes = components(mask, width, height);
  if (boxes.length <= MANY_HOLES || margin === 0) return boxes;
  const rows = new Uint8Array(mask.length); // grown along each row
  for (let y = 0; y < height; y += 1) {
    let count = 0; // hole pixels in columns x - margin .. x + margin - 1
    const row = y * width;
    for (let x = 0; x < margin - 1 && x < width; x += 1) count += mask[row + x] ? 1 : 0;
    for (let x = 0; x < width; x += 1) {
      const enter = x + margin - 1;
      const leave = x - margin - 1;
      if (enter < width && mask[row + enter]) count += 1;
      if (leave >= 0 && mask[row + leave]) count -= 1;
      rows[row + x] = count > 0 ? 1 : 0;
    }
  }
  const grown = new Uint8Array(mask.length);
  const counts = new Int32Array(width); // per column: grown rows y - margin .. y + margin - 1
  const add = (y, step) => {
    for (let x = 0, i = y * width; x < width; x += 1, i += 1) counts[x] += rows[i] ? step : 0;
  };
  for (let y = 0; y < margin - 1 && y < height; y += 1) add(y, 1);
  for (let y = 0; y < height; y += 1) {
    if (y + margin - 1 < height) add(y + margin - 1, 1);
    if (y - margin - 1 >= 0) add(y - margin - 1, -1);
    for (let x = 0, i = y * width; x < width; x += 1, i += 1) grown[i] = counts[x] > 0 ? 1 : 0;
  }
  return componentBoxes(grown, mask, width, height);
}

/**
 * Boxes merged (their union) while their `margin`-enlarged boxes overlap, sorted top to
 * bottom (penet_tf.high_resolution.hole_groups). Each round finds the overlapping pairs by
 * a sweep down the enlarged boxes' rows and joins them (union-find), until a round joins
 * none: merging a pair at a time and starting over took seconds for a few thousand specks.
 */
export function holeGroups(boxes, margin = MARGIN) {
  const byTop = (a, b) => a.y0 - b.y0 || a.x0 - b.x0 || a.y1 - b.y1 || a.x1 - b.x1;
  let groups = boxes.map(({ x0, y0, x1, y1 }) => ({ x0, y0, x1, y1 })).sort(byTop);
  for (;;) {
    const parent = groups.map((_, i) => i);
    const root = (i) => {
      while (parent[i] !== i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
      }
      return i;
    };
    let active = [];
    let joined = false;
    groups.forEach((box, i) => {
      // Sorted by top row, a box meets only earlier ones whose grown bottom is below its top.
      active = active.filter((j) => groups[j].y1 + 2 * margin > box.y0);
      for (const j of active) {
        if (Math.max(box.x0, groups[j].x0) < Math.min(box.x1, groups[j].x1) + 2 * margin) {
          const [a, b] = [root(i), root(j)];
          if (a !== b) {
            parent[b] = a;
            joined = true;
          }
        }
      }
      active.push(i);
    });
    if (!joined) return groups;
    const union = new Map();
    groups.forEach((box, i) => {
      const r = root(i);
      const u = union.get(r);
      union.set(
        r,
        u
          ? {
              x0: Math.min(u.x0, box.x0),
              y0: Math.min(u.y0, box.y0),
              x1: Math.max(u.x1, box.x1),
              y1: Math.max(u.y1, box.y1),
            }
          : box,
      );
    });
    groups = [...union.values()].sort(byTop);
  }
}

const clamp = (value, low, high) => Math.min(Math.max(value, low), high);

/** A group's window and square region {x, y, side, tile} (see the header, steps 2-3). */
export function regionFor(box, width, height, size, margin = MARGIN) {
  const windowWidth = Math.min(box.x1 - box.x0 + 2 * margin, width);
  const windowHeight = Math.min(box.y1 - box.y0 + 2 * margin, height);
  const window = {
    x: clamp(box.x0 - margin, 0, width - windowWidth),
    y: clamp(box.y0 - margin, 0, height - windowHeight),
    width: windowWidth,
    height: windowHeight,
  };
  const cells = size / CELL;
  const tile = Math.max(CELL, Math.ceil(windowWidth / cells), Math.ceil(windowHeight / cells));
  const side = tile * cells;
  return {
    window,
    x: clamp(window.x - Math.floor((side - windowWidth) / 2), 0, Math.max(width - side, 0)),
    y: clamp(window.y - Math.floor((side - windowHeight) / 2), 0, Math.max(height - side, 0)),
    side,
    tile,
  };
}

/** The box {x0, y0, x1, y1} of the painted pixels inside `box`, or null if none. */
function paintedBox(mask, width, box) {
  let found = null;
  for (let y = box.y0; y < box.y1; y += 1) {
    for (let x = box.x0; x < box.x1; x += 1) {
      if (!mask[y * width + x]) continue;
      if (!found) found = { x0: x, y0: y, x1: x + 1, y1: y + 1 };
      found.x0 = Math.min(found.x0, x);
      found.x1 = Math.max(found.x1, x + 1);
      found.y1 = y + 1;
    }
  }
  return found;
}

/**
 * The pieces a hole group is inpainted in: [{box, cut, index}]. `cut` is null for a group
 * left whole, else {box: the group's, axis: 'x' (columns) or 'y', edges, overlap}, and
 * `index` the interval edges[index] .. edges[index + 1] the piece came from (see the
 * header, step 3, and penet_tf.high_resolution.region_pieces).
 */
export function groupPieces(box, mask, width, height, size, margin = MARGIN) {
  const whole = [{ box, cut: null, index: 0 }];
  const { side } = regionFor(box, width, height, size, margin);
  if (side * side <= 2 * Math.min(side, height) * Math.min(side, width)) return whole;
  const axis = width > height ? 'x' : 'y'; // the region is mirrored past the short side
  const cells = size / CELL;
  const window = cells * Math.max(CELL, Math.ceil((axis === 'x' ? height : width) / cells));
  const length = Math.max(window - 2 * margin, Math.floor(window / 2));
  const [start, stop] = axis === 'x' ? [box.x0, box.x1] : [box.y0, box.y1];
  const count = Math.ceil((stop - start) / length);
  if (count < 2) return whole; // a photo small on both sides: cutting would not help
  const edges = Array.from({ length: count + 1 }, (_, i) =>
    start + Math.floor(((stop - start) * i) / count),
  );
  const cut = { box, axis, edges, overlap: 0 };
  const pieces = [];
  for (let index = 0; index < count; index += 1) {
    const [first, end] = [edges[index], edges[index + 1]];
    const interval = axis === 'x' ? { ...box, x0: first, x1: end } : { ...box, y0: first, y1: end };
    const piece = paintedBox(mask, width, interval);
    if (piece) pieces.push({ box: piece, cut, index });
  }
  // A margin long against the short side grows every piece's window (and mirror) back:
  // cut only when the pieces' regions hold fewer pixels than the group's.
  const cost = pieces.reduce((sum, piece) => {
    const pieceSide = regionFor(piece.box, width, height, size, margin).side;
    return sum + pieceSide * pieceSide;
  }, 0);
  if (cost >= side * side) return whole;
  const shortest = Math.min(...edges.slice(1).map((edge, i) => edge - edges[i]));
  cut.overlap = Math.min(Math.floor(margin / 2), Math.floor(shortest / 2));
  return pieces;
}

/** The regions to inpaint: [{box, window, region, cut, index}], sorted top to bottom. */
export function planRegions(mask, width, height, size, margin = MARGIN) {
  return holeGroups(componentsNear(mask, width, height, margin), margin)
    .flatMap((group) => groupPieces(group, mask, width, height, size, margin))
    .map(({ box, cut, index }) => {
      const { window, ...region } = regionFor(box, width, height, size, margin);
      return { box, window, region, cut, index };
    })
    .sort((a, b) => a.box.y0 - b.box.y0 || a.box.x0 - b.box.x0);
}

/**
 * Per output index, the input indices and weights of a 1-D resize from `source` to
 * `target` samples: area averaging when shrinking, bilinear (half-pixel centres) when
 * enlarging, the identity when equal. Returns {start, index, weight} (CSR rows).
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
 * Resizes an image given as rows and columns of an interleaved array to `targetWidth` x
 * `targetHeight`, computing only output rows [rowFirst, rowLast) and columns [colFirst,
 * colLast); returns Float32Array [rows, cols, channels] of that window.
 *
 * `layout`: {rowOffsets: element offset of each source row, colOffsets: element offset
 * of each source column within a row, channels}.
 */
export function resample(source, layout, targetWidth, targetHeight, window = null) {
  const { rowOffsets, colOffsets, channels } = layout;
  const [rowFirst, rowLast, colFirst, colLast] = window || [0, targetHeight, 0, targetWidth];
  const rows = axisWeights(rowOffsets.length, targetHeight);
  const cols = axisWeights(colOffsets.length, targetWidth);
  const width = colOffsets.length;
  const outRows = rowLast - rowFirst;
  const outCols = colLast - colFirst;
  // Vertical pass: [outRows, width, channels].
  const middle = new Float32Array(outRows * width * channels);
  for (let y = rowFirst; y < rowLast; y += 1) {
    const to = (y - rowFirst) * width * channels;
    for (let k = rows.start[y]; k < rows.start[y + 1]; k += 1) {
      const w = rows.weight[k];
      const from = rowOffsets[rows.index[k]];
      for (let x = 0; x < width; x += 1) {
        const pixel = from + colOffsets[x];
        for (let c = 0; c < channels; c += 1) {
          middle[to + x * channels + c] += w * source[pixel + c];
        }
      }
    }
  }
  // Horizontal pass.
  const out = new Float32Array(outRows * outCols * channels);
  for (let y = 0; y < outRows; y += 1) {
    const row = y * width * channels;
    for (let x = colFirst; x < colLast; x += 1) {
      const to = (y * outCols + x - colFirst) * channels;
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
export function reflect(i, size) {
  const period = Math.max(2 * (size - 1), 1);
  const position = i % period;
  return position < size ? position : period - position;
}

const toByte = (value) => Math.min(255, Math.max(0, Math.round(value)));

/** Photo rows (or columns) of a region: mirrored past the photo's edge. */
function regionLines(first, side, size) {
  return Array.from({ length: side }, (_, i) => reflect(first + i, size));
}

/**
 * The model's input for one region: {image: Uint8Array [S*S*3], mask: Uint8Array [S*S]}.
 *
 * Args: `pixels` an ImageData-like {data (RGBA), width, height} of the whole photo,
 * `mask` one byte per photo pixel (nonzero = hole), `region` from planRegions, `size` S.
 */
export function modelInput(pixels, mask, region, size) {
  const rows = regionLines(region.y, region.side, pixels.height);
  const cols = regionLines(region.x, region.side, pixels.width);
  const image = resample(
    pixels.data,
    {
      rowOffsets: rows.map((y) => 4 * y * pixels.width),
      colOffsets: cols.map((x) => 4 * x),
      channels: 3,
    },
    size,
    size
  );
  const holes = resample(
    mask,
    { rowOffsets: rows.map((y) => y * pixels.width), colOffsets: cols, channels: 1 },
    size,
    size
  );
  const outImage = new Uint8Array(size * size * 3);
  const outMask = new Uint8Array(size * size);
  for (let i = 0; i < size * size; i += 1) {
    outMask[i] = holes[i] > 0 ? 1 : 0;
    for (let c = 0; c < 3; c += 1) outImage[3 * i + c] = toByte(image[3 * i + c]);
  }
  return { image: outImage, mask: outMask };
}

/** The output enlarged to the region's side, over photo rows y0..y1 and columns x0..x1. */
function enlarged(output, size, region, { x0, y0, x1, y1 }) {
  const lines = Array.from({ length: size }, (_, i) => i);
  return resample(
    output,
    { rowOffsets: lines.map((y) => 3 * y * size), colOffsets: lines.map((x) => 3 * x), channels: 3 },
    region.side,
    region.side,
    [y0 - region.y, y1 - region.y, x0 - region.x, x1 - region.x]
  );
}

/** The zone {x0, y0, x1, y1} blended across `edge` of `cut`. */
function zoneBox(cut, edge) {
  const [first, last] = [cut.edges[0], cut.edges[cut.edges.length - 1]];
  const [a, b] = [Math.max(edge - cut.overlap, first), Math.min(edge + cut.overlap, last)];
  return cut.axis === 'x' ? { ...cut.box, x0: a, x1: b } : { ...cut.box, y0: a, y1: b };
}

/**
 * Pastes one region's S x S model output into `composite` (ImageData-like RGBA of the
 * whole photo): the output enlarged to the region's side, written into the painted
 * pixels inside the group's box; every other pixel is left as it is. A piece of a cut
 * group also adds its weighted output near its inner cuts to `blends` (a Map, see
 * `blendCuts`).
 */
export function pasteBack(composite, mask, group, output, size, blends = null) {
  const { box, region, cut, index } = group;
  const [rows, cols] = [box.y1 - box.y0, box.x1 - box.x0];
  const back = enlarged(output, size, region, box);
  const data = composite.data;
  for (let y = 0; y < rows; y += 1) {
    for (let x = 0; x < cols; x += 1) {
      const pixel = (box.y0 + y) * composite.width + box.x0 + x;
      if (!mask[pixel]) continue;
      const from = 3 * (y * cols + x);
      data[4 * pixel] = toByte(back[from]);
      data[4 * pixel + 1] = toByte(back[from + 1]);
      data[4 * pixel + 2] = toByte(back[from + 2]);
    }
  }
  if (!cut || !cut.overlap || !blends) return;
  const [first, last] = [cut.edges[0], cut.edges[cut.edges.length - 1]];
  for (const edge of cut.edges.slice(index, index + 2)) {
    if (edge <= first || edge >= last) continue;
    const zone = zoneBox(cut, edge);
    // The part of the zone this region covers (a piece whose paint ends far from the
    // edge may cover none of it).
    const part = {
      x0: Math.max(zone.x0, region.x),
      y0: Math.max(zone.y0, region.y),
      x1: Math.min(zone.x1, region.x + region.side, composite.width),
      y1: Math.min(zone.y1, region.y + region.side, composite.height),
    };
    if (part.x1 <= part.x0 || part.y1 <= part.y0) continue;
    if (!blends.has(cut)) blends.set(cut, new Map());
    const zones = blends.get(cut);
    if (!zones.has(edge)) {
      const area = (zone.x1 - zone.x0) * (zone.y1 - zone.y0);
      zones.set(edge, { zone, total: new Float64Array(3 * area), weight: new Float64Array(area) });
    }
    const { total, weight } = zones.get(edge);
    const pixels = enlarged(output, size, region, part);
    const partCols = part.x1 - part.x0;
    const zoneCols = zone.x1 - zone.x0;
    for (let y = part.y0; y < part.y1; y += 1) {
      for (let x = part.x0; x < part.x1; x += 1) {
        // Linear ramps across the edge: up from the piece's first edge, down to its last.
        const centre = (cut.axis === 'x' ? x : y) + 0.5;
        const ramp = edge === cut.edges[index] ? centre - (edge - cut.overlap) : edge + cut.overlap - centre;
        const w = Math.min(Math.max(ramp / (2 * cut.overlap), 0), 1);
        const at = (y - zone.y0) * zoneCols + x - zone.x0;
        const from = 3 * ((y - part.y0) * partCols + x - part.x0);
        weight[at] += w;
        for (let c = 0; c < 3; c += 1) total[3 * at + c] += w * pixels[from + c];
      }
    }
  }
}

/**
 * The painted pixels of every cut's zones in `composite`: the weighted mean of the
 * neighbouring pieces' outputs that `pasteBack` gathered in `blends`.
 */
export function blendCuts(composite, mask, blends) {
  for (const zones of blends.values()) {
    for (const { zone, total, weight } of zones.values()) {
      const zoneCols = zone.x1 - zone.x0;
      for (let y = zone.y0; y < zone.y1; y += 1) {
        for (let x = zone.x0; x < zone.x1; x += 1) {
          const at = (y - zone.y0) * zoneCols + x - zone.x0;
          const pixel = y * composite.width + x;
          if (!mask[pixel] || !(weight[at] > 0)) continue;
          for (let c = 0; c < 3; c += 1) {
            composite.data[4 * pixel + c] = toByte(total[3 * at + c] / weight[at]);
          }
        }
      }
    }
  }
}
