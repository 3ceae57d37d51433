"""Numba kernels of :mod:`earlyia.learn.forest` (the exact incremental random forest).

State (all plain arrays, mutated in place):

- training rows ``Xtr (cap_s, k)``, ``ytr (cap_s,) int8``, per-tree Poisson(1) weights
  ``W (n_trees, cap_s) uint8``;
- one node arena shared by all trees: ``F`` feature (-1 at a leaf), ``T`` threshold, ``L``/``R``
  children, ``V`` P(positive) of the weighted training rows reaching the node, ``K`` the node's path
  key; a free list ``free`` and ``meta = [high-water mark, n_free]``;
- scored (registered) rows: an index built once (``scored_index``: per-feature sorted values and
  order, prefix bitsets every ``block`` rows, ``full`` = all rows) and exact fixed-point sums over
  trees per row ``sp`` (leaf probabilities), ``sv`` (votes p > 0.5), ``sh`` (leaf entropies).
  Nothing per tree: the rows reaching a node are recomputed as bitsets from the splits above it.

Everything random is a pure function of (tree seed, node path key) or (tree seed, sample key), so a
tree is a deterministic function of its weighted training set: this is what makes the incremental
update exact (see ``docs/learn_engine.md``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

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
FX_SCALE = 2.0**50  # fixed point of the per-row sums: 1000 trees x 2**50 < 2**63


@intrinsic
def _popcount(typingctx, x):
    """Number of set bits of a uint64 (LLVM ctpop)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [args[0].type])
        return builder.call(fn, args)

    return types.int64(types.uint64), codegen


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
    """Per row, over trees: fixed-point sums of leaf P(positive) and leaf entropy, and the number of
    votes (p > 0.5); the same integers the maintained sums of registered rows hold."""
    n = X.shape[0]
    sp = np.zeros(n, np.int64)
    sv = np.zeros(n, np.int64)
    sh = np.zeros(n, np.int64)
    for t in range(roots.shape[0]):
        for i in range(n):
            x = roots[t]
            while F[x] >= 0:
                if X[i, F[x]] <= T[x]:
                    x = L[x]
                else:
                    x = R[x]
            p, vote, h = _leaf_terms(V, x)
            sp[i] += p
            sv[i] += vote
            sh[i] += h
    return sp, sv, sh


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
def _best_split(
    Xtr, ytr, w, buf, lo, hi, seed, key, max_features, fperm, vals, order, gorder, mark, stampc
):
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
                proxy = np.float64(l0 * l0 + l1 * l1) / np.float64(l0 + l1) + np.float64(
                    r0 * r0 + r1 * r1
                ) / np.float64(r0 + r1)
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
def _build(
    node,
    Xtr,
    ytr,
    w,
    buf,
    lo,
    hi,
    seed,
    max_features,
    F,
    T,
    L,
    R,
    V,
    K,
    free,
    meta,
    fperm,
    vals,
    order,
    gorder,
    mark,
    stampc,
    f0=-2,
    t0=0.0,
):
    """Grow the subtree rooted at ``node`` (its key already set) from the rows buf[lo:hi].

    ``f0, t0``: the best split of these rows at ``node`` when the caller already searched it
    (``f0 = -2``: not searched)."""
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
        if nd == node and f0 != -2:
            if w0 > 0 and w1 > 0:
                f = f0
                thr = t0
        elif w0 > 0 and w1 > 0:
            f, thr = _best_split(
                Xtr,
                ytr,
                w,
                buf,
                a,
                b,
                seed,
                K[nd],
                max_features,
                fperm,
                vals,
                order,
                gorder,
                mark,
                stampc,
            )
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


@numba.njit(cache=True, inline="always")
def _fx(p):
    """Fixed-point value of a leaf probability or entropy (both in [0, 1]): integer sums are exact,
    so the maintained per-row sums do not depend on the order of the updates."""
    return np.int64(p * FX_SCALE + 0.5)


@numba.njit(cache=True, inline="always")
def _leaf_terms(V, x):
    """(fixed-point p, vote p > 0.5, fixed-point entropy) of leaf x."""
    p = V[x]
    return _fx(p), 1 if p > 0.5 else 0, _fx(_entropy(p))


# ---------------------------------------------------------------- scored rows as bitsets
# The registered ("scored") rows are indexed 0..n-1; a set of them is a bitset of nw = ceil(n/64)
# uint64 words. For each feature f the rows are sorted by value (``svals[f]``, ``sord[f]``) and
# ``pref[f, b]`` is the bitset of the first b*B rows in that order, so the rows with x_f <= thr
# are ``pref[f, c // B]`` plus at most B-1 rows, with c found by binary search. The rows reaching a
# node are the AND of its ancestors' split sets: no per-tree routing state is stored.


