"""Installs `zit_plugin_example` as a distribution with entry points (a dist-info folder on
`sys.path`), as `pip install` of a plugin package would, and clears zit's registry caches."""

from __future__ import annotations

import pytest

ENTRY_POINTS = """\
[zit_agent.image_backends]
flat = tests.plugin.zit_plugin_example:load_flat

[zit_agent.embedders]
mean-colour = tests.plugin.zit_plugin_example:load_mean_colour

[zit_agent.levers]
far-seeds = tests.plugin.zit_plugin_example:FAR_SEEDS
"""


@pytest.fixture
def plugin_installed(tmp_path, monkeypatch):
    from zit_agent.agent import levers
    from zit_agent.backends import registry

    dist = tmp_path / "site" / "zit_plugin_example-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: zit-plugin-example\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry.registered.cache_clear()
    levers.registered.cache_clear()
    yield
    registry.registered.cache_clear()
    levers.registered.cache_clear()
