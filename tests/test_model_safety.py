"""A model file can never hurt the machine that loads it.

Every file here is built for real: zip bombs, forged zip and ``.npy`` headers, trees that are
cycles, crafted leaf values, calibration maps and cards, each with its content hash recomputed the
way :func:`earlyia.model.artifact.content_hash` computes it, so that only the new checks can refuse
them. Each must be refused by :meth:`Model.load` with an error naming the file and what is wrong,
and by the CLI (``earlyia score``, ``earlyia models show``) with exit code 2 and one line, no
traceback. Real models still load and score exactly as before.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import shared
from earlyia.cli.main import main
from earlyia.errors import ConfigError, IntegrityError, ModelError
from earlyia.model import modelfile
from earlyia.model.artifact import Model, content_hash
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model

NAMES = ["f_a", "f_b", "f_c"]
CONFIG = {"extractor": "toy", "params": {"k": 1}, "names": NAMES}
GIB = 1 << 30


def _table(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    df = pd.DataFrame(X, columns=NAMES)
    df.insert(0, "object_id", [f"ZTF{i:05d}" for i in range(n)])
    df.insert(1, "alert_id", [f"a{i}" for i in range(n)])
    df["label"] = np.where(X[:, 0] + 0.4 * rng.normal(size=n) > 0.3, "SN Ia", "SN II")
    return df


def _evidence_table(seed=0):
    """Objects seen at 1..5 detections, with the evidence feature ``early_n_det``."""
    rng = np.random.default_rng(seed)
    rows = []
    for o in range(160):
        ia = rng.random() < 0.4
        for d in range(1, 6):
            rows.append(
                {
                    "object_id": f"ZTF{o:05d}",
                    "alert_id": f"a{o}_{d}",
                    "f_a": rng.normal(ia * d / 3),
                    "f_b": rng.normal(),
                    "early_n_det": d,
                    "ndethist": d,
                    "label": "SN Ia" if ia else "SN II",
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Real models (plain, isotonic, sigmoid, calibrated by evidence), in memory and saved."""
    tmp = tmp_path_factory.mktemp("models")
    out = {
        "plain": train_model(_table(), CONFIG, Recipe(n_estimators=12), random_state=5),
        "isotonic": train_model(
            _table(), CONFIG, Recipe(n_estimators=12, calibrate="isotonic"), random_state=5
        ),
        "sigmoid": train_model(
            _table(), CONFIG, Recipe(n_estimators=12, calibrate="sigmoid"), random_state=5
        ),
        "evidence": train_model(
            _evidence_table(),
            {"extractor": "toy", "names": ["f_a", "f_b", "early_n_det"]},
            Recipe(n_estimators=10, calibrate="evidence", cv_folds=3),
            random_state=1,
        ),
    }
    return {k: (m, m.save(tmp / f"{k}.eia")) for k, m in out.items()}


# ---------------------------------------------------------------------------- building files
def npz_bytes(arrays, compression=zipfile.ZIP_STORED) -> bytes:
    """An .npz as numpy writes it (``np.savez``), or with its members deflated."""
    buf = io.BytesIO()
    if compression == zipfile.ZIP_STORED:
        np.savez(buf, **arrays)
    else:
        np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def parts(path):
    """``(card, trees, calibration)`` of a model file written by the tests (trusted: plain
    zipfile and np.load)."""
    with zipfile.ZipFile(path) as zf:
        card = json.loads(zf.read("card.json"))
        trees = dict(np.load(io.BytesIO(zf.read("trees.npz")), allow_pickle=False))
        cal = (
            dict(np.load(io.BytesIO(zf.read("calibration.npz")), allow_pickle=False))
            if "calibration.npz" in zf.namelist()
            else None
        )
    return card, trees, cal


def write_model(
    out: Path, card, trees, calibration=None, *, rehash=True, card_text: str | None = None
) -> Path:
    """A model zip of these parts; ``rehash``: the content hash recomputed as ``content_hash``
    does, so the hash check passes and only the other checks can refuse the file."""
    if rehash:
        arrays = {f"trees/{k}": np.asarray(v) for k, v in trees.items()}
        arrays.update({f"calibration/{k}": np.asarray(v) for k, v in (calibration or {}).items()})
        card = {**card, "hash": content_hash(card, arrays)}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("card.json", card_text if card_text is not None else json.dumps(card, indent=1))
        zf.writestr("trees.npz", npz_bytes(trees))
        if calibration is not None:
            zf.writestr("calibration.npz", npz_bytes(calibration))
    return out


def _npy_header(shape, dtype="<f8") -> bytes:
    """A .npy version 1.0 header declaring ``shape`` (padded to 64 bytes, as numpy writes it)."""
    d = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    pad = 64 - (10 + len(d) + 1) % 64
    d += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d