@numba.njit(cache=True)
def scored_index(Xs, block):
    """Per-feature sorted values/order and prefix bitsets of the rows Xs (k, n) (see above)."""
    k, n = Xs.shape
    nw = (n + 63) >> 6
    nb = n // block + 1
    svals = np.empty((k, n))
    sord = np.empty((k, n), np.int32)
    pref = np.zeros((k, nb, nw), np.uint64)
    for f in range(k):
        o = np.argsort(Xs[f], kind="mergesort")
        for q in range(n):
            sord[f, q] = o[q]
            svals[f, q] = Xs[f, o[q]]
        cur = np.zeros(nw, np.uint64)
        for b in range(1, nb):
            for q in range((b - 1) * block, b * block):
                r = o[q]
                cur[r >> 6] |= np.uint64(1) << np.uint64(r & 63)
            pref[f, b] = cur
    full = np.zeros(nw, np.uint64)
    for r in range(n):
        full[r >> 6] |= np.uint64(1) << np.uint64(r & 63)
    return svals, sord, pref, full


@numba.njit(cache=True, inline="always")
def _n_le(vals, thr):
    """Number of entries of the sorted array vals that are <= thr (binary search)."""
    lo = 0
    hi = vals.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if vals[mid] <= thr:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True)
def _split_bits(f, thr, parent, left, right, svals, sord, pref, block):
    """left = parent rows with x_f <= thr, right = the other parent rows."""
    c = _n_le(svals[f], thr)
    b = c // block
    pb = pref[f, b]
    nw = parent.shape[0]
    for w in range(nw):
        left[w] = parent[w] & pb[w]
    for q in range(b * block, c):
        r = sord[f, q]
        wi = r >> 6
        left[wi] |= parent[wi] & (np.uint64(1) << np.uint64(r & 63))
    al = np.uint64(0)
    ar = np.uint64(0)
    for w in range(nw):
        lw = left[w]
        rw = parent[w] ^ lw
        right[w] = rw
        al |= lw
        ar |= rw
    return al != 0, ar != 0


@numba.njit(cache=True)
def _apply(
    node,
    bits,
    sign,
    F,
    T,
    L,
    R,
    V,
    svals,
    sord,
    pref,
    block,
    bstack,
    sp,
    sv,
    sh,
    do_p,
    do_c,
    acc,
    use_acc,
):
    """Add (sign +1) or remove (-1) the leaf terms of node's subtree for the scored rows in ``bits``
    (the rows reaching node): a depth-first walk carrying each node's bitset in ``bstack``.

    A leaf with P = 0 adds nothing (no vote, no entropy): its rows are not visited. With
    ``use_acc`` the rows of leaves with P = 1 are only collected in the bitset ``acc``: a rebuild
    then updates just the rows whose P = 1 leaf appeared or disappeared (most rows of a rebuilt
    subtree sit in pure leaves on both sides)."""
    nw = bits.shape[0]
    for w in range(nw):
        bstack[0, w] = bits[w]
    nodes = [node]
    while len(nodes):
        p = len(nodes) - 1
        x = nodes.pop()
        cur = bstack[p]
        if F[x] >= 0:
            # left child's rows into slot p+1, right child's rows replace the parent's in slot p
            any_l, any_r = _split_bits(
                F[x], T[x], cur, bstack[p + 1], cur, svals, sord, pref, block
            )
            if any_r:
                nodes.append(R[x])
            if any_l:
                if not any_r:
                    for w in range(nw):
                        cur[w] = bstack[p + 1, w]
                nodes.append(L[x])
            continue
        if V[x] == 0.0:
            continue
        if use_acc and V[x] == 1.0:
            for w in range(nw):
                acc[w] |= cur[w]
            continue
        a, vote, h = _leaf_terms(V, x)
        a *= sign
        vote *= sign
        h *= sign
        for w in range(nw):
            word = cur[w]
            while word:
                i = (w << 6) + trailing_zeros(word)
                word &= word - np.uint64(1)
                if do_p:
                    sp[i] += a
                if do_c:
                    sv[i] += vote
                    sh[i] += h


@numba.njit(cache=True)
def _flip_ones(before, after, sp, sv, track):
    """Rows in a P = 1 leaf before but not after lose its terms (p = 1, one vote, no entropy), and
    the reverse."""
    one = _fx(1.0)
    for w in range(before.shape[0]):
        b = before[w]
        a = after[w]
        for sgn in (-1, 1):
            word = b & ~a if sgn < 0 else a & ~b
            while word:
                i = (w << 6) + trailing_zeros(word)
                word &= word - np.uint64(1)
                sp[i] += sgn * one
                if track:
                    sv[i] += sgn


