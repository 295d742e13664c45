"""bids_tspo: synthetic TSPO ([11C]PBR28) PET from T1-weighted MRI, as a BIDS-App."""

__version__ = "0.1.0"
CODE_URL = "https://github.com/bids-tspo/bids_tspo"
CITATION = (
    "Ferrante M, Inglese M, Brusaferri L, Toschi N and Loggia ML (2025) Generation of synthetic "
    "TSPO PET maps from structural MRI images. Front. Neuroinform. 19:1633273. "
    "doi:10.3389/fninf.2025.1633273"
)