def _npz_with_raw(trees, name: str, raw_npy: bytes, compression=zipfile.ZIP_STORED) -> bytes:
    """An npz holding ``trees`` with member ``name``.npy replaced by ``raw_npy`` bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for k, v in trees.items():
            if k == name:
                zf.writestr(f"{k}.npy", raw_npy)
            else:
                b = io.BytesIO()
                np.save(b, v)
                zf.writestr(f"{k}.npy", b.getvalue())
    return buf.getvalue()


def _replace_member(
    path: Path, out: Path, name: str, data: bytes | None = None, *, compression=zipfile.ZIP_DEFLATED
) -> Path:
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    if data is not None:
        members[name] = data
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in members.items():
            kind = compression if n == name else zipfile.ZIP_DEFLATED
            zf.writestr(zipfile.ZipInfo(n, date_time=(2024, 1, 1, 0, 0, 0)), d, compress_type=kind)
    return out


def _patch_headers(
    path: Path, name: str, *, flags: int | None = None, file_size: int | None = None
) -> None:
    """Edit a member's flag bits or declared size in both its local header and its central
    directory entry."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(name).header_offset
        start = zf.start_dir
    pos = raw.index(b"PK\x01\x02", start)
    while True:
        n_len = struct.unpack_from("<H", raw, pos + 28)[0]
        if raw[pos + 46 : pos + 46 + n_len].decode() == name:
            break
        extra, comment = struct.unpack_from("<HH", raw, pos + 30)
        pos += 46 + n_len + extra + comment
    if flags is not None:
        struct.pack_into("<H", raw, local + 6, flags)
        struct.pack_into("<H", raw, pos + 8, flags)
    if file_size is not None:
        struct.pack_into("<L", raw, local + 22, file_size)
        struct.pack_into("<L", raw, pos + 24, file_size)
    path.write_bytes(bytes(raw))


def _refused(path: Path, pattern: str, error=ModelError, **kw) -> str:
    """Model.load refuses ``path`` with ``error`` whose message names the file and matches
    ``pattern``."""
    with pytest.raises(error) as e:
        Model.load(path, **kw)
    msg = str(e.value)
    assert str(path) in msg, msg
    assert re.search(pattern, msg), msg
    assert "\n" not in msg and len(msg) < 600, msg
    return msg


def _cli_argvs(path: Path, tmp_path: Path) -> list[list[str]]:
    """Commands that load a model: show it, score with it, register it and select targets with it
    (follow-up loop)."""
    db = str(tmp_path / "loop.db")
    return [
        ["models", "show", str(path)],
        [
            "score",
            str(tmp_path / "alerts.parquet"),
            "--model",
            str(path),
            "--out",
            str(tmp_path / "s.parquet"),
        ],
        ["followup", "register", str(path), "--production", "--db", db],
        [
            "followup",
            "select",
            "--scores",
            str(tmp_path / "scores.parquet"),
            "--model",
            str(path),
            "--db",
            db,
        ],
    ]


def _registered(tmp_path: Path) -> int:
    db = tmp_path / "loop.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM models").fetchone()[0]


def _cli_refuses(path: Path, pattern: str, tmp_path: Path, capsys) -> None:
    """Every command that loads the model exits 2 with one line naming the file (in-process CLI),
    and writes nothing (no score file, no registered model)."""
    for argv in _cli_argvs(path, tmp_path):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"earlyia {argv[0]}: error: {path}") and re.search(pattern, err), err
    assert not (tmp_path / "s.parquet").exists()
    assert _registered(tmp_path) == 0


