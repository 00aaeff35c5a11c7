import math

import pytest

from sola.core.stats import format_difference, format_mean_std, mean_std, paired_difference, t_quantile_975


def test_paired_difference_by_hand():
    treated, control = [0.52, 0.50, 0.55], [0.50, 0.49, 0.51]
    result = paired_difference(treated, control)
    diffs = [0.02, 0.01, 0.04]
    mean = sum(diffs) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = 4.303 * std / math.sqrt(3)
    assert result["mean"] == pytest.approx(mean) and result["std"] == pytest.approx(std)
    assert (result["low"], result["high"]) == pytest.approx((mean - half, mean + half))
    assert format_difference(result) == f"+{100 * mean:.1f} [{100 * (mean - half):+.1f}, {100 * (mean + half):+.1f}]"


def test_one_seed_says_n1():
    assert format_mean_std(mean_std([0.5])) == "50.0 (n=1)"
    assert format_difference(paired_difference([0.5], [0.4])) == "+10.0 (n=1)"
    assert math.isnan(paired_difference([0.5], [0.4])["low"])


def test_t_quantiles():
    assert t_quantile_975(1) == 12.706 and t_quantile_975(8) == 2.306 and t_quantile_975(100) == 1.960
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_verdict_wording():
    from sola.core.stats import verdict

    helps = paired_difference([0.52, 0.51, 0.54], [0.50, 0.49, 0.51])
    assert helps["low"] > 0
    assert verdict(helps) == f"SoLa helps: {format_difference(helps)} (3 pairs)"
    hurts = paired_difference([0.50, 0.49, 0.51], [0.52, 0.51, 0.54])
    assert verdict(hurts) == f"SoLa hurts: {format_difference(hurts)} (3 pairs)"
    null = paired_difference([0.52, 0.48, 0.50], [0.50, 0.50, 0.50])
    assert null["low"] < 0 < null["high"]
    assert verdict(null) == f"no measurable difference: {format_difference(null)} (3 pairs)"
    same = paired_difference([0.5, 0.4], [0.5, 0.4])  # the identity kept: zero on every seed
    assert verdict(same) == "no measurable difference: +0.0 [+0.0, +0.0] (2 pairs)"
    one = verdict(paired_difference([0.5], [0.4]), "unified")
    assert one.startswith("one seed cannot tell: unified +10.0 (n=1") and "3 or more seeds" in one
