"""The agent as a LangGraph `StateGraph`.

    write -> assemble -> render -> embed -> judge -> finish
                           ^                   |
                           |                   v  (verdict not ok, attempts left)
                           +--- [assemble] <- escape

- `write`: the writer drafts a description from the idea (`expand`), or refines it (chat text).
- `assemble`: each description's exact chat-sequence ids (token budget kept).
- `render`: the image backend renders each sequence with its seeds; images saved with provenance
  and recorded in the history store.
- `embed`, `judge`: image vectors and the rut detector's verdict (skipped with ruts off).
- `escape`: the next step of the escape ladder (`agent.escape`); new descriptions go through
  `assemble` again, render levers (noise, layer, seeds) go straight to `render`.
- `finish`: the final verdict, and the most varied attempt when attempts ran out.

In chat the graph does not end: `finish` leads to `await_user`, which pauses with LangGraph's
`interrupt()` until the person's next command resumes it (`Command(resume=...)`): text -> `write`
(refine), `/vary` and `/shorter` -> `escape`, `/undo` -> `undo`, `/seed` `/size` `/layer` `/lora`
`/vary subtle|strong` -> `apply_setting` -> `render`, `/pick N` `/unpick` -> `pick` (no render).
A picked image (`AgentState.knobs.init`) is the image-to-image start of every later render.

State is `agent.state.AgentState` (data only; `graph_state` keeps its growing lists as deltas);
the parts travel as the run context (`agent.nodes.AgentContext`, LangGraph's `Runtime.context`).
`build_graph()` returns the uncompiled graph: compile it with the checkpointer that fits (none in
tests, SQLite for sessions).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated, Any, Literal

from zit_agent.agent import nodes
from zit_agent.agent.state import GROWS, AgentState, grow_batch

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

    from zit_agent.agent.nodes import AgentContext

STEPS_PER_ATTEMPT = 6  # supersteps one attempt takes at most (escape, assemble, render, ...)


def build_graph() -> StateGraph:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(graph_state(), context_schema=nodes.AgentContext)
    graph.add_node("write", nodes.write)
    graph.add_node("assemble", nodes.assemble)
    graph.add_node("render", nodes.render)
    graph.add_node("embed", nodes.embed)
    graph.add_node("judge", nodes.judge)
    graph.add_node("escape", nodes.escape_step)
    graph.add_node("finish", nodes.finish)
    graph.add_node("await_user", nodes.await_user)
    graph.add_node("apply_setting", nodes.apply_setting)
    graph.add_node("undo", nodes.undo)
    graph.add_node("pick", nodes.pick)

    graph.add_edge(START, "write")
    graph.add_edge("write", "assemble")
    graph.add_edge("assemble", "render")
    graph.add_conditional_edges("render", after_render, ["embed", "finish"])
    graph.add_edge("embed", "judge")
    graph.add_conditional_edges("judge", after_judge, ["escape", "finish"])
    graph.add_conditional_edges("escape", after_escape, ["assemble", "render"])
    graph.add_conditional_edges("finish", after_finish, ["await_user", END])
    graph.add_conditional_edges(
        "await_user", after_command, ["write", "escape", "undo", "apply_setting", "pick"]
    )
    graph.add_edge("pick", "await_user")
    graph.add_edge("apply_setting", "render")
    graph.add_edge("undo", "await_user")
    return graph


@functools.cache
def graph_state() -> type[AgentState]:
    """`AgentState` as the graph keeps it: each list marked `GROWS` is a LangGraph `DeltaChannel`
    (beta in LangGraph 1.2) with `state.grow` as its reducer, so a checkpoint stores the items a
    step added (its writes), the whole list only every 100th update. Built here, not in
    `agent.state`, so reading state imports no LangGraph."""
    from langgraph.channels import DeltaChannel
    from pydantic import Field, create_model

    grown = {
        name: (Annotated[field.annotation, DeltaChannel(grow_batch)], Field(default_factory=list))
        for name, field in AgentState.model_fields.items()
        if GROWS in field.metadata
    }
    return create_model("GraphState", __base__=AgentState, __module__=__name__, **grown)


# -- routers -------------------------------------------------------------------------------------
def after_render(state: AgentState) -> Literal["embed", "finish"]:
    return "embed" if state.ruts and not state.error else "finish"


def after_judge(state: AgentState) -> Literal["escape", "finish"]:
    return "escape" if nodes.should_escape(state) else "finish"


def after_escape(state: AgentState) -> Literal["assemble", "render"]:
    return "assemble" if any(not shot.sequence_ids for shot in state.shots) else "render"


def after_finish(state: AgentState) -> str:
    from langgraph.graph import END

    return "await_user" if state.chat else END


def after_command(
    state: AgentState,
) -> Literal["write", "escape", "undo", "apply_setting", "pick"]:
    from zit_agent.agent import commands

    command = state.command
    if isinstance(command, commands.Pick):  # `/pick N`, `/unpick`: no render
        return "pick"
    if isinstance(command, commands.Text):
        return "write"
    if isinstance(command, commands.Escape):
        return "escape"
    if isinstance(command, commands.Undo):
        return "undo"
    return "apply_setting"


# -- running -------------------------------------------------------------------------------------
def run_config(state: AgentState, thread_id: str | None = None) -> dict[str, Any]:
    """LangGraph run config: the thread (for checkpointed runs) and a recursion limit that fits
    the attempt limit."""
    config: dict[str, Any] = {"recursion_limit": STEPS_PER_ATTEMPT * (state.max_attempts + 2) + 10}
    if thread_id is not None:
        config["configurable"] = {"thread_id": thread_id}
    return config


def run_agent(
    initial: AgentState,
    context: AgentContext,
    *,
    checkpointer: Any = None,
    thread_id: str | None = None,
) -> AgentState:
    """Run the automatic (non-chat) loop to the end and return the final state."""
    app = build_graph().compile(checkpointer=checkpointer)
    return state_of(app.invoke(initial, run_config(initial, thread_id), context=context))


def state_of(result: dict[str, Any]) -> AgentState:
    """The `AgentState` of what `invoke` returned (LangGraph adds keys such as `__interrupt__`)."""
    return AgentState.model_validate({k: v for k, v in result.items() if not k.startswith("__")})