# ---------------------------------------------------------------------------- bombs and forged
# headers
def _nested_bomb(out: Path, models, n_bytes: int) -> Path:
    """A model whose trees.npz (deflated) holds a deflated .npy of ``n_bytes`` of zeros with a
    truthful header."""
    _m, path = models["plain"]
    card, trees, _ = parts(path)
    n = n_bytes // 8
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in trees.items():
            if k != "value":
                zf.writestr(f"{k}.npy", npz_member(v))
        with zf.open("value.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((n,)))
            chunk = bytes(16 << 20)
            left = n * 8
            while left:
                f.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("card.json", json.dumps(card))
        zf.writestr("trees.npz", buf.getvalue())
    return out


@pytest.fixture(scope="module")
def nested_bomb(tmp_path_factory, models):
    """A file of a few kB that truthfully expands into 300 MB."""
    return _nested_bomb(tmp_path_factory.mktemp("bomb") / "bomb.eia", models, 300 << 20)


def _peak_bytes_while_refused(path: Path, pattern: str, **kw) -> int:
    tracemalloc.start()
    try:
        _refused(path, pattern, IntegrityError, **kw)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def npz_member(v) -> bytes:
    b = io.BytesIO()
    np.save(b, v)
    return b.getvalue()


def test_nested_zip_bomb_is_refused_before_it_is_read(nested_bomb):
    """A file of a few kB may expand into 64 MiB (200 times its size, at least 64 MiB): the bomb
    is refused from the declared size of its inner array, in well under a second, and never
    expands in memory; an explicit larger limit (a model one trusts) refuses it the same way."""
    size = nested_bomb.stat().st_size
    assert size < 20_000
    start = time.perf_counter()
    peak = _peak_bytes_while_refused(
        nested_bomb,
        rf"{nested_bomb}: member trees\.npz: member value\.npy declares 314,5\d\d,\d{{3}} "
        r"bytes, beyond the "
        rf"67,108,864-byte limit \(200 times the file's {size:,} bytes, at least 67,108,864\)",
    )
    assert time.perf_counter() - start < 1.0
    assert peak < 16 << 20, f"loading the bomb allocated {peak:,} bytes"
    peak = _peak_bytes_while_refused(
        nested_bomb,
        r"value\.npy declares [\d,]+ bytes, beyond the 268,435,456-byte limit",
        max_bytes=256 << 20,
    )
    assert peak < 16 << 20, f"loading the bomb allocated {peak:,} bytes"


def test_default_limit_grows_with_the_file_up_to_1_gib(monkeypatch):
    monkeypatch.delenv("EARLYIA_MODEL_MAX_BYTES", raising=False)
    assert modelfile.budget_for(56_000)[0] == 64 << 20
    assert modelfile.budget_for(1_000_000)[0] == 200_000_000
    assert modelfile.budget_for(10**9)[0] == GIB
    assert modelfile.budget_for(56_000, 5 * GIB) == (5 * GIB, "limit")
    monkeypatch.setenv("EARLYIA_MODEL_MAX_BYTES", "1000")
    assert modelfile.budget_for(10**9) == (1000, "limit")


def test_bomb_member_beyond_an_explicit_limit(tmp_path, models, monkeypatch):
    """A deflated member of 48 MiB of zeros, refused from its declared size under a 32 MiB limit
    (argument or environment), before reading it; the real model loads under a limit it fits in,
    and not under a smaller one."""
    _m, path = models["plain"]
    bomb = _replace_member(path, tmp_path / "outer.eia", "trees.npz", bytes(48 << 20))
    assert bomb.stat().st_size < 200_000
    _refused(
        bomb,
        r"member trees\.npz declares 50,331,648 bytes, beyond the 33,554,432-byte "
        r"limit.*EARLYIA_MODEL_MAX_BYTES",
        IntegrityError,
        max_bytes=32 << 20,
    )
    monkeypatch.setenv("EARLYIA_MODEL_MAX_BYTES", str(32 << 20))
    _refused(bomb, r"beyond the 33,554,432-byte limit", IntegrityError)
    assert Model.load(path).hash == _m.hash
    monkeypatch.setenv("EARLYIA_MODEL_MAX_BYTES", "2000")
    _refused(path, r"beyond the 2,000-byte limit", IntegrityError)
    assert (
        Model.load(path, max_bytes=10 << 20).hash == _m.hash
    )  # the argument wins over the environment
    monkeypatch.setenv("EARLYIA_MODEL_MAX_BYTES", "1 GB")
    with pytest.raises(ConfigError, match="EARLYIA_MODEL_MAX_BYTES must be a number of bytes"):
        Model.load(path)


def test_forged_member_size_is_refused_before_reading(tmp_path, models):
    """A member whose headers declare 4 GB from a few kB of deflate: more than deflate can
    produce."""
    _m, path = models["plain"]
    bad = _replace_member(path, tmp_path / "forged.eia", "trees.npz")
    _patch_headers(bad, "trees.npz", file_size=0xF0000000)
    _refused(
        bad,
        r"member trees\.npz declares 4,026,531,840 bytes from [\d,]+ compressed bytes, more "
        r"than deflate can produce",
        IntegrityError,
    )


def test_forged_npy_header_is_refused_before_allocation(tmp_path, models, capsys):
    """A .npy header declaring 10^12 values (8 TB) over a few bytes: refused, never allocated."""
    _m, path = models["plain"]
    card, trees, _ = parts(path)
    raw = _npy_header((10**12,)) + trees["value"].astype("<f8").tobytes()
    bad = tmp_path / "forged_npy.eia"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("card.json", json.dumps(card))
        zf.writestr("trees.npz", _npz_with_raw(trees, "value", raw))
    pattern = (
        r"member trees\.npz: array value: the \.npy header declares shape \(1000000000000,\) of "
        r"float64 \(8,000,000,000,000 bytes\)"
    )
    _refused(bad, pattern, IntegrityError)
    _cli_refuses(bad, "declares shape", tmp_path, capsys)
    # a header declaring fewer values than the member holds is refused as well
    raw = _npy_header((2,)) + trees["value"].astype("<f8").tobytes()
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("card.json", json.dumps(card))
        zf.writestr("trees.npz", _npz_with_raw(trees, "value", raw))
    _refused(
        bad, r"declares shape \(2,\) of float64 \(16 bytes\) but the member holds", IntegrityError
    )


@pytest.mark.parametrize(
    "case",
    ["bzip2", "encrypted", "comment", "many_members", "inner_many_members", "name_with_newline"],
)
def test_archives_a_model_is_never_written_as(tmp_path, models, case):
    _m, path = models["plain"]
    out = tmp_path / f"{case}.eia"
    if case == "bzip2":
        _replace_member(path, out, "trees.npz", compression=zipfile.ZIP_BZIP2)
        _refused(out, r"member trees\.npz uses compression method 12", IntegrityError)
    elif case == "encrypted":  # zipfile would raise RuntimeError("password required") on reading it
        _replace_member(path, out, "trees.npz")
        _patch_headers(out, "trees.npz", flags=0x1)
        _refused(out, r"member trees\.npz is encrypted", IntegrityError)
    elif case == "comment":
        _replace_member(path, out, "trees.npz")
        with zipfile.ZipFile(out, "a") as zf:
            zf.comment = b"hello"
        _refused(out, r"plain zip end record", IntegrityError)
    elif (
        case == "many_members"
    ):  # a directory of 100 000 entries is refused before zipfile parses it
        with zipfile.ZipFile(out, "w") as zf:
            for i in range(100_000):
                zf.writestr(f"{i}", b"")
        _refused(out, r"lists 100,000 members in a [\d,]+-byte directory", IntegrityError)
    elif case == "name_with_newline":  # would split the one-line error
        card, trees, _ = parts(path)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("card.json", json.dumps(card))
            zf.writestr("trees.npz", npz_bytes(trees))
            zf.writestr("x\nearlyia: all good", b"")
        _refused(
            out, r"member name 'x\\nearlyia: all good' is not a printable name", IntegrityError
        )
    else:
        card, trees, _ = parts(path)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for k, v in trees.items():
                zf.writestr(f"{k}.npy", npz_member(v))
            for i in range(5000):
                zf.writestr(f"x{i}.npy", b"")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("card.json", json.dumps(card))
            zf.writestr("trees.npz", buf.getvalue())
        _refused(out, r"trees\.npz: the archive lists 5,006 members", IntegrityError)


# ---------------------------------------------------------------------------- trees
def _internal_below_root(trees, tree=0):
    """An internal node of tree ``tree`` other than its root."""
    r = int(trees["roots"][tree])
    for c in (trees["left"][r], trees["right"][r]):
        if trees["feature"][c] >= 0:
            return int(c)
    raise AssertionError("tree 0 is too shallow")


def _root_with_internal_left(trees) -> int:
    return int(next(r for r in trees["roots"] if trees["feature"][trees["left"][r]] >= 0))


def _leaf(trees):
    return int(np.flatnonzero(trees["feature"] == -1)[0])


def _edit(case, t):
    """Apply a malicious edit to tree arrays ``t`` (copies); return the message pattern expected."""
    x = _internal_below_root(t)
    n = len(t["feature"])
    if (
        case == "cycle"
    ):  # the root's left child leads left back to the root: a row going left never leaves the tree
        r = _root_with_internal_left(t)
        t["left"][t["left"][r]] = r
        return rf"node {r} is reached 2 times .*a cycle"
    if case == "self_loop":
        t["right"][x] = x
        return rf"node {x} is reached 2 times"
    if case == "shared_between_trees":
        r1 = t["roots"][1]
        t["left"][r1] = t["left"][t["roots"][0]]
        return r"is reached 2 times .*shared"
    if (
        case == "unreachable_cycle"
    ):  # two extra internal nodes pointing at each other, reached from no root
        for k, v in (
            ("feature", [0, 0]),
            ("threshold", [0.0, 0.0]),
            ("left", [n + 1, n]),
            ("right", [n + 1, n]),
            ("value", [0.5, 0.5]),
        ):
            t[k] = np.concatenate([t[k], np.asarray(v, t[k].dtype)])
        return r"reached 2 times|lies on a cycle"
    if (
        case == "unreachable_cycle_one_parent_each"
    ):  # every node has exactly one parent, but two of them only each other
        a, b = n, n + 1  # a -> b -> a on the left, each with its own new leaf on the right
        for k, v in (
            ("feature", [0, 0, -1, -1]),
            ("threshold", [0.0, 0.0, -2.0, -2.0]),
            ("left", [b, a, -1, -1]),
            ("right", [n + 2, n + 3, -1, -1]),
            ("value", [0.5, 0.5, 0.5, 0.5]),
        ):
            t[k] = np.concatenate([t[k], np.asarray(v, t[k].dtype)])
        return rf"node {a} lies on a cycle that no root reaches"
    if case == "orphan_leaf":
        for k, v in (
            ("feature", -1),
            ("threshold", -2.0),
            ("left", -1),
            ("right", -1),
            ("value", 0.5),
        ):
            t[k] = np.concatenate([t[k], np.asarray([v], t[k].dtype)])
        return rf"node {n} belongs to no tree"
    if case == "child_out_of_range":
        t["left"][x] = n + 5
        return rf"node {x} points to left child {n + 5}, outside the {n} tree nodes"
    if case == "child_wraps_int32":  # 2**32 + c would become child c if cast without a check
        t["left"] = t["left"].astype(np.int64)
        t["left"][x] += 2**32
        return r"tree array 'left' holds 42949\d+, beyond int32"
    if case == "negative_root":
        t["roots"][0] = -3
        return r"tree 0 has root -3, outside"
    if case == "root_out_of_range":
        t["roots"][1] = n
        return rf"tree 1 has root {n}, outside"
    if case == "no_trees":
        t["roots"] = t["roots"][:0]
        return r"no trees"
    if case == "feature_out_of_range":
        t["feature"][x] = 3
        return rf"node {x} splits on feature 3, beyond the model's 3 features"
    if case == "feature_below_minus_one":
        t["feature"][x] = -7
        return rf"node {x} has feature -7"
    if case == "leaf_with_children":
        leaf = _leaf(t)
        t["left"][leaf] = 0
        return rf"leaf node {leaf} has a left child 0"
    if case == "threshold_nan":
        t["threshold"][x] = np.nan
        return rf"node {x} has threshold nan"
    if case in ("value_7.5", "value_nan", "value_-1"):
        leaf = _leaf(t)
        t["value"][leaf] = float(case.split("_")[1])
        return (
            rf"node {leaf} holds value {float(case.split('_')[1])}; a node's value is a "
            r"probability in \[0, 1\]"
        )
    if case == "two_dimensional":
        t["value"] = t["value"][:, None]
        return r"tree array 'value' has shape \(\d+, 1\)"
    if case == "float_children":
        t["left"] = t["left"].astype(np.float64)
        return r"tree array 'left' has dtype float64"
    if case == "unknown_array":
        t["payload"] = np.arange(3)
        return r"unknown arrays \['payload'\]"
    raise AssertionError(case)


TREE_CASES = [
    "cycle",
    "self_loop",
    "shared_between_trees",
    "unreachable_cycle",
    "unreachable_cycle_one_parent_each",
    "orphan_leaf",
    "child_out_of_range",
    "child_wraps_int32",
    "negative_root",
    "root_out_of_range",
    "no_trees",
    "feature_out_of_range",
    "feature_below_minus_one",
    "leaf_with_children",
    "threshold_nan",
    "value_7.5",
    "value_nan",
    "value_-1",
    "two_dimensional",
    "float_children",
    "unknown_array",
]


@pytest.mark.parametrize("case", TREE_CASES)
def test_crafted_trees_with_a_valid_hash_are_refused(tmp_path, models, case, capsys):
    _m, path = models["plain"]
    card, trees, _ = parts(path)
    t = {k: v.copy() for k, v in trees.items()}
    pattern = _edit(case, t)
    bad = write_model(tmp_path / f"{case}.eia", card, t)
    _refused(bad, r"member trees\.npz.*" + pattern if case != "unknown_array" else pattern)
    if case in ("cycle", "value_7.5", "value_nan", "child_wraps_int32"):
        _cli_refuses(bad, pattern, tmp_path, capsys)


def test_a_cyclic_tree_would_never_finish_scoring(models, tmp_path):
    """Why the structure is checked: the compiled loop walks the cycle forever (in a child
    process, killed after a few seconds), and the same arrays are refused."""
    _m, path = models["plain"]
    _card, trees, _ = parts(path)
    t = {k: v.copy() for k, v in trees.items()}
    _edit("cycle", t)
    arrays = tmp_path / "cycle.npz"
    np.savez(arrays, **t)
    script = (
        "import sys, numpy as np\n"
        "from earlyia.model.trees import _predict\n"
        "d = np.load(sys.argv[1])\n"
        "X = np.full((1, 3), -1e30)  # left at every node\n"
        "_predict(X, d['feature'], d['threshold'], d['left'], d['right'], d['value'], d['roots'])\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", script, str(arrays)], timeout=10, capture_output=True)
    from earlyia.model.trees import TreeEnsemble

    with pytest.raises(ModelError, match="cycle"):
        TreeEnsemble.from_arrays(t, 3)


