"""A phantom session's raw PET next to its truth on the PET grid, for scoring the PET
quantification (SUV, frame realignment) where it happens, before any coregistration.

>>> from bids_tspo.phantom import example_dataset
>>> pet = session_pet(example_dataset(), "sub-01_ses-01")
>>> pet.data.ndim, bool(pet.inside.any()), pet.truth["subject"]["label"]
(4, True, '01')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..io.derivatives import session_record
from ..model.grid import apply, grid_points, sample
from .bidsmeta import truth_sidecar_path
from .writer import load_truth


@dataclass(frozen=True)
class SessionPet:
    data: np.ndarray       # the 4D PET as stored (Bq/mL)
    affine: np.ndarray
    sidecar: dict
    truth: dict            # the session's truth record
    expected: np.ndarray   # true SUV (PET resolution) sampled on the PET grid, 3D
    inside: np.ndarray     # PET voxels well inside the true brain

    def r(self, suv: np.ndarray) -> float:
        """Pearson r of an SUV map on the PET grid with the truth, inside the brain."""
        return float(np.corrcoef(np.asarray(suv)[self.inside], self.expected[self.inside])[0, 1])


def session_pet(bids: Path, name: str, tracer: str = "PBR28") -> SessionPet:
    """The PET of session ``name`` (``sub-<l>_ses-<s>``) of a phantom dataset and its truth."""
    session = session_record(name)
    sub, ses = session.subject, session.session
    truth_dir = Path(bids) / "derivatives" / "phantom-truth" / f"sub-{sub}" / f"ses-{ses}"
    truth = load_truth(truth_sidecar_path(truth_dir, name))
    pet_dir = Path(bids) / f"sub-{sub}" / f"ses-{ses}" / "pet"
    img = nib.load(pet_dir / f"{name}_trc-{tracer}_pet.nii.gz")
    data = np.asarray(img.dataobj, np.float32)
    smooth = nib.load(truth_dir / "pet" / f"{name}_space-T1w_desc-truesmooth_pet.nii.gz")
    mask = nib.load(truth_dir / "anat" / f"{name}_desc-brain_mask.nii.gz")
    points = apply(np.asarray(truth["pet_to_t1w_world"]), grid_points(data.shape[:3], img.affine))
    expected = sample(np.asarray(smooth.dataobj, np.float32), smooth.affine, points)
    inside = sample(np.asarray(mask.dataobj, np.float32), smooth.affine, points) > 0.99
    return SessionPet(data, img.affine,
                      json.loads((pet_dir / f"{name}_trc-{tracer}_pet.json").read_text()), truth,
                      expected.reshape(data.shape[:3]), inside.reshape(data.shape[:3]))
