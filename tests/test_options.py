"""Every registered method refuses options that are not its own, before any work, naming those it takes.

One row per method of :data:`dlogdet.estimators.REGISTRY` (a new method without a row fails
``test_every_method_has_a_row``): the options it needs to run, and an option of another method that it must refuse.
"""

from __future__ import annotations

import numpy as np
import pytest

import dlogdet
from dlogdet import estimators
from dlogdet.core.errors import InputError

#: method -> (options it needs, a foreign option, a method that takes that option)
ROWS = {
    "exact": ({}, {"rtol": 0.01}, "slq"),
    "slq": ({"seed": 0}, {"scratch": "somewhere"}, "exact"),
    "nystrom": ({"rank": 5, "d": 0.1}, {"resume": False}, "exact"),
    "freedecomp": ({"n0": 40}, {"scratch": "somewhere"}, "exact"),
    "auto": ({}, {"n0": 40}, "freedecomp"),
    "extrapolate": ({"n_sub": 20}, {"max_probes": 10}, "slq"),
}


class Untouchable(dlogdet.TileSource):
    """A source whose tiles must never be read: a refused option has to fail before any work."""

    shape = (60, 60)
    dtype = np.dtype(np.float64)
    symmetric = True

    def block(self, rows, cols):
        raise AssertionError("a tile was read although the options were refused")


def test_every_method_has_a_row():
    assert set(ROWS) == set(estimators.REGISTRY), "add a row for the new method to ROWS"


@pytest.mark.parametrize("method", sorted(ROWS))
def test_foreign_option_is_refused_before_any_work(method):
    needs, foreign, owner = ROWS[method]
    (key,) = foreign
    with pytest.raises(InputError) as err:
        dlogdet.logdet(Untouchable(), method=method, **needs, **foreign)
    msg = str(err.value)
    assert f"method {method!r} does not take {key}=" in msg
    assert f"{key}= is an option of method" in msg and repr(owner) in msg
    takes = estimators.options_of(method)
    assert key not in takes and f"it takes {', '.join(takes)}" in msg
    for k in needs:
        assert k in takes


@pytest.mark.parametrize("method", ["slq", "nystrom", "freedecomp"])
@pytest.mark.parametrize("option", ["scratch", "resume", "backend"])
def test_out_of_core_options_are_not_silently_ignored(method, option):
    # these three took scratch=, resume= (and backend=) and ignored them; freedecomp uses backend=
    if method == "freedecomp" and option == "backend":
        assert "backend" in estimators.options_of("freedecomp")
        return
    needs = ROWS[method][0]
    with pytest.raises(InputError, match=f"does not take {option}="):
        dlogdet.logdet(Untouchable(), method=method, **needs, **{option: None})


def test_an_unknown_option_is_named_with_no_owner():
    with pytest.raises(InputError, match=r"method 'exact' does not take frobnicate=; it takes assume, t, d"):
        dlogdet.logdet(np.eye(3), frobnicate=1)


def test_options_passed_on_are_taken():
    # extrapolate and auto pass the options of the methods they call
    assert {"scratch", "resume", "backend", "progress"} <= set(estimators.options_of("extrapolate"))
    assert {"scratch", "precondition", "max_steps"} <= set(estimators.options_of("auto"))
    r = dlogdet.logdet(np.eye(40) * 2.0, method="auto", precondition=4, backend="numpy")
    assert r.logdet == pytest.approx(40 * np.log(2.0)) and r.diagnostics["auto"]["method"] == "exact"


def test_freedecomp_refuses_block_size_and_budget():
    with pytest.raises(InputError, match="block_size= does not apply"):
        dlogdet.logdet(Untouchable(), method="freedecomp", n0=40, block_size=20)