def _random_forest(rng, n_trees=4, max_nodes=40):
    """Random proper trees in flat arrays, node indices shuffled (children may come before their
    parent)."""
    feature, left, right = [], [], []
    roots = []
    for _ in range(n_trees):
        roots.append(len(feature))
        todo = [len(feature)]
        feature.append(-1), left.append(-1), right.append(-1)
        while todo and len(feature) < len(roots) * max_nodes:
            i = todo.pop(int(rng.integers(len(todo))))
            if rng.random() < 0.7:
                feature[i], left[i], right[i] = int(rng.integers(3)), len(feature), len(feature) + 1
                for _ in range(2):
                    todo.append(len(feature))
                    feature.append(-1), left.append(-1), right.append(-1)
    n = len(feature)
    perm = rng.permutation(n) if rng.random() < 0.5 else np.arange(n)  # new index of each node
    f, lt, rt = (np.empty(n, np.int64) for _ in range(3))
    f[perm], lt[perm], rt[perm] = feature, left, right
    lt = np.where(lt >= 0, perm[np.maximum(lt, 0)], -1)
    rt = np.where(rt >= 0, perm[np.maximum(rt, 0)], -1)
    return f, lt, rt, perm[np.asarray(roots)]


def _proper_forest_slow(feature, left, right, roots) -> bool:
    """The obvious reference: walk every tree from its root; proper iff no node is met twice and
    every node is met."""
    seen = set()
    for r in roots:
        stack = [int(r)]
        while stack:
            i = stack.pop()
            if i in seen:
                return False
            seen.add(i)
            if feature[i] >= 0:
                stack += [int(left[i]), int(right[i])]
    return len(seen) == len(feature)


