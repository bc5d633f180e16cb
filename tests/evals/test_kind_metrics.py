"""Eval metrics from the rut kinds: identity rut rate and shot entropy per configuration."""

from __future__ import annotations

from tests.agent.test_rut_kinds import seen
from zit_agent.evals.metrics import aggregate, kind_figures


def test_kind_figures_read_identity_ruts_and_shot_entropy():
    same = kind_figures([seen(0, height=90)] * 4)
    assert same == {"identity_rut": 1.0, "shot_entropy": 0.0}
    varied = kind_figures([seen(i, height=h) for i, h in enumerate([240, 140, 90, 20])])
    assert varied["identity_rut"] == 0.0 and varied["shot_entropy"] == 2.0
    assert kind_figures([seen(None)] * 4) == {"identity_rut": None, "shot_entropy": None}


def test_aggregate_reports_the_identity_rut_rate_per_configuration():
    groups = {
        "base": {"a": {"identity_rut": 1.0}, "b": {"identity_rut": 1.0}},
        "vary": {"a": {"identity_rut": 0.0}, "b": {"identity_rut": 1.0}},
    }
    out = aggregate(groups, "base")
    assert out["base"]["identity_rut_rate"]["interval"]["mean"] == 1.0
    assert out["vary"]["identity_rut_rate"]["interval"]["mean"] == 0.5
    assert out["vary"]["identity_rut_rate"]["vs_baseline"]["mean"] == -0.5
    assert "shot_entropy" in out["vary"]
