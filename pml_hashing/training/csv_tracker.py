"""An Accelerate tracker that appends metrics to a CSV file (no extra dependency)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from accelerate.tracking import GeneralTracker


class CSVTracker(GeneralTracker):
    """Writes ``metrics.csv`` (long format: ``step,name,value``) and ``hparams.json``.

    Long format because the set of logged names changes during a run (validation every few
    epochs, target-code updates), which a wide CSV header cannot follow.
    """

    name = "csv"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | Path):
        super().__init__()
        self.run_name = run_name
        self.directory = Path(logging_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "metrics.csv"
        self._file = None

    @property
    def tracker(self):
        return self._file

    def start(self):
        self.directory.mkdir(parents=True, exist_ok=True)  # a fresh run may have cleared it
        new = not self.path.exists()
        self._file = self.path.open("a", newline="")
        if new:
            csv.writer(self._file).writerow(["step", "name", "value"])

    def store_init_configuration(self, values: dict):
        (self.directory / "hparams.json").write_text(json.dumps(values, indent=2, default=str))

    def log(self, values: dict, step: int | None = None, **kwargs):
        if self._file is None:
            self.start()
        writer = csv.writer(self._file)
        for name, value in values.items():
            writer.writerow(["" if step is None else step, name, value])
        self._file.flush()

    def finish(self):
        if self._file is not None:
            self._file.close()
            self._file = None