def test_structure_check_agrees_with_a_walk_of_every_tree():
    """Random forests (shuffled or not), each also with one child or root redirected at random:
    the vectorised check (fast path and pointer doubling) refuses exactly the forests a plain
    walk from the roots finds improper."""
    from earlyia.model.trees import _structure_problem

    rng = np.random.default_rng(11)
    outcomes = set()
    for _ in range(400):
        f, lt, rt, roots = _random_forest(rng, n_trees=int(rng.integers(1, 5)))
        internal = np.flatnonzero(f >= 0)
        if rng.random() < 0.8 and len(internal):
            i = int(rng.choice(internal))
            (lt if rng.random() < 0.5 else rt)[i] = int(rng.integers(len(f)))
        elif rng.random() < 0.5:
            roots = roots.copy()
            roots[int(rng.integers(len(roots)))] = int(rng.integers(len(f)))
        proper = _proper_forest_slow(f, lt, rt, roots)
        assert (_structure_problem(f, lt, rt, roots) is None) == proper, (f, lt, rt, roots)
        outcomes.add(proper)
    assert outcomes == {True, False}


# ---------------------------------------------------------------------------- calibration and
# curves
def _cal_edit(case, cal):
    if case == "isotonic_y_7.5":
        cal["y"] = cal["y"].copy()
        cal["y"][-1] = 7.5
        return r"probabilities outside \[0, 1\]"
    if case == "isotonic_x_nan":
        cal["x"] = cal["x"].copy()
        cal["x"][0] = np.nan
        return r"calibration array 'x' must be a vector of finite numbers"
    if case == "isotonic_x_decreasing":
        cal["x"] = cal["x"][::-1].copy()
        return r"not monotone"
    if case == "isotonic_y_decreasing":
        cal["y"] = cal["y"][::-1].copy()
        return r"not monotone"
    if case == "sigmoid_nan":
        cal["ab"] = np.array([np.nan, 0.0])
        return r"calibration array 'ab' must be a vector of finite numbers"
    if case == "sigmoid_three":
        cal["ab"] = np.array([1.0, 2.0, 3.0])
        return r"two numbers a, b"
    if case == "unknown_method":
        cal["method"] = np.array("magic")
        return r"names no known calibration method"
    if case == "evidence_x_nan":
        cal["x"] = cal["x"].copy()
        cal["x"][1] = np.nan
        return r"knots are not all finite"
    if case == "evidence_y_7.5":
        cal["y"] = cal["y"].copy()
        cal["y"][0] = 7.5
        return r"probabilities outside \[0, 1\]"
    if case == "evidence_not_monotone":
        k = int(cal["lengths"][0])
        cal["y"] = cal["y"].copy()
        cal["y"][:k] = np.linspace(0.9, 0.1, k)
        return r"stratum 0 \(evidence >= 1\) is not monotone"
    if case == "evidence_edges":
        cal["edges"] = cal["edges"][::-1].copy()
        return r"edges .* do not increase"
    if case == "evidence_prevalence":
        cal["prevalence"] = np.array([1.5])
        return r"prevalence must be one fraction"
    if case == "evidence_lengths":
        cal["lengths"] = cal["lengths"].copy()
        cal["lengths"][0] += 1
        return r"inconsistent lengths"
    if case == "evidence_feature":
        cal["feature"] = np.array("nope")
        return r"the calibration reads feature 'nope', which the model does not have"
    raise AssertionError(case)