@numba.njit(cache=True)
def _scratch(n_s, k, n_sc):
    """Scratch buffers shared by :func:`fit_trees` and :func:`add_sample` (allocated once per call).

    Training rows: ``buf`` (a tree's in-bag rows, partitioned node by node), ``fperm``, ``vals``,
    ``order`` (split search), ``mark`` (stamps per training row), ``stampc`` the stamp counter.
    Scored rows: ``bstack`` (one bitset per depth level of a walk; a tree is at most n_s deep) and
    ``pbits`` (the rows reaching the node being rebuilt; rows in P = 1 leaves before and after).
    """
    m = max(n_s, 1)
    nw = (n_sc + 63) >> 6
    return (
        np.empty(m, np.int64),
        np.empty(k, np.int64),
        np.empty(m, np.float64),
        np.empty(m, np.int64),
        np.zeros(m, np.int64),
        np.zeros(1, np.int64),
        np.empty((m + 2, nw), np.uint64),
        np.empty((3, nw), np.uint64),
    )


@numba.njit(cache=True)
def _in_bag(W, t, n_s, buf):
    m = 0
    for s in range(n_s):
        if W[t, s] > 0:
            buf[m] = s
            m += 1
    return m


@numba.njit(cache=True)
def fit_trees(
    t0,
    Xtr,
    ytr,
    W,
    n_s,
    gorder,
    seeds,
    max_features,
    roots,
    F,
    T,
    L,
    R,
    V,
    K,
    free,
    meta,
    svals,
    sord,
    pref,
    full,
    block,
    sp,
    sv,
    sh,
    track,
):
    """Build trees t0.. from scratch; return the index of the first tree not built (capacity)."""
    n_trees = seeds.shape[0]
    n_sc = svals.shape[1]
    buf, fperm, vals, order, mark, stampc, bstack, _pbits = _scratch(n_s, Xtr.shape[1], n_sc)
    cap = F.shape[0]
    for t in range(t0, n_trees):
        m = _in_bag(W, t, n_s, buf)
        if cap - meta[0] + meta[1] < 2 * m + 2:
            return t
        root = _alloc(free, meta)
        roots[t] = root
        K[root] = ROOT_KEY
        _build(
            root,
            Xtr,
            ytr,
            W[t],
            buf,
            0,
            m,
            seeds[t],
            max_features,
            F,
            T,
            L,
            R,
            V,
            K,
            free,
            meta,
            fperm,
            vals,
            order,
            gorder,
            mark,
            stampc,
        )
        if n_sc > 0:
            _apply(
                root,
                full,
                1,
                F,
                T,
                L,
                R,
                V,
                svals,
                sord,
                pref,
                block,
                bstack,
                sp,
                sv,
                sh,
                True,
                track,
                bstack[0],
                False,
            )
    return n_trees


@numba.njit(cache=True)
def assign_all(roots, F, T, L, R, V, svals, sord, pref, full, block, sp, sv, sh, do_p, do_c):
    """Recompute the sums of every scored row from zero (probabilities and/or committee sums)."""
    n_sc = svals.shape[1]
    if do_p:
        sp[:] = 0
    if do_c:
        sv[:] = 0
        sh[:] = 0
    if n_sc == 0:
        return
    depth = 1
    for t in range(roots.shape[0]):
        depth = max(depth, _depth(roots[t], F, L, R))
    bstack = np.empty((depth + 2, full.shape[0]), np.uint64)
    for t in range(roots.shape[0]):
        _apply(
            roots[t],
            full,
            1,
            F,
            T,
            L,
            R,
            V,
            svals,
            sord,
            pref,
            block,
            bstack,
            sp,
            sv,
            sh,
            do_p,
            do_c,
            bstack[0],
            False,
        )


@numba.njit(cache=True)
def _depth(node, F, L, R):
    best = 0
    nodes = [node]
    depths = [0]
    while len(nodes):
        x = nodes.pop()
        d = depths.pop()
        if d > best:
            best = d
        if F[x] >= 0:
            nodes.append(L[x])
            depths.append(d + 1)
            nodes.append(R[x])
            depths.append(d + 1)
    return best


