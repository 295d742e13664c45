"""Who is in the phantom cohort: demographics, genotype, group, sessions and doses.

Everything is drawn from ``numpy.random.default_rng([seed, index])`` so a subject does not
change when the cohort grows, and the same seed always gives the same cohort.

>>> cohort = make_cohort(n_subjects=6, seed=3, with_sessions=True)
>>> [s.group for s in cohort]
['HC', 'CLBP', 'KOA', 'HC', 'CLBP', 'KOA']
>>> cohort[-1].has_pet
False
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GROUPS = ("HC", "CLBP", "KOA")
# Fraction of HAB specific binding per rs6971 genotype (docs/phantom.md): LAB sites bind
# PBR28 ~55-fold less (Ki 188 vs 3.4 nM, Owen et al. 2010; genotype: Owen et al. 2012), MAB
# carry half of each site: 0.5 + 0.5/55. The nondisplaceable part (free and nonspecific uptake,
# ``ND_SUV``) does not depend on genotype, so LAB images are flat. ND_SUV: BPND 1.6 in HAB
# grey matter (Paul et al. 2019) gives a nondisplaceable fraction 1/2.6 of GM SUV 1.0.
GENOTYPE_FACTOR = {"HAB": 1.0, "MAB": 0.51, "LAB": 0.02}
ND_SUV = 0.38
GENOTYPE_P = {"HAB": 0.5, "MAB": 0.4, "LAB": 0.1}


@dataclass(frozen=True)
class PhantomSession:
    label: str | None
    weight_kg: float
    dose_mbq: float
    retest: float          # session-to-session SUV factor
    pose_seed: int
    scan_start: str
    injection_lead_s: float = 0.0  # injection this long before TimeZero, the scan start
    head_motion: bool = False      # the head moves in the PET scanner 70 min after injection


@dataclass(frozen=True)
class PhantomSubject:
    label: str
    index: int
    group: str
    genotype: str
    age: int
    sex: str
    weight_kg: float
    subject_factor: float
    severity: float        # 0 for controls; scales the group's regional increases
    has_pet: bool
    sessions: tuple[PhantomSession, ...] = field(default=())
    weight_source: str = "participants.tsv"  # where this subject's weight is recorded

    @property
    def specific_binding(self) -> float:
        return GENOTYPE_FACTOR[self.genotype]


def _n_sessions(index: int, group: str, with_sessions: bool) -> int:
    if not with_sessions or group == "HC":
        return 1
    if group == "CLBP":
        return 2
    return 1 + (index // 3) % 3  # KOA: 1, 2, 3 sessions in turn


def make_cohort(n_subjects: int, seed: int, with_sessions: bool = True,
                genotypes: tuple[str, ...] = tuple(GENOTYPE_P)) -> list[PhantomSubject]:
    """The cohort; ``genotypes`` restricts the rs6971 draw (e.g. ``("HAB", "MAB")``: LABs
    excluded at screening, as [11C]PBR28 studies do), the other draws unchanged.

    >>> sorted({s.genotype for s in make_cohort(12, seed=24, genotypes=("HAB", "MAB"))})
    ['HAB', 'MAB']
    """
    allowed = [g for g in GENOTYPE_P if g in genotypes]
    if not allowed:
        raise ValueError(f"no known genotype in {genotypes}")
    prob = np.array([GENOTYPE_P[g] for g in allowed]) / sum(GENOTYPE_P[g] for g in allowed)
    width = max(2, len(str(n_subjects)))
    cohort = []
    for i in range(n_subjects):
        rng = np.random.default_rng([seed, i])
        group = GROUPS[i % len(GROUPS)]
        genotype = str(rng.choice(allowed, p=prob))
        if i < 2 and {"HAB", "MAB"} <= set(allowed):  # both binder types even in tiny cohorts
            genotype = ("HAB", "MAB")[i]
        weight = float(np.clip(rng.normal(75, 12), 50, 120))
        has_pet = not (n_subjects > 1 and i == n_subjects - 1)  # last subject: MRI only
        n_ses = _n_sessions(i, group, with_sessions)
        weight_source = ("sessions.tsv" if n_ses > 1
                         else "sidecar" if i % 4 == 1 else "participants.tsv")
        sessions = []
        for k in range(n_ses):
            sessions.append(PhantomSession(
                label=f"{k + 1:02d}" if with_sessions else None,
                weight_kg=round(weight + (rng.normal(0, 1.5) if k else 0.0), 1),
                dose_mbq=float(rng.uniform(333, 555)),  # 9-15 mCi
                retest=float(np.exp(rng.normal(0, 0.06))) if k else 1.0,
                pose_seed=int(rng.integers(2**31)),
                scan_start=f"{8 + int(rng.integers(0, 8)):02d}:{int(rng.integers(0, 60)):02d}:00",
                # later sessions: another site's convention, TimeZero at the scan start with
                # the injection 1-2.5 min before it, frames decay corrected to the scan start
                injection_lead_s=(float(np.random.default_rng([seed, i, k, 1]).integers(60, 150))
                                  if k else 0.0),
                head_motion=k == 0 and i % 2 == 1,  # every other subject's first PET
            ))
        cohort.append(PhantomSubject(
            label=f"{i + 1:0{width}d}", index=i, group=group, genotype=genotype,
            age=int(rng.integers(22, 72)), sex=str(rng.choice(["F", "M"])),
            weight_kg=round(weight, 1),
            subject_factor=float(np.exp(rng.normal(0, 0.12))),
            severity=0.0 if group == "HC" else float(rng.uniform(0.6, 1.4)),
            has_pet=has_pet, sessions=tuple(sessions), weight_source=weight_source,
        ))
    return cohort
