"""Logging for a run: one line per message on stderr, full detail in ``OUTPUT_DIR/logs``.

The console handler never prints tracebacks (user errors are one line); the file handler
keeps everything at DEBUG level, tracebacks included. Each run also writes its exact command
line and its :class:`~bids_tspo.app.config.Config` next to its log.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path

from .config import Config

LOGGER_NAME = "bids_tspo"


class _NoTracebackFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def run_id(config: Config) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{config.analysis_level}_{stamp}_{socket.gethostname()}_{os.getpid()}"


def setup_logging(verbose: int = 0, config: Config | None = None,
                  worker: bool = False) -> Path | None:
    """Configure the ``bids_tspo`` logger; with a config, also a per-run log file.

    ``worker``: a ``--nprocs`` worker process: its own log file (the pid is in the name), no
    command-line/config copies, and only warnings on the console (the main process reports
    each session). Returns the log file path (or None). Safe to call more than once.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_bids_tspo", False):
            logger.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose > 1 else
                     logging.WARNING if worker else logging.INFO)
    console.setFormatter(_NoTracebackFormatter("%(asctime)s bids_tspo %(levelname)s: %(message)s",
                                               "%H:%M:%S"))
    console._bids_tspo = True
    logger.addHandler(console)
    if config is None:
        return None
    logs = config.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    rid = run_id(config)
    log_file = logs / f"bids_tspo_{rid}.log"
    file_handler = logging.FileHandler(log_file)
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(logging.Formatter(
        "%(asctime)s %(name)s %(levelname)s [%(process)d]: %(message)s"))
    file_handler._bids_tspo = True
    logger.addHandler(file_handler)
    if not worker:
        (logs / f"bids_tspo_{rid}_cmd.txt").write_text(" ".join(config.command_line) + "\n")
        (logs / f"bids_tspo_{rid}_config.json").write_text(config.to_json() + "\n")
    logger.debug("log file %s", log_file)
    return log_file
