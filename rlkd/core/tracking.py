"""``--track``: mirror a run to Weights & Biases (CleanRL's ``--track``), offline by default.

The TensorBoard event files stay the record; every scalar the loop logs is also logged to W&B
(a run listener, not ``sync_tensorboard``, which would copy event files into the run folder where
``rlkd report`` would read them twice), with the config. Without network it writes
``<run>/wandb/offline-run-*``; ``wandb sync <that folder>`` uploads it later. A resumed run
continues its W&B run; steps it logs again after a resume are dropped by W&B (its steps only
grow). ``WANDB_MODE=online`` (with ``wandb login``) streams instead. wandb is an optional extra:
``pip install 'rlkd[track]'``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from rlkd.errors import UserError


def start(path: Any, config: dict[str, Any], project: str) -> Any:
    """Start (or, for a resumed run, continue) the W&B run of run folder ``path``; returns it."""
    try:
        import wandb
    except ImportError:
        raise UserError("--track needs Weights & Biases: pip install 'rlkd[track]' (or wandb)") from None
    # One W&B run per run folder: the name alone repeats (trial-0 of every study, --run-dir r).
    digest = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:10]
    return wandb.init(
        project=project, name=path.name, id=f"{path.name[-50:]}-{digest}", resume="allow", config=config,
        dir=str(path), mode=os.environ.get("WANDB_MODE", "offline"),
    )  # fmt: skip
