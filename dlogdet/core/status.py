"""What a result's ``status`` says: one enum whose members carry their cause and the remedy.

A number that came back degraded is not an error: the method finished and the caller decides what to do with it
(as lineax's ``RESULTS``). Each member is a ``str`` (``Status.OK == "ok"``), so comparisons with the old spellings
and JSON output are unchanged; ``status.cause`` and ``status.remedy`` are the text a user reads:

    >>> r = dlogdet.logdet(A, method="slq")  # doctest: +SKIP
    >>> if r.status is not Status.OK:  # doctest: +SKIP
    ...     print(f"{r.status}: {r.status.cause}; {r.status.remedy}")
"""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """Status of a :class:`dlogdet.LogdetResult`: ``OK`` or the reason the number is degraded.

    Attributes
    ----------
    cause : str
        What happened, in the user's terms (empty for ``OK``).
    remedy : str
        What to change to get an ``OK`` result (empty for ``OK``).
    """

    cause: str
    remedy: str

    def __new__(cls, value: str, cause: str = "", remedy: str = "") -> Status:
        """A member: its value (the old string spelling), its cause and its remedy."""
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.cause = cause
        obj.remedy = remedy
        return obj

    OK = "ok"
    SINGULAR = ("singular",
                "the matrix is singular to working precision: a pivot (or an atom of the decompressed spectrum at "
                "zero) is exactly zero, so det = 0 and log|det| = -inf",
                "add a diagonal shift d= (jitter) if the matrix should be positive definite")
    UNCONVERGED = ("unconverged",
                   "the error bar did not reach the tolerance before max_probes or max_steps stopped the iteration",
                   "raise max_probes / max_steps, loosen rtol, or add a Nystrom preconditioner (precondition=rank)")
    UNVALIDATED = ("unvalidated",
                   "no held-out check of the chosen window and order fitted inside the subsample, so the model "
                   "error in the band is the fit's own spread, not a measured one",
                   "use a larger n_sub or window='auto'")
    SCALING_LAW_REJECTED = ("scaling-law-rejected",
                            "the increments bend in log-log more than any member of the scaling-law family can "
                            "follow (|t| >= 2 and a slope change >= 100% across the window); the estimate is capped "
                            "by the monotone bound, and the band holds the candidates' spread and the Box-Cox "
                            "probe's distance, not an error that none of them shows",
                            "use a larger n_sub, or compare with family='boxcox'")
    RTOL_NOT_REACHED = ("rtol-not-reached",
                        "the extrapolation's band is wider than rtol asked, and narrowing it (more or larger "
                        "subsamples) would cost more than the exact factorization",
                        "use method='exact' for this accuracy (or extrapolate with fallback='exact'), or loosen rtol")
    RANK_BOUNDARY = ("rank-boundary",
                     "a layer of the model runs out of new directions between n_sub and n_total points, so the "
                     "curve bends beyond the subsample where no fit inside it can see",
                     "use n_sub beyond the boundary's points, or keep family='auto' (the Box-Cox probe)")
    SUPPORT_BELOW_ZERO = ("support-below-zero",
                          "the decompressed spectrum reaches below zero, where log is undefined: log det is NaN",
                          "add a positive shift d=, or use a larger n0 or other degrees=")
    MASS_OFF = ("mass-off",
                "the decompressed density integrates to more than 1% away from 1: the fitted curve is off",
                "use more samples=, a larger n0, or other degrees=")

    @property
    def ok(self) -> bool:
        """True for :attr:`OK`."""
        return self is Status.OK

    def describe(self) -> str:
        """``"ok"``, or ``"<status>: <cause>; <remedy>"``: one line for a person."""
        return self.value if self.ok else f"{self.value}: {self.cause}; {self.remedy}"

    @classmethod
    def coerce(cls, value: str | Status) -> Status:
        """The member for ``value`` (a member or its string), or a ``ValueError`` naming the members."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown status {value!r}: one of {', '.join(m.value for m in cls)}") from None
