"""A literal NumPy Pan & Rajan decomposition (FSE'20), one sample at a time.

It follows the reference code's `Slice` class (`modifyThroughInterSection` for CI,
`dynamicmodify` for TI, `backtrack` for CM-RIE, the "short circuit" for CM-C) loop by loop,
on float working copies D_l, d_l, so the vectorized closed form can be checked against it.
"""

import numpy as np


def _softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def _monitor(ws, bs, x):
    h = x.reshape(-1).astype(np.float64)
    zs = []
    for w, b in zip(ws[:-1], bs[:-1]):
        h = h @ w + b
        zs.append(h.copy())
    return zs, _softmax(h @ ws[-1] + bs[-1])


class Slicer:
    """The working copy of one module and the per-sample CI/TI rules of the reference code."""

    def __init__(self, ws, bs, *, parity, ci_out_threshold=None, guard=45 / 490):
        self.ws = [np.asarray(w, np.float64) for w in ws]
        self.bs = [np.asarray(b, np.float64) for b in bs]
        self.D = [np.zeros_like(w) for w in self.ws]
        self.d = [np.zeros_like(b) for b in self.bs]
        self.first = True
        self.parity = parity
        self.ci_out_threshold = ci_out_threshold
        self.guard = guard * self.ws[-1].size

    def ci(self, x):
        """`modifyThroughInterSection`: one positive sample."""
        zs, p = _monitor(self.ws, self.bs, x)
        num_hidden = len(zs)
        pending = []  # default order: row zeroings applied after the layer's copies
        for l, z in enumerate(zs):
            D, W = self.D[l], self.ws[l]
            for i in range(z.shape[0]):
                if z[i] <= 0:
                    D[:, i] = 0
                    self.d[l][i] = 0
                    if l + 1 < num_hidden:
                        if self.parity:
                            self.D[l + 1][i, :] = 0
                        else:
                            pending.append((l + 1, i))
                elif self.first:
                    D[:, i] = W[:, i]
                    self.d[l][i] = self.bs[l][i]
                else:
                    for j in range(W.shape[0]):
                        if W[j, i] < 0:
                            D[j, i] = max(D[j, i], W[j, i])
                            if D[j, i] < 0:  # noqa: PLR1730 (the reference code, literally)
                                D[j, i] = 0
                        else:
                            D[j, i] = min(D[j, i], W[j, i])
                    self.d[l][i] = self.bs[l][i]
        # default order: apply all row zeroings last (zeroing dominates copying)
        for layer, row in pending:
            self.D[layer][row, :] = 0
        D, W = self.D[-1], self.ws[-1]
        for i in range(p.shape[0]):
            if self.ci_out_threshold is not None and p[i] <= self.ci_out_threshold:
                D[:, i] = 0
                self.d[-1][i] = 0
            elif self.first:
                D[:, i] = W[:, i]
                self.d[-1][i] = self.bs[-1][i]
            else:
                for j in range(W.shape[0]):
                    if W[j, i] < 0:
                        D[j, i] = max(D[j, i], W[j, i])
                    else:
                        D[j, i] = min(D[j, i], W[j, i])
                self.d[-1][i] = self.bs[-1][i]
        self.first = False
        self._guard()

    def ti(self, x, threshold):
        """`dynamicmodify`: one negative sample."""
        zs, p = _monitor(self.ws, self.bs, x)
        for l, z in enumerate(zs):
            for i in range(z.shape[0]):
                if z[i] > 0:
                    self.D[l][:, i] = self.ws[l][:, i]
                    self.d[l][i] = self.bs[l][i]
        for i in range(p.shape[0]):
            if p[i] > threshold:
                self.D[-1][:, i] = self.ws[-1][:, i]
                self.d[-1][i] = self.bs[-1][i]
        self._guard()

    def _guard(self):
        if np.count_nonzero(self.D[-1]) < self.guard:
            self.first = True


def identify(
    ws,
    bs,
    positives,
    negatives,
    *,
    ti_out_threshold,
    ci_out_threshold=None,
    negatives_first=False,
    parity=False,
):
    """CI then TI (or TI then CI) over the samples one by one; returns (D, d)."""
    s = Slicer(ws, bs, parity=parity, ci_out_threshold=ci_out_threshold)
    if negatives_first:
        for x in negatives:
            s.ti(x, ti_out_threshold)
    for x in positives:
        s.ci(x)
    if not negatives_first:
        for x in negatives:
            s.ti(x, ti_out_threshold)
    return s.D, s.d


def channel(D, d, c, *, parity):
    """CM-C ("short circuit"): negative output = mean of the other outputs."""
    D = [x.copy() for x in D]
    d = [x.copy() for x in d]
    out, bias = D[-1], d[-1]
    k = out.shape[1]
    neg = 1 if c == 0 else 0
    for i in range(out.shape[0]):
        others = [out[i, j] for j in range(k) if j != c]
        row = np.zeros(k)
        row[c] = out[i, c]
        row[neg] = np.mean(others)
        out[i, :] = row
    others = [bias[j] for j in range(k) if j != c]
    new = np.zeros(k)
    new[c] = bias[c]
    new[neg] = np.sum(others) / (k if parity and c != 0 else k - 1)
    d[-1] = new
    return D, d


def remove_irrelevant(D, d, c, *, parity):
    """CM-RIE steps 1-3 (`backtrack` before the short circuit)."""
    D = [x.copy() for x in D]
    out, prev = D[-1], D[-2]
    k = out.shape[1]
    neg = 1 if c == 0 else 0
    sel = []
    for i in range(out.shape[0]):
        hit = abs(out[i, c]) < 0.05 if parity else out[i, c] == 0
        if not hit:
            continue
        vals = [out[i, j] for j in range(k) if j != c and out[i, j] != 0]
        idx = [j for j in range(k) if j != c and out[i, j] != 0]
        out[i, neg] = np.mean(vals) if vals else 0.0
        if parity:
            for j in idx:
                out[i, j] = 0
        else:
            for j in range(k):
                if j not in (c, neg):
                    out[i, j] = 0
        sel.append(i)
    if len(sel) > 1:
        col = (0 if c == 0 else 1) if parity else neg
        a = sum(out[i, col] for i in sel)
        out[sel[0], neg] = a / len(sel)
        for x in sel[1:]:
            out[x, neg] = 0
    if sel:
        for r in range(prev.shape[0]):
            prev[r, sel[0]] = np.mean([prev[r, j] for j in sel])
            for x in sel[1:]:
                prev[r, x] = 0
    return D, [x.copy() for x in d]


def vote(logits, own):
    """Voting composition (METHODS §7.5) of module logits `[M, B, K]`; returns winners `[B]`."""
    out = []
    for b in range(logits.shape[1]):
        probs = [_softmax(logits[m, b]) for m in range(logits.shape[0])]
        voters = [m for m in range(len(own)) if np.argmax(probs[m]) == own[m]]
        pool = voters or list(range(len(own)))
        out.append(max(pool, key=lambda m: probs[m][own[m]]))
    return np.array(out)
