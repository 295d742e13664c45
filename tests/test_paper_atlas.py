"""The paper's atlas (its Table 3): Harvard-Oxford subcortical with Cerebral White Matter,
Cerebral Cortex and Lateral Ventricle, lateralised, built offline, on the template actually
used, and its region tables beside the combined atlas's."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_tspo.evaluation.regions import _labels_on
from bids_tspo.io.atlases import PAPER_REGIONS, harvard_oxford, paper_atlas
from bids_tspo.io.spaces import resolve_template

# the paper's Table 3, as printed
TABLE_3 = ["Left Cerebral White Matter", "Left Cerebral Cortex", "Left Lateral Ventricle",
           "Left Thalamus", "Left Caudate", "Left Putamen", "Left Pallidum", "Brain-Stem",
           "Left Hippocampus", "Left Amygdala", "Left Accumbens", "Right Cerebral White Matter",
           "Right Cerebral Cortex", "Right Lateral Ventricle", "Right Thalamus",
           "Right Caudate", "Right Putamen", "Right Pallidum", "Right Hippocampus",
           "Right Amygdala", "Right Accumbens"]


@pytest.fixture(scope="module")
def atlas():
    img, names = paper_atlas()
    return img, np.asarray(img.dataobj), names


def test_the_21_regions_of_table_3_lateralised(atlas):
    img, labels, names = atlas
    assert [n.replace("_", " ") for n in names.values()] == TABLE_3
    assert list(names) == list(range(1, 22)) and set(np.unique(labels)) == set(range(22))
    cm3 = {n: (labels == i).sum() / 1000 for i, n in names.items()}  # 1 mm voxels
    # rebuilt cortex and white matter: hemisphere-sized (508 / 237 cm³ on the left)
    assert 400 < cm3["Left_Cerebral_Cortex"] < 600 and 180 < cm3["Left_Cerebral_White_Matter"] < 320
    for name in names.values():
        if name.startswith("Left_"):
            right = cm3[name.replace("Left_", "Right_")]
            assert 0.8 < cm3[name] / right < 1.25, name
            assert cm3[name] > 0.5, name
    x = nib.affines.apply_affine(img.affine, np.argwhere(labels > 0))[:, 0]
    side = labels[labels > 0]
    left = np.isin(side, [i for i, n in names.items() if n.startswith("Left_")])
    right = np.isin(side, [i for i, n in names.items() if n.startswith("Right_")])
    # sides split at the midline (the shipped cortical and subcortical labels reach 2 mm over)
    assert x[left].max() <= 2 and x[right].min() >= -2
    assert (x[left] < 0).mean() > 0.98 and (x[right] > 0).mean() > 0.98


def test_agrees_with_the_shipped_harvard_oxford_labels(atlas):
    _, labels, names = atlas
    combined_img, combined_names = harvard_oxford()
    combined = np.asarray(combined_img.dataobj)
    ids = {n: i for i, n in combined_names.items()}
    for index, name in names.items():
        if name in ids:  # the 17 structures of both: Dice 0.83 (pallidum) .. 0.99
            a, b = labels == index, combined == ids[name]
            assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.8, name
    cortical = [i for i, n in combined_names.items() if n not in PAPER_REGIONS]
    cortex = np.isin(labels, [2, 13])
    assert np.isin(combined[cortex], cortical).mean() > 0.9  # 0.93


def test_on_the_template_actually_used_its_tissues_land_right(atlas):
    """Nearest-neighbour on the template's 2 mm grid: every label kept, large regions within
    15 % of their volume; the template's T1w is brightest in the white matter, then cortex,
    darkest in the ventricles."""
    _, labels, names = atlas
    t1_img, mask_img = resolve_template(2).load()
    on, _ = _labels_on(mask_img, paper_atlas)
    assert set(np.unique(on)) == set(range(22))
    voxel = float(np.prod(mask_img.header.get_zooms()[:3]))
    for index, name in names.items():
        fine = (labels == index).sum()
        if fine > 5000:
            assert (on == index).sum() * voxel == pytest.approx(fine, rel=0.15), name
    t1 = np.asarray(t1_img.dataobj, np.float32)
    for side in ("Left", "Right"):
        mean = {n: t1[on == i].mean() for i, n in names.items() if n.startswith(side)}
        assert (mean[f"{side}_Cerebral_White_Matter"] > mean[f"{side}_Cerebral_Cortex"]
                > mean[f"{side}_Lateral_Ventricle"])


def test_group_level_writes_the_paper_atlas_tables(grouped):
    regions = pd.read_csv(grouped / "group_paper_regions.tsv", sep="\t")
    stats = pd.read_csv(grouped / "group_paper_region_stats.tsv", sep="\t")
    assert set(regions.region) <= set(PAPER_REGIONS)
    assert {"Left_Cerebral_White_Matter", "Right_Cerebral_Cortex"} <= set(stats.region)
    assert len(stats) == regions.region.nunique() and "n_subjects" in stats
    sidecar = json.loads((grouped / "group_paper_regions.json").read_text())
    assert "paper's atlas" in sidecar["region"]["Description"]
    combined = pd.read_csv(grouped / "group_regions.tsv", sep="\t")
    assert "Left_Cerebral_White_Matter" not in set(combined.region)  # the other atlas, beside
