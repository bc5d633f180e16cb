"""zit-agent: a local prompt-writing agent for Z-Image-Turbo.

This folder (`core/` in the repository) is the package root `zit_agent` and its bottom layer:
errors, atomic files, settings and the table of defaults, chat sequences and token assembly, the
axis vocabulary, the option declarations. It imports nothing from `zit_agent.backends`,
`zit_agent.agent` or `zit_agent.evals` (the import contract in pyproject.toml, checked in CI).
"""

__version__ = "0.2.0"
