"""Training loops. Each agent module exposes the same small protocol used by the CLI:

``CONFIG`` (a :class:`rlkd.config.TrainConfig` subclass), ``PRESETS`` (name -> field overrides),
``label(cfg) -> str`` (run-folder label), ``train(cfg, run, checkpoint)`` and
``load_policy(run, checkpoint, device)`` returning an object with
``act(obs, first, deterministic) -> actions``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rlkd.errors import UserError

# agent name -> module; diswm is the Dreamer loop with the teacher-distillation switch on.
AGENTS = {
    "ppo": "rlkd.agents.ppo",
    "dreamer": "rlkd.agents.dreamer",
    "diswm": "rlkd.agents.dreamer",
    # Offline action-free pretraining is a run like any other (resume, report), driven by `rlkd pretrain`.
    "pretrain": "rlkd.pretrain",
}


def agent_module(name: str) -> ModuleType:
    """Import the module that implements agent ``name``."""
    if name not in AGENTS:
        import difflib

        close = difflib.get_close_matches(name, list(AGENTS), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown agent {name!r}{hint} (known: {', '.join(AGENTS)})")
    return importlib.import_module(AGENTS[name])
