"""Brute-force references shared by several test folders: loops written from the papers' and
the authors' arithmetic (correlation eq. 8.4, Caffe's PS-RoI pooling, IoU and NMS)."""

import math

import numpy as np


def correlation_loop(x1, x2, d, stride=1, s2=1):
    b, h, w, depth = x1.shape
    r = d // s2
    ho, wo = -(-h // stride), -(-w // stride)
    out = np.zeros((b, ho, wo, (2 * r + 1) ** 2))
    for n in range(b):
        for i in range(ho):
            for j in range(wo):
                y, x = i * stride, j * stride
                for pi, p in enumerate(range(-d, d + 1, s2)):
                    for qi, q in enumerate(range(-d, d + 1, s2)):
                        if 0 <= y + p < h and 0 <= x + q < w:
                            out[n, i, j, pi * (2 * r + 1) + qi] = (
                                np.dot(x1[n, y, x], x2[n, y + p, x + q]) / depth)
    return out


def c_round(x):
    return math.copysign(math.floor(abs(x) + 0.5), x)


def psroi_reference(maps, rois, k, channels, scale):
    f32 = np.float32
    _, height, width, _ = maps.shape
    out = np.zeros((len(rois), k, k, channels), np.float64)
    for n, (b, x1, y1, x2, y2) in enumerate(rois):
        sw, sh = f32(c_round(x1)) * f32(scale), f32(c_round(y1)) * f32(scale)
        ew, eh = f32(c_round(x2) + 1) * f32(scale), f32(c_round(y2) + 1) * f32(scale)
        rw, rh = max(ew - sw, f32(0.1)), max(eh - sh, f32(0.1))
        bw, bh = f32(rw / f32(k)), f32(rh / f32(k))
        for ph in range(k):
            for pw in range(k):
                hs = min(max(math.floor(f32(ph * bh + sh)), 0), height)
                he = min(max(math.ceil(f32((ph + 1) * bh + sh)), 0), height)
                ws = min(max(math.floor(f32(pw * bw + sw)), 0), width)
                we = min(max(math.ceil(f32((pw + 1) * bw + sw)), 0), width)
                for c in range(channels):
                    if he <= hs or we <= ws:
                        continue
                    ch = (c * k + ph) * k + pw
                    acc = 0.0
                    for y in range(hs, he):
                        for x in range(ws, we):
                            acc += maps[int(b), y, x, ch]
                    out[n, ph, pw, c] = acc / ((he - hs) * (we - ws))
    return out


def iou_loop(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = min(p[2], q[2]) - max(p[0], q[0]) + 1
            ih = min(p[3], q[3]) - max(p[1], q[1]) + 1
            if iw > 0 and ih > 0:
                inter = iw * ih
                ap = (p[2] - p[0] + 1) * (p[3] - p[1] + 1)
                aq = (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
                out[i, j] = inter / (ap + aq - inter)
    return out


def nms_loop(boxes, scores, thr):
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if iou_loop(boxes[[i]], boxes[[j]])[0, 0] <= thr]
    return keep
