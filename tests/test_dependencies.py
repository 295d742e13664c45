"""Declared dependencies match what the code needs: ANTs seeding fails loudly where it cannot
work, and the versions that make it work (and scikit-learn, imported by the splits) are
required in pyproject.toml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bids_tspo.errors import EXIT_FAILURE, BidsTspoError
from bids_tspo.preprocess.anat import seed_ants

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _requirements() -> dict[str, str]:
    block = PYPROJECT.read_text().split("\ndependencies = [", 1)[1].split("\n]", 1)[0]
    deps = re.findall(r'^\s*"([^"]+)"', block, flags=re.MULTILINE)
    return {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower(): d for d in deps}


def test_seed_reaches_ants_registration(monkeypatch):
    import ants

    monkeypatch.setattr(ants.config, "_random_seed", None)
    seed_ants(7)
    assert ants.config._random_seed == 7
    source = Path(ants.registration.__code__.co_filename).read_text()
    assert "ants.config._random_seed" in source and '"--random-seed"' in source


def test_ants_without_seeding_fails_loudly(monkeypatch):
    import ants

    monkeypatch.delattr(ants.config, "_random_seed")
    with pytest.raises(BidsTspoError, match=r"cannot seed its registrations .* "
                                            r"install antspyx>=0\.6\.2") as err:
        seed_ants(7)
    assert err.value.exit_code == EXIT_FAILURE


def test_pins_and_imports_declared():
    reqs = _requirements()
    assert reqs["antspyx"] == "antspyx>=0.6.2"  # ants.config._random_seed appeared in 0.6.2
    assert "scikit-learn" in reqs
    package = Path(__file__).resolve().parents[1] / "bids_tspo"
    uses_sklearn = [p.name for p in package.rglob("*.py") if "sklearn" in p.read_text()]
    assert uses_sklearn == ["splits.py"]
