"""The run configuration: one frozen dataclass built once by :mod:`bids_tspo.app.cli`.

It is passed explicitly to every stage (no module-level state) and written next to the logs
of each run so that a run can be reproduced from its outputs.

>>> from pathlib import Path
>>> cfg = Config(bids_dir=Path("/data"), output_dir=Path("/out"), analysis_level="group",
...              work_dir=Path("/work"))
>>> cfg.folds, cfg.target, cfg.suv_window
(5, 'minmax', (60.0, 90.0))
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Config:
    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    bids_filters: dict = field(default_factory=dict)  # --bids-filter-file (bids_tspo.io.filters)
    model: Path | None = None
    folds: int = 5
    fold: int | None = None
    splits: Path | None = None
    epochs: int = 50
    batch_size: int = 2
    lr: float = 1e-4
    image_size: int = 96
    seed: int = 42
    continue_training: bool = False  # extend complete folds trained for fewer epochs
    learn_deviation: bool = False  # population map as input + output prior (model/prior.py)
    deviation_loss: float = 0.0  # deviation term's W, 0 without learn_deviation (model/loss.py)
    target: str = "minmax"
    suvr_reference: str = "wholebrain"
    suv_window: tuple[float, float] = (60.0, 90.0)
    group_column: str = "group"
    genotype_column: str = "tspo_genotype"
    device: str = "auto"
    compile: bool = False
    precision: str = "auto"  # synthesis arithmetic: auto | fp32 | bf16 (bids_tspo.model.infer)
    nprocs: int = 1
    omp_nthreads: int | None = None  # None: share the CPUs out (bids_tspo.app.parallel)
    sloppy: bool = False
    skip_bids_validation: bool = False
    reports_only: bool = False
    clean_workdir: bool = False
    verbose: int = 0
    command_line: tuple[str, ...] = field(default=(), compare=False)

    @property
    def logs_dir(self) -> Path:
        return self.output_dir / "logs"

    def to_dict(self) -> dict:
        """JSON-serialisable view (paths as strings)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