@numba.njit(cache=True)
def add_sample(
    t0,
    j,
    Xtr,
    ytr,
    W,
    n_s,
    gorder,
    seeds,
    max_features,
    roots,
    F,
    T,
    L,
    R,
    V,
    K,
    free,
    meta,
    svals,
    sord,
    pref,
    full,
    block,
    sp,
    sv,
    sh,
    track,
    stats,
):
    """Insert training row j (already stored, weights drawn) into trees t0..; exact update.

    Walk the path of row j from the root: recompute the node's best split with the new row; while
    it is unchanged descend into the child holding row j (the other child's data, hence subtree,
    is unchanged); where it changes, or at a leaf, rebuild that subtree only, and update the sums
    of the scored rows reaching it (remove the old leaves' terms, add the new ones). Returns the
    index of the first tree not processed (capacity), n_trees when done. ``stats`` accumulates
    counters: [trees touched, split searches on the path, rows searched on the path, subtrees
    rebuilt, training rows rebuilt, scored rows reaching the rebuilt subtrees, rebuilds keeping the
    feature (threshold moved), -, rebuilds at a leaf].
    """
    n_trees = seeds.shape[0]
    n_sc = svals.shape[1]
    buf, fperm, vals, order, mark, stampc, bstack, pbits = _scratch(n_s, Xtr.shape[1], n_sc)
    nw = full.shape[0]
    cap = F.shape[0]
    for t in range(t0, n_trees):
        if W[t, j] == 0:
            continue
        m = _in_bag(W, t, n_s, buf)
        if cap - meta[0] + meta[1] < 2 * m + 2:
            return t
        w = W[t]
        node = roots[t]
        path = [node]
        lo = 0
        hi = m
        stats[0] += 1
        while True:
            f = -2  # the new best split of node, when searched
            thr = 0.0
            if F[node] < 0:
                v, w0, w1 = _leaf_value(ytr, w, buf, lo, hi)
                if (w0 == 0 or w1 == 0) and v == V[node]:
                    break  # a pure leaf receiving its own class: nothing changes
                stats[8] += 1
            else:
                f, thr = _best_split(
                    Xtr,
                    ytr,
                    w,
                    buf,
                    lo,
                    hi,
                    seeds[t],
                    K[node],
                    max_features,
                    fperm,
                    vals,
                    order,
                    gorder,
                    mark,
                    stampc,
                )
                stats[1] += 1
                stats[2] += hi - lo
                if f == F[node] and thr == T[node]:
                    V[node] = _leaf_value(ytr, w, buf, lo, hi)[0]
                    mid = _partition(Xtr, buf, lo, hi, f, thr)
                    if Xtr[j, f] <= thr:
                        node = L[node]
                        hi = mid
                    else:
                        node = R[node]
                        lo = mid
                    path.append(node)
                    continue
                if f == F[node]:
                    stats[6] += 1  # same feature, new threshold
            # rebuild node's subtree
            stats[3] += 1
            stats[4] += hi - lo
            if n_sc > 0:
                # the scored rows reaching node: AND of the split sets along the path
                cur = pbits[0]
                for q in range(nw):
                    cur[q] = full[q]
                for d in range(len(path) - 1):
                    x = path[d]
                    _split_bits(F[x], T[x], cur, bstack[0], bstack[1], svals, sord, pref, block)
                    src = bstack[0] if path[d + 1] == L[x] else bstack[1]
                    for q in range(nw):
                        cur[q] = src[q]
                cnt = 0
                for q in range(nw):
                    cnt += _popcount(cur[q])
                stats[5] += cnt
                acc_old = pbits[1]
                acc_new = pbits[2]
                acc_old[:] = 0
                acc_new[:] = 0
                _apply(
                    node,
                    cur,
                    -1,
                    F,
                    T,
                    L,
                    R,
                    V,
                    svals,
                    sord,
                    pref,
                    block,
                    bstack,
                    sp,
                    sv,
                    sh,
                    True,
                    track,
                    acc_old,
                    True,
                )
            _free_children(node, F, L, R, free, meta)
            _build(
                node,
                Xtr,
                ytr,
                w,
                buf,
                lo,
                hi,
                seeds[t],
                max_features,
                F,
                T,
                L,
                R,
                V,
                K,
                free,
                meta,
                fperm,
                vals,
                order,
                gorder,
                mark,
                stampc,
                f,
                thr,
            )
            if n_sc > 0:
                _apply(
                    node,
                    pbits[0],
                    1,
                    F,
                    T,
                    L,
                    R,
                    V,
                    svals,
                    sord,
                    pref,
                    block,
                    bstack,
                    sp,
                    sv,
                    sh,
                    True,
                    track,
                    acc_new,
                    True,
                )
                _flip_ones(acc_old, acc_new, sp, sv, track)
            break
    return n_trees
