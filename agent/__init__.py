"""zit-agent: the flow (LangGraph graph, state, nodes), the CLI and the settings."""

__version__ = "0.1.0"
