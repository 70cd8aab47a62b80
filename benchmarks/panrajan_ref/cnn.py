"""A literal NumPy Pan & Rajan CNN decomposition (ICSE'22, METHODS §7.7), one sample at a time.

Loops over output positions for every convolution, keeps one inactive map per ReLU point and
updates it sample by sample as the paper describes (the first concerned input initializes the
map, each later one removes its positions > 0; each unconcerned input removes its positions
> 0), then channels the head and applies MC-BLN's prose rule with explicit loops.
"""

import numpy as np


def _conv(x, kernel, bias, stride):
    """'SAME' conv of one [H, W, Cin] image, literally (TensorFlow/XLA padding split)."""
    h, w, _ = x.shape
    kh, kw, _, cout = kernel.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph = max((oh - 1) * stride + kh - h, 0)
    pw = max((ow - 1) * stride + kw - w, 0)
    xp = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            patch = xp[i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            for o in range(cout):
                out[i, j, o] = np.sum(patch * kernel[:, :, :, o]) + bias[o]
    return out


def forward(params, x, keep=None, head=None):
    """`(logits [K], {point: pre-activation})` of one image; `keep` zeroes positions."""
    keep = keep or {}
    pre = {}

    def act(name, z):
        pre[name] = z
        a = np.maximum(z, 0)
        return a * keep[name] if name in keep else a

    def conv(p, x, stride=1):
        c = p["conv"]
        return _conv(x, np.asarray(c["kernel"], np.float64), np.asarray(c["bias"]), stride)

    h = act("stem", conv(params["stem"], np.asarray(x, np.float64)))
    keys = sorted(
        (k for k in params if k.startswith("layer")), key=lambda k: (int(k[5]), int(k[7:]))
    )
    for key in keys:
        s, b = int(key[5]), int(key[7:])
        stride = 2 if (s > 1 and b == 0) else 1
        p = params[key]
        inner = act(f"layer{s}.{b}.conv1", conv(p["conv1"], h, stride))
        branch = conv(p["conv2"], inner)
        short = conv(p["shortcut"], h, stride) if "shortcut" in p else h
        h = act(f"layer{s}.{b}", branch + short)
    w, bias = head if head is not None else (params["head"]["kernel"], params["head"]["bias"])
    feat = h.mean(axis=(0, 1))
    return feat @ np.asarray(w, np.float64) + np.asarray(bias), pre


def decompose(params, positives, groups, *, cm, delta):
    """Per class c: CI on positives[c] in order, TI on groups[k] for k != c, then CM.

    Returns a list of `(keep maps, (W, b))`, one per class.
    """
    num = len(positives)
    out = []
    for c in range(num):
        inactive = None
        for x in positives[c]:
            _, pre = forward(params, x)
            if inactive is None:  # first concerned input initializes the map
                inactive = {k: z <= 0 for k, z in pre.items()}
            else:  # later inputs remove their positions > 0
                for k, z in pre.items():
                    inactive[k][z > 0] = False
        for k_cls in range(num):
            if k_cls == c:
                continue
            for x in groups[k_cls]:
                _, pre = forward(params, x)
                for k, z in pre.items():
                    inactive[k][z > 0] = False  # TI re-activates
        w = np.array(params["head"]["kernel"], np.float64)
        b = np.array(params["head"]["bias"], np.float64)
        if cm in ("c", "bln"):
            neg = 1 if c == 0 else 0
            nw, nb = w.copy(), b.copy()
            for i in range(w.shape[0]):
                others = [w[i, k] for k in range(w.shape[1]) if k != c]
                for k in range(w.shape[1]):
                    nw[i, k] = w[i, c] if k == c else 0.0
                nw[i, neg] = sum(others) / len(others)
            others = [b[k] for k in range(len(b)) if k != c]
            for k in range(len(b)):
                nb[k] = b[c] if k == c else 0.0
            nb[neg] = sum(others) / len(others)
            w, b = nw, nb
        if cm == "bln":
            last = list(inactive)[-1]
            for i in range(w.shape[0]):
                if w[i, neg] >= delta and w[i, c] <= 0:
                    inactive[last][:, :, i] = True
        out.append(({k: ~v for k, v in inactive.items()}, (w, b)))
    return out