CAL_CASES = {
    "isotonic": [
        "isotonic_y_7.5",
        "isotonic_x_nan",
        "isotonic_x_decreasing",
        "isotonic_y_decreasing",
        "unknown_method",
    ],
    "sigmoid": ["sigmoid_nan", "sigmoid_three"],
    "evidence": [
        "evidence_x_nan",
        "evidence_y_7.5",
        "evidence_not_monotone",
        "evidence_edges",
        "evidence_prevalence",
        "evidence_lengths",
        "evidence_feature",
    ],
}


@pytest.mark.parametrize(("kind", "case"), [(k, c) for k, cs in CAL_CASES.items() for c in cs])
def test_crafted_calibration_with_a_valid_hash_is_refused(tmp_path, models, kind, case, capsys):
    _m, path = models[kind]
    card, trees, cal = parts(path)
    cal = dict(cal)
    pattern = _cal_edit(case, cal)
    bad = write_model(tmp_path / f"{case}.eia", card, trees, cal)
    _refused(bad, pattern)
    if case in ("isotonic_y_7.5", "sigmoid_nan"):
        _cli_refuses(bad, pattern, tmp_path, capsys)


def test_calibration_card_and_file_must_agree(tmp_path, models):
    _m, path = models["isotonic"]
    card, trees, cal = parts(path)
    _refused(
        write_model(tmp_path / "a.eia", {**card, "calibration": None}, trees, cal),
        r"card entry 'calibration' says None but the file holds a 'isotonic' calibration map",
    )
    _refused(
        write_model(tmp_path / "b.eia", card, trees, None),
        r"card entry 'calibration' says 'isotonic' but the file holds no",
    )


def _curve_edit(case, card):
    c = card["operating_curves"][0]
    if case == "tpr_above_one":
        c["tpr"][-1] = 1.5
        return r"rates \(tpr, fpr\) outside \[0, 1\]"
    if case == "fpr_negative":
        c["fpr"][0] = -0.2
        return r"outside \[0, 1\]|not monotone"
    if case == "not_monotone":
        c["threshold"] = c["threshold"][::-1]
        return r"not monotone"
    if case == "threshold_text":
        c["threshold"][0] = "high"
        return r"malformed operating curve"
    if case == "prevalence_zero":
        c["prevalence"] = 0.0
        return r"prevalence strictly between 0 and 1"
    if case == "point_without_n":
        del card["operating_points"][0]["max_detections"]
        return r"card entry 'operating_points\[0\]\.max_detections' must be a positive integer"
    if case == "point_threshold_text":
        card["operating_points"][0]["threshold"] = "x"
        return r"operating_points\[0\]\.threshold' must be a number or null"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "tpr_above_one",
        "fpr_negative",
        "not_monotone",
        "threshold_text",
        "prevalence_zero",
        "point_without_n",
        "point_threshold_text",
    ],
)
def test_crafted_operating_curves_are_refused(tmp_path, models, case):
    _m, path = models["evidence"]
    card, trees, cal = parts(path)
    pattern = _curve_edit(case, card)
    _refused(write_model(tmp_path / f"{case}.eia", card, trees, cal), pattern)


# ---------------------------------------------------------------------------- card.json
def _card_text(card) -> str:
    return json.dumps(card, indent=1)


