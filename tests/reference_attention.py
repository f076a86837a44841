"""An independent NumPy implementation of the released network's attention transfer.

Written from ../shared/reference/OFFICIAL_PENNET.md ("One attention transfer layer"), in
float64, with explicit loops and none of penet_tf's tricks (no Gram matrix, no chunks, no
polyphase transfer): the literal algorithm, to test the fast one against.
"""

import numpy as np


def resize_bilinear_align_corners(image, out_h, out_w):
    """[H, W] -> [out_h, out_w], bilinear, align_corners=True."""
    in_h, in_w = image.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        sy = i * (in_h - 1) / (out_h - 1) if out_h > 1 else 0.0
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, in_h - 1)
        fy = sy - y0
        for j in range(out_w):
            sx = j * (in_w - 1) / (out_w - 1) if out_w > 1 else 0.0
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, in_w - 1)
            fx = sx - x0
            top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
            bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def reference_attention_transfer(low, high, mask, match_size, softmax_scale=10.0):
    """low [B, 2h, 2w, C1], high [B, h, w, C2], mask [B, H, W, 1] -> [B, 2h, 2w, C1]."""
    low = np.asarray(low, np.float64)
    high = np.asarray(high, np.float64)
    batch, h, w, _ = high.shape
    c1 = low.shape[-1]
    k = match_size
    pad = 1 if k == 3 else 0
    out = np.zeros((batch, 2 * h, 2 * w, c1))
    for b in range(batch):
        # 1. value patches: zero-pad low by 1, 4 x 4 patches with stride 2.
        low_p = np.pad(low[b], ((1, 1), (1, 1), (0, 0)))
        values = [low_p[2 * y : 2 * y + 4, 2 * x : 2 * x + 4] for y in range(h) for x in range(w)]
        # 2. key patches of high (zero-padded by 1 for k = 3), divided by max(norm, 1e-4).
        high_p = np.pad(high[b], ((pad, pad), (pad, pad), (0, 0)))
        keys = np.array([high_p[y : y + k, x : x + k].ravel() for y in range(h) for x in range(w)])
        normed = keys / np.maximum(np.sqrt((keys**2).sum(axis=1, keepdims=True)), 1e-4)
        # 3. usable keys: the mean of the mask patch is exactly 0.
        small = resize_bilinear_align_corners(np.asarray(mask[b, ..., 0], np.float64), h, w)
        small_p = np.pad(small, pad)
        usable = np.array(
            [small_p[y : y + k, x : x + k].mean() == 0 for y in range(h) for x in range(w)],
            dtype=np.float64,
        )
        # 4. scores: the (unnormalised) query patch against each normalised key patch.
        canvas = np.zeros((2 * h + 2, 2 * w + 2, c1))
        for q in range(h * w):
            s = normed @ keys[q]
            # 5. s * usable, softmax(10 s), * usable, clamp 1e-8.
            s = s * usable * softmax_scale
            a = np.exp(s - s.max())
            a = a / a.sum()
            a = np.maximum(a * usable, 1e-8)
            # 6. transposed convolution: the weighted value patch lands at stride 2.
            patch = sum(a[key] * values[key] for key in range(h * w))
            qy, qx = divmod(q, w)
            canvas[2 * qy : 2 * qy + 4, 2 * qx : 2 * qx + 4] += patch
        out[b] = canvas[1:-1, 1:-1] / 4.0
    return out
