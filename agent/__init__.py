"""The flow: the run API, the LangGraph graph, its state and nodes, the escape ladder, rut
detection, history, sessions and the CLI. Imports `zit_agent` (the core layer), `backends` and
`prompts`; nothing below imports it."""
