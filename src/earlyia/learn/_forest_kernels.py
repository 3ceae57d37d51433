"""Numba kernels of :mod:`earlyia.learn.forest` (the exact incremental random forest).

State (all plain arrays, mutated in place):

- training rows ``Xtr (cap_s, k)``, ``ytr (cap_s,) int8``, per-tree Poisson(1) weights
  ``W (n_trees, cap_s) uint8``;
- one node arena shared by all trees: ``F`` feature (-1 at a leaf), ``T`` threshold, ``L``/``R``
  children, ``V`` P(positive) of the weighted training rows reaching the node, ``K`` the node's path
  key, ``SL``/``SH`` the segment of ``perm[t]`` holding the scored rows that reach the node; a free
  list ``free`` and ``meta = [high-water mark, n_free]``;
- scored rows ``Xs``, ``perm (n_trees, n_scored)`` and running sums over trees per scored row
  ``sp`` (leaf probabilities), ``sv`` (votes p > 0.5), ``sh`` (leaf entropies).

Everything random is a pure function of (tree seed, node path key) or (tree seed, sample key), so a
tree is a deterministic function of its weighted training set: this is what makes the incremental
update exact (see ``docs/learn_engine.md``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

ROOT_KEY = np.uint64(1)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_SAMPLE_SALT = np.uint64(0xD1B54A32D192ED03)


@numba.njit(cache=True, inline="always")
def _mix(x):
    z = x + _GOLD
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def _child_key(key, side):
    return _mix(key * _TWO + np.uint64(side) + _ONE)


@numba.njit(cache=True)
def poisson_weight(tree_seed, sample_key):
    """Poisson(1) draw that depends only on (tree seed, sample key): online bagging."""
    h = _mix(tree_seed ^ _mix(np.uint64(sample_key) ^ _SAMPLE_SALT))
    u = np.float64(h >> _S11) * (1.0 / 9007199254740992.0)
    p = math.exp(-1.0)
    c = p
    k = 0
    while u > c and k < 60:
        k += 1
        p = p / k
        c += p
    return k


@numba.njit(cache=True)
def draw_weights(tree_seeds, sample_keys, W, col0):
    for t in range(tree_seeds.shape[0]):
        for i in range(sample_keys.shape[0]):
            W[t, col0 + i] = poisson_weight(tree_seeds[t], sample_keys[i])


@numba.njit(cache=True, inline="always")
def _entropy(p):
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log(p) + (1.0 - p) * math.log(1.0 - p))


@numba.njit(cache=True)
def _best_split(Xtr, ytr, w, buf, lo, hi, seed, key, max_features, fperm, vals, order, gorder, mark, stampc):
    """Best gini split of the rows buf[lo:hi]: (feature, threshold), feature -1 when none.

    Features are visited in a permutation drawn from (tree seed, node key); constant features are
    skipped and do not count (as in scikit-learn); the first ``max_features`` non-constant ones
    are searched. Ties keep the first feature / smallest threshold, so the result does not depend
    on the order of the rows. A node holding a large share of the training rows reads them in
    sorted order from the global per-feature order ``gorder`` instead of sorting (same result).
    """
    k = Xtr.shape[1]
    n = hi - lo
    n_s = gorder.shape[1]
    use_global = n > 48 and 6 * n > n_s
    st = 0
    if use_global:
        stampc[0] += 1
        st = stampc[0]
        for i in range(lo, hi):
            mark[buf[i]] = st
    for i in range(k):
        fperm[i] = i
    s = _mix(seed ^ key)
    for i in range(k - 1, 0, -1):
        s = _mix(s)
        j = np.int64(s % np.uint64(i + 1))
        tmp = fperm[i]
        fperm[i] = fperm[j]
        fperm[j] = tmp
    tot0 = 0
    tot1 = 0
    for i in range(lo, hi):
        r = buf[i]
        if ytr[r]:
            tot1 += w[r]
        else:
            tot0 += w[r]
    best = -1.0
    best_f = -1
    best_t = 0.0
    visited = 0
    for fi in range(k):
        f = fperm[fi]
        if use_global:
            m = 0
            for q in range(n_s):
                r = gorder[f, q]
                if mark[r] == st:
                    order[m] = r
                    m += 1
            if not Xtr[order[n - 1], f] > Xtr[order[0], f]:
                continue
        else:
            vmin = np.inf
            vmax = -np.inf
            for i in range(n):
                v = Xtr[buf[lo + i], f]
                vals[i] = v
                if v < vmin:
                    vmin = v
                if v > vmax:
                    vmax = v
            if not vmax > vmin:
                continue
            if n <= 48:
                for q in range(n):
                    order[q] = q
                for q in range(1, n):
                    key_i = order[q]
                    vq = vals[key_i]
                    r = q - 1
                    while r >= 0 and vals[order[r]] > vq:
                        order[r + 1] = order[r]
                        r -= 1
                    order[r + 1] = key_i
            else:
                order[:n] = np.argsort(vals[:n])
            for q in range(n):
                order[q] = buf[lo + order[q]]
        visited += 1
        # order[:n] = the node's training rows sorted by feature f
        l0 = 0
        l1 = 0
        for q in range(n - 1):
            r = order[q]
            if ytr[r]:
                l1 += w[r]
            else:
                l0 += w[r]
            v = Xtr[r, f]
            vn = Xtr[order[q + 1], f]
            if vn > v:
                r0 = tot0 - l0
                r1 = tot1 - l1
                proxy = np.float64(l0 * l0 + l1 * l1) / np.float64(l0 + l1) + np.float64(r0 * r0 + r1 * r1) / np.float64(r0 + r1)
                if proxy > best:
                    best = proxy
                    best_f = f
                    thr = v / 2.0 + vn / 2.0
                    if thr == vn or np.isinf(thr):
                        thr = v
                    best_t = thr
        if visited >= max_features:
            break
    return best_f, best_t


@numba.njit(cache=True)
def _alloc(free, meta):
    if meta[1] > 0:
        meta[1] -= 1
        return free[meta[1]]
    i = meta[0]
    meta[0] += 1
    return i


@numba.njit(cache=True)
def _free_children(node, F, L, R, free, meta):
    if F[node] < 0:
        return
    stack = [L[node], R[node]]
    while len(stack):
        x = stack.pop()
        if F[x] >= 0:
            stack.append(L[x])
            stack.append(R[x])
        free[meta[1]] = x
        meta[1] += 1


@numba.njit(cache=True)
def _partition(Xtr, buf, lo, hi, f, thr):
    i = lo
    j = hi - 1
    while i <= j:
        if Xtr[buf[i], f] <= thr:
            i += 1
        else:
            tmp = buf[i]
            buf[i] = buf[j]
            buf[j] = tmp
            j -= 1
    return i


@numba.njit(cache=True)
def _leaf_value(ytr, w, buf, lo, hi):
    w0 = 0
    w1 = 0
    for i in range(lo, hi):
        r = buf[i]
        if ytr[r]:
            w1 += w[r]
        else:
            w0 += w[r]
    if w0 + w1 == 0:
        return 0.5, 0, 0
    return np.float64(w1) / np.float64(w0 + w1), w0, w1


@numba.njit(cache=True)
def _build(node, Xtr, ytr, w, buf, lo, hi, seed, max_features, F, T, L, R, V, K, free, meta, fperm, vals, order, gorder, mark, stampc):
    """Grow the subtree rooted at ``node`` (its key already set) from the rows buf[lo:hi]."""
    st_n = [node]
    st_lo = [lo]
    st_hi = [hi]
    while len(st_n):
        nd = st_n.pop()
        a = st_lo.pop()
        b = st_hi.pop()
        v, w0, w1 = _leaf_value(ytr, w, buf, a, b)
        V[nd] = v
        f = -1
        thr = 0.0
        if w0 > 0 and w1 > 0:
            f, thr = _best_split(Xtr, ytr, w, buf, a, b, seed, K[nd], max_features, fperm, vals, order, gorder, mark, stampc)
        if f < 0:
            F[nd] = -1
            T[nd] = -2.0
            L[nd] = -1
            R[nd] = -1
            continue
        mid = _partition(Xtr, buf, a, b, f, thr)
        lc = _alloc(free, meta)
        rc = _alloc(free, meta)
        K[lc] = _child_key(K[nd], 0)
        K[rc] = _child_key(K[nd], 1)
        F[nd] = f
        T[nd] = thr
        L[nd] = lc
        R[nd] = rc
        st_n.append(rc)
        st_lo.append(mid)
        st_hi.append(b)
        st_n.append(lc)
        st_lo.append(a)
        st_hi.append(mid)


@numba.njit(cache=True)
def _scored_remove(t, node, F, L, R, V, SL, SH, perm, sp, sv, sh):
    stack = [node]
    while len(stack):
        x = stack.pop()
        if F[x] >= 0:
            stack.append(L[x])
            stack.append(R[x])
            continue
        p = V[x]
        vote = 1 if p > 0.5 else 0
        h = _entropy(p)
        for q in range(SL[x], SH[x]):
            i = perm[t, q]
            sp[i] -= p
            sv[i] -= vote
            sh[i] -= h


@numba.njit(cache=True)
def _scored_assign(t, node, Xs, F, T, L, R, V, SL, SH, perm, sp, sv, sh):
    """Partition the scored rows of node's segment down its subtree and add the leaf contributions.

    The partition is out-of-place and branch-free (the comparison outcome is a coin flip for the
    CPU's branch predictor), then copied back: rows keep their relative order in each child.

    Every node of the subtree gets its segment, an empty one included: a rebuilt subtree reuses
    freed nodes whose SL/SH still describe the segment of another node, and a later rebuild inside
    this subtree removes/re-partitions exactly the segments recorded here.
    """
    n = SH[node] - SL[node]
    tmp_l = np.empty(n, np.int32)
    tmp_r = np.empty(n, np.int32)
    stack = [node]
    while len(stack):
        x = stack.pop()
        lo = SL[x]
        hi = SH[x]
        if F[x] < 0:
            p = V[x]
            vote = 1 if p > 0.5 else 0
            h = _entropy(p)
            for q in range(lo, hi):
                i = perm[t, q]
                sp[i] += p
                sv[i] += vote
                sh[i] += h
            continue
        f = F[x]
        thr = T[x]
        nl = 0
        nr = 0
        for q in range(lo, hi):
            r = perm[t, q]
            c = np.int64(Xs[f, r] <= thr)
            tmp_l[nl] = r
            tmp_r[nr] = r
            nl += c
            nr += 1 - c
        for q in range(nl):
            perm[t, lo + q] = tmp_l[q]
        for q in range(nr):
            perm[t, lo + nl + q] = tmp_r[q]
        SL[L[x]] = lo
        SH[L[x]] = lo + nl
        SL[R[x]] = lo + nl
        SH[R[x]] = hi
        stack.append(L[x])
        stack.append(R[x])


@numba.njit(cache=True)
def _in_bag(W, t, n_s, buf):
    m = 0
    for s in range(n_s):
        if W[t, s] > 0:
            buf[m] = s
            m += 1
    return m


@numba.njit(cache=True)
def fit_trees(t0, Xtr, ytr, W, n_s, gorder, seeds, max_features, roots, F, T, L, R, V, K, SL, SH, free, meta, Xs, perm, sp, sv, sh):
    """Build trees t0.. from scratch; return the index of the first tree not built (capacity)."""
    n_trees = seeds.shape[0]
    k = Xtr.shape[1]
    buf = np.empty(max(n_s, 1), np.int64)
    fperm = np.empty(k, np.int64)
    vals = np.empty(max(n_s, 1), np.float64)
    order = np.empty(max(n_s, 1), np.int64)
    mark = np.zeros(max(n_s, 1), np.int64)
    stampc = np.zeros(1, np.int64)
    cap = F.shape[0]
    n_sc = Xs.shape[1]
    for t in range(t0, n_trees):
        m = _in_bag(W, t, n_s, buf)
        if cap - meta[0] + meta[1] < 2 * m + 2:
            return t
        root = _alloc(free, meta)
        roots[t] = root
        K[root] = ROOT_KEY
        _build(root, Xtr, ytr, W[t], buf, 0, m, seeds[t], max_features, F, T, L, R, V, K, free, meta,
               fperm, vals, order, gorder, mark, stampc)
        SL[root] = 0
        SH[root] = n_sc
        if n_sc > 0:
            for i in range(n_sc):  # a refit keeps the registered rows: start from the identity
                perm[t, i] = i
            _scored_assign(t, root, Xs, F, T, L, R, V, SL, SH, perm, sp, sv, sh)
    return n_trees


@numba.njit(cache=True)
def assign_all(Xs, roots, F, T, L, R, V, SL, SH, perm, sp, sv, sh):
    """(Re)partition every tree's scored rows from the root and recompute the sums from zero."""
    n_sc = Xs.shape[1]
    sp[:] = 0.0
    sv[:] = 0
    sh[:] = 0.0
    for t in range(roots.shape[0]):
        for i in range(n_sc):
            perm[t, i] = i
        SL[roots[t]] = 0
        SH[roots[t]] = n_sc
        _scored_assign(t, roots[t], Xs, F, T, L, R, V, SL, SH, perm, sp, sv, sh)


@numba.njit(cache=True)
def add_sample(t0, j, Xtr, ytr, W, n_s, gorder, seeds, max_features, roots, F, T, L, R, V, K, SL, SH, free, meta,
               Xs, perm, sp, sv, sh, stats):
    """Insert training row j (already stored, weights drawn) into trees t0..; exact update.

    Walk the path of row j from the root: recompute the node's best split with the new row; while
    it is unchanged descend into the child holding row j (the other child's data, hence subtree,
    is unchanged); where it changes, or at a leaf, rebuild that subtree only. Returns the index of
    the first tree not processed (capacity), n_trees when done. ``stats`` accumulates counters:
    [trees touched, split searches on the path, rows searched on the path, subtrees rebuilt,
    training rows rebuilt, scored rows re-partitioned, rebuilds with the same feature, -, rebuilds at
    a leaf].
    """
    n_trees = seeds.shape[0]
    k = Xtr.shape[1]
    buf = np.empty(max(n_s, 1), np.int64)
    fperm = np.empty(k, np.int64)
    vals = np.empty(max(n_s, 1), np.float64)
    order = np.empty(max(n_s, 1), np.int64)
    mark = np.zeros(max(n_s, 1), np.int64)
    stampc = np.zeros(1, np.int64)
    cap = F.shape[0]
    for t in range(t0, n_trees):
        if W[t, j] == 0:
            continue
        m = _in_bag(W, t, n_s, buf)
        if cap - meta[0] + meta[1] < 2 * m + 2:
            return t
        w = W[t]
        node = roots[t]
        lo = 0
        hi = m
        stats[0] += 1
        while True:
            if F[node] < 0:
                v, w0, w1 = _leaf_value(ytr, w, buf, lo, hi)
                if (w0 == 0 or w1 == 0) and v == V[node]:
                    break  # a pure leaf receiving its own class: nothing changes
                rebuild = True
                stats[8] += 1
            else:
                f, thr = _best_split(Xtr, ytr, w, buf, lo, hi, seeds[t], K[node], max_features, fperm, vals, order, gorder, mark, stampc)
                stats[1] += 1
                stats[2] += hi - lo
                rebuild = not (f == F[node] and thr == T[node])
                if rebuild and f == F[node]:
                    stats[6] += 1  # same feature, new threshold
                if not rebuild:
                    V[node] = _leaf_value(ytr, w, buf, lo, hi)[0]
                    mid = _partition(Xtr, buf, lo, hi, f, thr)
                    if Xtr[j, f] <= thr:
                        node = L[node]
                        hi = mid
                    else:
                        node = R[node]
                        lo = mid
                    continue
            if rebuild:
                stats[3] += 1
                stats[4] += hi - lo
                stats[5] += SH[node] - SL[node]
                if Xs.shape[1] > 0:
                    _scored_remove(t, node, F, L, R, V, SL, SH, perm, sp, sv, sh)
                _free_children(node, F, L, R, free, meta)
                _build(node, Xtr, ytr, w, buf, lo, hi, seeds[t], max_features, F, T, L, R, V, K, free, meta,
                       fperm, vals, order, gorder, mark, stampc)
                if Xs.shape[1] > 0:
                    _scored_assign(t, node, Xs, F, T, L, R, V, SL, SH, perm, sp, sv, sh)
            break
    return n_trees


@numba.njit(cache=True)
def export(roots, F, T, L, R, V, n_live):
    """Flatten the live trees in depth-first pre-order (absolute child indices)."""
    fo = np.empty(n_live, np.int32)
    to = np.empty(n_live, np.float64)
    lo_ = np.empty(n_live, np.int32)
    ro = np.empty(n_live, np.int32)
    vo = np.empty(n_live, np.float64)
    old = np.empty(n_live, np.int64)
    newid = np.full(F.shape[0], -1, np.int64)
    ro_roots = np.empty(roots.shape[0], np.int64)
    pos = 0
    for t in range(roots.shape[0]):
        ro_roots[t] = pos
        stack = [roots[t]]
        while len(stack):
            x = stack.pop()
            newid[x] = pos
            old[pos] = x
            pos += 1
            if F[x] >= 0:
                stack.append(R[x])
                stack.append(L[x])
    for i in range(pos):
        x = old[i]
        fo[i] = F[x]
        to[i] = T[x]
        vo[i] = V[x]
        if F[x] >= 0:
            lo_[i] = newid[L[x]]
            ro[i] = newid[R[x]]
        else:
            lo_[i] = -1
            ro[i] = -1
    return fo[:pos], to[:pos], lo_[:pos], ro[:pos], vo[:pos], ro_roots


@numba.njit(cache=True)
def summary(X, roots, F, T, L, R, V):
    """Per row: sum over trees of leaf P(positive), of votes (p > 0.5), of leaf entropies."""
    n = X.shape[0]
    sp = np.zeros(n)
    sv = np.zeros(n)
    sh = np.zeros(n)
    for t in range(roots.shape[0]):
        for i in range(n):
            x = roots[t]
            while F[x] >= 0:
                if X[i, F[x]] <= T[x]:
                    x = L[x]
                else:
                    x = R[x]
            p = V[x]
            sp[i] += p
            if p > 0.5:
                sv[i] += 1.0
            sh[i] += _entropy(p)
    return sp, sv, sh
