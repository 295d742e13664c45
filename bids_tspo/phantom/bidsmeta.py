"""BIDS metadata of the phantom that the validator asks for: the sidecars of the truth maps
(the session's truth record lives in the ``desc-true`` one: BIDS has no name for a JSON file
without an image, and the validator ignores a nested derivative's ``.bidsignore``), the links
of the truth dataset to the raw one, and ``sessions.json``.

>>> truth_sidecar_path(Path("t/sub-01/ses-01"), "sub-01_ses-01").as_posix()
't/sub-01/ses-01/pet/sub-01_ses-01_space-T1w_desc-true_pet.json'
>>> sorted(truth_sidecar("true", "sub-01_ses-01", Path("sub-01/ses-01"), {"a": 1}))
['Description', 'PhantomTruth', 'SkullStripped', 'SpatialReference', 'Units']
"""

from __future__ import annotations

from pathlib import Path

TRUTH_LINKS = {"DatasetLinks": {"raw": "../../"}}  # derivatives/phantom-truth -> the dataset
SESSIONS_JSON = {"body_weight": {"Description": "body weight at the PET session",
                                 "Units": "kg"}}
DESCRIPTIONS = {
    "true": "noise-free SUV of the phantom on the T1w grid (the truth record of the session "
            "is in PhantomTruth)",
    "truesmooth": "the noise-free SUV at PET resolution (Gaussian blur), on the T1w grid",
}


def truth_sidecar_path(session_dir: Path, name: str) -> Path:
    """The sidecar of the session's ``desc-true`` map, which holds its truth record."""
    return Path(session_dir) / "pet" / f"{name}_space-T1w_desc-true_pet.json"


def truth_sidecar(desc: str, name: str, rel: Path, record: dict | None = None) -> dict:
    """Sidecar of a truth map ``desc`` (``true`` with the record, ``truesmooth``) of session
    ``name`` whose raw T1w is in ``rel/anat`` (the grid of the map)."""
    meta = {"Description": DESCRIPTIONS[desc], "Units": "g/mL", "SkullStripped": False,
            "SpatialReference": f"bids:raw:{(Path(rel) / 'anat' / f'{name}_T1w.nii.gz').as_posix()}"}
    return meta | ({"PhantomTruth": record} if record is not None else {})