@pytest.mark.parametrize(
    "case",
    [
        "list",
        "string",
        "features_longer",
        "features_shorter",
        "n_features_text",
        "duplicate_features",
        "extractor_list",
        "nan",
        "infinity",
        "huge_integer",
        "deeply_nested",
        "nested_100",
        "selection_unknown_key",
        "selection_unknown_rule",
        "gate_kind",
        "type_map_positive",
        "training_ids_text",
        "not_utf8",
    ],
)
def test_crafted_cards_are_refused(tmp_path, models, case, capsys):
    _m, path = models["plain"]
    card, trees, _ = parts(path)
    text = None
    rehash = True
    if case == "list":
        text, pattern = json.dumps([card]), r"card\.json holds a JSON list, not an object"
    elif case == "string":
        text, pattern = json.dumps("model"), r"card\.json holds a JSON str, not an object"
    elif case == "features_longer":
        card["features"] = [*NAMES, "f_d"]
        pattern = r"card entry 'n_features' is 3 but the card lists 4 features"
    elif case == "features_shorter":  # consistent card, but the trees split on a third feature
        card["features"], card["n_features"] = NAMES[:2], 2
        card["extractor"] = {**card["extractor"], "names": NAMES[:2]}
        pattern = r"member trees\.npz: node \d+ splits on feature 2, beyond the model's 2 features"
    elif case == "n_features_text":
        card["n_features"] = "three"
        pattern = r"card entry 'n_features' is 'three'"
    elif case == "duplicate_features":
        card["features"] = ["f_a", "f_a", "f_c"]
        pattern = r"card entry 'features' repeats feature name\(s\) \['f_a'\]"
    elif case == "extractor_list":
        card["extractor"] = ["toy"]
        pattern = r"card entry 'extractor' must be the extractor configuration"
    elif case in ("nan", "infinity"):  # JSON extensions Python accepts; a card's numbers are finite
        rehash = False
        text = _card_text(card).replace(
            '"n_trees": 12', '"n_trees": NaN' if case == "nan" else '"n_trees": 1e999'
        )
        pattern = (
            r"card\.json is corrupted \((NaN is not a number a card may hold|1e999 is beyond the "
            r"range of floats)"
        )
    elif (
        case == "huge_integer"
    ):  # Python refuses to parse integers of more than 4300 digits (ValueError)
        rehash = False
        text = _card_text(card).replace('"n_trees": 12', '"n_trees": 1' + "0" * 5000)
        pattern = r"card\.json is corrupted"
    elif case == "deeply_nested":  # json.loads would raise RecursionError
        rehash = False
        text = _card_text(card).replace(
            '"lineage": {}', '"lineage": ' + "[" * 100_000 + "]" * 100_000
        )
        pattern = r"card\.json is nested too deeply"
    elif case == "nested_100":  # shallow enough for json, hashed: refused by the depth limit
        deep: list = []
        for _ in range(100):
            deep = [deep]
        card["lineage"] = {"x": deep}
        pattern = r"card\.json is nested more than 64 levels deep"
    elif case == "selection_unknown_key":
        card["selection"] = {"max_ndethist": 5, "shell": "rm -rf /"}
        pattern = (
            r"card entry 'selection' sets \['shell'\], which the 'early' selection does not take"
        )
    elif case == "selection_unknown_rule":
        card["selection"] = {"rule": "magic"}
        pattern = r"card entry 'selection\.rule' is 'magic'"
    elif case == "gate_kind":
        card["gate"] = {"kind": "evil", "min_slope_sig": 3.0, "min_points": 3}
        pattern = r"card entry 'gate\.kind' is 'evil'"
    elif case == "type_map_positive":
        card["type_map"] = {"positive": 5}
        pattern = r"card entry 'type_map\.positive' must list type names"
    elif case == "training_ids_text":
        card["training"]["object_ids"] = "ZTF1"
        pattern = r"card entry 'training\.object_ids' must be a list"
    else:
        pattern = r"card\.json is corrupted \('utf-8' codec can't decode"
    if case == "not_utf8":
        bad = tmp_path / "not_utf8.eia"
        with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(
                "card.json", _card_text(card).replace('"toy"', '"to\xffy"').encode("latin-1")
            )
            zf.writestr("trees.npz", npz_bytes(trees))
    else:
        bad = write_model(tmp_path / f"{case}.eia", card, trees, rehash=rehash, card_text=text)
    _refused(bad, pattern)
    if case in ("list", "features_longer", "nan", "deeply_nested", "huge_integer"):
        _cli_refuses(bad, "is corrupted" if case == "nan" else pattern, tmp_path, capsys)


def test_card_larger_than_its_cap_is_refused(tmp_path, models):
    """A valid card padded to 70 MB of whitespace (its hash still matches): beyond the 64 MiB
    card cap, refused from its declared size; a larger limit, given for a model one trusts,
    raises the cap with it."""
    m, path = models["plain"]
    card, trees, _ = parts(path)
    arrays = {f"trees/{k}": v for k, v in trees.items()}
    card["hash"] = content_hash(card, arrays)
    text = json.dumps(card)[:-1] + " " * (70 << 20) + "}"
    bad = write_model(tmp_path / "huge_card.eia", card, trees, rehash=False, card_text=text)
    assert bad.stat().st_size < 200_000
    _refused(
        bad,
        r"member card\.json declares 73,\d{3},\d{3} bytes; a card is at most 67,108,864 bytes",
        IntegrityError,
    )
    assert Model.load(bad, max_bytes=2 * GIB).hash == m.hash  # cap 128 MiB


