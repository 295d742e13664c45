"""Participant-level preprocessing with ANTs: :mod:`.anat` (T1w), :mod:`.pet` (SUV) and the
per-session orchestration in :mod:`.session`."""

from .session import preprocess_session

__all__ = ["preprocess_session"]
