"""Types, not strings: the Status enum and the typed diagnostics behind every result.

Statuses compare equal to their old strings and say their cause and remedy; diagnostics are frozen dataclasses of
each method that still read as the mappings they replaced (``[]``, ``get``, ``in``, ``dict``, JSON, pickling).
"""

from __future__ import annotations

import copy
import json
import pickle
import warnings

import numpy as np
import pytest

import dlogdet
from dlogdet.core.diagnostics import ABSENT, Diagnostics, ExactDiagnostics, Record, record
from dlogdet.core.errors import DlogdetDeprecationWarning
from dlogdet.core.status import Status

OLD_SPELLINGS = ["ok", "singular", "unconverged", "unvalidated", "scaling-law-rejected", "rank-boundary",
                 "support-below-zero", "mass-off"]
ADDED = ["rtol-not-reached"]        # extrapolate's rtol= that the subsamples could not reach within the exact cost


def test_status_members_are_the_old_strings_with_cause_and_remedy():
    assert sorted(m.value for m in Status) == sorted(OLD_SPELLINGS + ADDED)
    for m in Status:
        assert m == m.value and Status(m.value) is m and f"{m}" == m.value and json.dumps(m) == f'"{m.value}"'
        assert (m.cause == "" and m.remedy == "") if m is Status.OK else (len(m.cause) > 20 and len(m.remedy) > 10)
        assert pickle.loads(pickle.dumps(m)) is m
    assert Status.OK.ok and not Status.SINGULAR.ok
    assert Status.UNCONVERGED.describe().startswith("unconverged: the error bar")


def test_a_result_turns_a_status_string_into_its_member_and_refuses_others():
    r = dlogdet.LogdetResult(logdet=1.0, sign=1.0, method="slq", n=2, dtype="float64", status="unconverged")
    assert r.status is Status.UNCONVERGED and r.status == "unconverged"
    assert r.to_dict()["status"] == "unconverged" and type(r.to_dict()["status"]) is str
    assert "status='unconverged'" in repr(r)
    with pytest.raises(ValueError, match="unknown status 'meh': one of ok, singular"):
        dlogdet.LogdetResult(logdet=1.0, sign=1.0, method="slq", n=2, dtype="float64", status="meh")


def test_exact_result_has_typed_diagnostics_that_read_as_a_mapping():
    r = dlogdet.logdet(np.diag(np.arange(1.0, 101.0)), block_size=40)
    dg = r.diagnostics
    assert isinstance(dg, ExactDiagnostics)
    assert dg.block_size == dg["block_size"] == dg.get("block_size") == 40 and "block_size" in dg
    assert dg.n_panels == 3 and dg.mode == "memory"
    # a store-mode field of an in-memory run: not recorded, so not a key
    assert dg.scratch is ABSENT and "scratch" not in dg and dg.get("scratch") is None
    with pytest.raises(KeyError):
        dg["scratch"]
    plain = dict(dg)
    assert "scratch" not in plain and plain["n_tasks"] == dg.n_tasks and len(dg) == len(plain)
    assert json.loads(r.to_json())["diagnostics"]["block_size"] == 40
    with pytest.raises(dataclasses_frozen()):
        dg.block_size = 3
    for clone in (pickle.loads(pickle.dumps(r)).diagnostics, copy.deepcopy(dg)):
        assert type(clone) is ExactDiagnostics and dict(clone).keys() == plain.keys()
    assert "block_size=40" in repr(dg) and "scratch" not in repr(dg)


def dataclasses_frozen():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_keys_without_a_field_are_kept_and_a_plain_mapping_becomes_the_methods_type():
    r = dlogdet.LogdetResult(logdet=0.0, sign=1.0, method="exact", n=1, dtype="float64",
                             diagnostics={"block_size": 8, "a_new_key": [1, 2]})
    assert isinstance(r.diagnostics, ExactDiagnostics)
    assert r.diagnostics["a_new_key"] == [1, 2] and r.diagnostics.extra == {"a_new_key": [1, 2]}
    assert dict(r.diagnostics) == {"block_size": 8, "a_new_key": [1, 2]}
    other = dlogdet.LogdetResult(logdet=0.0, sign=1.0, method="no-such-method", n=1, dtype="float64",
                                 diagnostics={"x": 1})
    assert type(other.diagnostics) is Diagnostics and other.diagnostics["x"] == 1
    added = r.diagnostics.replace(auto={"method": "exact", "reason": "test"})
    assert added.auto["reason"] == "test" and added["a_new_key"] == [1, 2] and "auto" not in r.diagnostics


@pytest.mark.parametrize("method, kwargs, cls", [
    ("slq", {"seed": 0, "d": 0.5}, "SLQDiagnostics"),
    ("nystrom", {"rank": 10, "d": 0.5}, "NystromDiagnostics"),
    ("freedecomp", {"n0": 100, "seed": 0, "degrees": (1, 2)}, "FreeDecompDiagnostics"),
    ("extrapolate", {"n_sub": 40, "seed": 0, "d": 0.5}, "ExtrapolateDiagnostics"),
])
def test_each_method_returns_its_own_diagnostics_type(method, kwargs, cls):
    g = np.random.default_rng(0).standard_normal((200, 400))
    r = dlogdet.logdet(g @ g.T / 400, method=method, **kwargs)          # a Wishart: Marchenko-Pastur, ratio 1/2
    assert type(r.diagnostics).__name__ == cls
    for key in r.diagnostics:                                  # every recorded key: a field or an extra
        assert key in r.diagnostics and r.diagnostics[key] is not ABSENT
    assert json.loads(r.to_json())["method"] == method
    rows = dict(r.rows())
    assert rows["logdet" if method != "extrapolate" else "logdet (estimate)"] == repr(r.logdet)


def test_renamed_keys_of_a_record_warn_and_read_the_new_key():
    @record
    class Thing(Record):
        RENAMED = {"old": "new"}
        new: int

    t = Thing(new=3)
    assert "old" in t and list(t) == ["new"]
    with pytest.warns(DlogdetDeprecationWarning, match="'old' is renamed 'new'"):
        assert t["old"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert t["new"] == 3
    with pytest.raises(TypeError, match="has no field 'other'"):
        Thing.from_mapping({"new": 1, "other": 2})