# ---------------------------------------------------------------------------- through the command
# line, in a child process
def test_cli_refuses_bad_models_in_one_line_without_traceback(tmp_path, models, nested_bomb):
    """The real ``earlyia`` command in a child process: exit 2, one line naming the file, no
    traceback."""
    _m, path = models["plain"]
    card, trees, _ = parts(path)
    cyc = {k: v.copy() for k, v in trees.items()}
    _edit("cycle", cyc)
    leaf = {k: v.copy() for k, v in trees.items()}
    _edit("value_7.5", leaf)
    forged = tmp_path / "forged_npy.eia"
    with zipfile.ZipFile(forged, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("card.json", json.dumps(card))
        zf.writestr("trees.npz", _npz_with_raw(trees, "value", _npy_header((10**12,)) + b"\0" * 64))
    bad = {
        nested_bomb: "limit",
        forged: "declares shape",
        write_model(tmp_path / "cycle.eia", card, cyc): "cycle",
        write_model(tmp_path / "leaf.eia", card, leaf): "holds value 7.5",
        write_model(
            tmp_path / "list.eia", card, trees, rehash=False, card_text="[1, 2]"
        ): "not an object",
    }
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    for i, (model, words) in enumerate(
        bad.items()
    ):  # each command once (in process, every command sees every file)
        argv = _cli_argvs(model, tmp_path)[i % 4]
        proc = subprocess.run(
            [sys.executable, "-m", "earlyia.cli.main", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        err = proc.stderr.strip()
        assert proc.returncode == 2, (argv, err)
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert str(model) in err and words in err, err
    assert _registered(tmp_path) == 0


# ---------------------------------------------------------------------------- real models are
# unchanged
def _slow_proba(model: Model, X: np.ndarray) -> np.ndarray:
    """P(positive) by walking every tree in Python, then the calibration map: the obvious
    reference."""
    e = model.ensemble
    X = (
        X.astype(np.float32).astype(np.float64)
        if model.card["classifier"].get("input_dtype") == "float32"
        else X
    )
    raw = np.empty(len(X))
    for i, x in enumerate(X):
        total = 0.0
        for r in e.roots:
            node = int(r)
            while e.feature[node] >= 0:
                node = int(
                    e.left[node] if x[e.feature[node]] <= e.threshold[node] else e.right[node]
                )
            total += e.value[node]
        raw[i] = total / e.n_trees
    cal = model.calibration
    if not cal:
        return raw
    method = str(np.asarray(cal["method"]).reshape(-1)[0])
    if method == "isotonic":
        return np.interp(raw, cal["x"], cal["y"])
    if method == "sigmoid":
        a, b = cal["ab"]
        return 1.0 / (1.0 + np.exp(a * raw + b))
    ev = model.evidence_calibration()
    return ev.apply(raw, X[:, model.features.index(ev.feature)])


@pytest.mark.parametrize("kind", ["plain", "isotonic", "sigmoid", "evidence"])
def test_real_models_load_and_score_identically(models, kind, tmp_path):
    m, path = models[kind]
    loaded = Model.load(path)
    assert loaded.hash == m.hash and loaded.card == m.card
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3))
    if kind == "evidence":
        X[:, 2] = rng.integers(0, 20, size=200)
    np.testing.assert_array_equal(loaded.predict_proba(X), m.predict_proba(X))
    np.testing.assert_allclose(
        loaded.predict_proba(X)[:, 1], _slow_proba(loaded, X), rtol=0, atol=1e-12
    )
    # the operating curves and thresholds a card carries are still read
    if kind == "evidence":
        assert loaded.operating_curves() and loaded.threshold(10, 0.5)["efficiency"] >= 0
    # and the CLI shows it
    assert main(["models", "show", str(path)]) == 0


def test_finks_pinned_forest_loads_and_scores_identically(tmp_path):
    src = shared("anchor_models_fink/default-model_sigmoid.obj.xz")
    fink = Model.from_fink(src)
    path = fink.save(tmp_path / "fink.eia")
    loaded = Model.load(path)
    assert loaded.hash == fink.hash and loaded.ensemble.n_trees == 1000
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(300, 12))) * rng.choice([0.1, 1, 10, 100], size=(300, 12))
    np.testing.assert_array_equal(loaded.predict_proba(X), fink.predict_proba(X))
    np.testing.assert_allclose(
        loaded.predict_proba(X[:20])[:, 1], _slow_proba(loaded, X[:20]), rtol=0, atol=1e-12
    )


def test_budget_counts_members_then_arrays(models):
    """The budget a real model uses: its members, then the arrays inside trees.npz (documented in
    docs/scoring.md)."""
    _m, path = models["plain"]
    with zipfile.ZipFile(path) as zf:
        members = sum(i.file_size for i in zf.infolist())
        inner = zipfile.ZipFile(io.BytesIO(zf.read("trees.npz")))
        arrays = sum(i.file_size for i in inner.infolist())
    Model.load(path, max_bytes=members + arrays)
    with pytest.raises(IntegrityError, match="limit"):
        Model.load(path, max_bytes=members + arrays - 1)
    assert modelfile.DEFAULT_MAX_BYTES == GIB
