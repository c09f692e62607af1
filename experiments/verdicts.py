"""Three-way verdicts on a claim, shared by the paper's study and the stability study.

A claim is reduced to one or more *effects*: numbers that are positive when a run shows what
the claim says, each with an uncertainty (a standard error, or a bootstrap interval). Each
effect says whether it is `defined` (has an uncertainty), `shown` (clearly above 0) and
`contradicted` (clearly below 0). A claim *agrees* when every effect is shown, *contradicts*
when one is contradicted, and is *not shown* otherwise; the run's power is stated as the effect
it would show with 80% probability, `DETECTABLE_SE` standard errors (2 SE for the criterion plus
0.84 SE, the one-sided 80% normal quantile).
"""

AGREES, CONTRADICTS, NOT_SHOWN = "agrees", "contradicts", "not shown"
NOT_MEASURED = "not measured"
DETECTABLE_SE = 2.8


def detectable(se):
    """The effect a criterion of 2 SE shows with 80% probability, at standard error `se`."""
    return DETECTABLE_SE * se


def three_way(effects, undefined=NOT_SHOWN):
    """AGREES, CONTRADICTS or NOT_SHOWN for `effects` (objects with `defined`, `shown` and
    `contradicted`); `undefined` when any effect has no uncertainty."""
    if not all(effect.defined for effect in effects):
        return undefined
    if any(effect.contradicted for effect in effects):
        return CONTRADICTS
    return AGREES if all(effect.shown for effect in effects) else NOT_SHOWN
