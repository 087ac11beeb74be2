"""The demo formulary: forty drugs with synthetic NDCs in every 10-digit layout.

An NDC is labeler-product-package. On packages it is printed as 10 digits in one of three
layouts (4-4-2, 5-3-2, 5-4-1); billing and most eMARs use the 11-digit 5-4-2 form, made by
left-padding the short segment with a zero. The inventory system speaks NDC-10 with dashes and
the eMAR speaks NDC-11 without, so the hub has to map between them.

The drug names are real generic names; every NDC here is synthetic and refers to no product.
Doses are multiples of 0.25 (or whole numbers), which binary floating point holds exactly, so
dose totals summed in any order by any component come out identical.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

LAYOUTS = ("4-4-2", "5-3-2", "5-4-1")


@dataclass(frozen=True)
class Drug:
    """One formulary entry as both demo systems know it."""

    ndc10: str
    name: str
    strength: str
    dose_uom: str
    routes: tuple[str, ...]
    doses: tuple[float, ...]

    @property
    def layout(self) -> str:
        """The 10-digit segment layout, e.g. ``4-4-2``."""
        return "-".join(str(len(segment)) for segment in self.ndc10.split("-"))

    @property
    def ndc11(self) -> str:
        """The 11-digit 5-4-2 form without dashes."""
        return ndc10_to_ndc11(self.ndc10)

    @property
    def description(self) -> str:
        """How the eMAR describes the medication."""
        return f"{self.name} {self.strength}"


def ndc10_to_ndc11(ndc10: str) -> str:
    """Convert a dashed NDC-10 into the undashed 11-digit 5-4-2 form."""
    labeler, product, package = ndc10.split("-")
    return labeler.zfill(5) + product.zfill(4) + package.zfill(2)


# name, strength, dose unit, routes, typical doses
_ENTRIES = (
    ("Heparin sodium", "5,000 units/mL", "units", ("SC",), (5000,)),
    ("Enoxaparin sodium", "40 mg/0.4 mL", "mg", ("SC",), (30, 40)),
    ("Insulin regular", "100 units/mL", "units", ("SC", "IV"), (2, 4, 6, 8, 10)),
    ("Insulin glargine", "100 units/mL", "units", ("SC",), (10, 15, 20)),
    ("Morphine sulfate", "2 mg/mL", "mg", ("IV",), (1, 2, 4)),
    ("Hydromorphone", "1 mg/mL", "mg", ("IV",), (0.25, 0.5, 1)),
    ("Fentanyl citrate", "50 mcg/mL", "mcg", ("IV",), (25, 50, 100)),
    ("Ondansetron", "2 mg/mL", "mg", ("IV",), (4,)),
    ("Ondansetron ODT", "4 mg", "mg", ("PO",), (4, 8)),
    ("Acetaminophen", "500 mg tablet", "mg", ("PO",), (500, 1000)),
    ("Acetaminophen injection", "10 mg/mL", "mg", ("IV",), (1000,)),
    ("Ibuprofen", "400 mg tablet", "mg", ("PO",), (400, 800)),
    ("Ketorolac", "30 mg/mL", "mg", ("IV", "IM"), (15, 30)),
    ("Cefazolin", "1 g vial", "mg", ("IV",), (1000, 2000)),
    ("Ceftriaxone", "1 g vial", "mg", ("IV", "IM"), (1000, 2000)),
    ("Vancomycin", "1 g vial", "mg", ("IV",), (750, 1000, 1250, 1500)),
    ("Piperacillin-tazobactam", "3.375 g vial", "mg", ("IV",), (3375, 4500)),
    ("Metronidazole", "500 mg/100 mL", "mg", ("IV",), (500,)),
    ("Amoxicillin", "500 mg capsule", "mg", ("PO",), (500,)),
    ("Furosemide", "10 mg/mL", "mg", ("IV", "IM"), (20, 40)),
    ("Metoprolol tartrate injection", "5 mg/5 mL", "mg", ("IV",), (2.5, 5)),
    ("Metoprolol tartrate", "25 mg tablet", "mg", ("PO",), (12.5, 25, 50)),
    ("Lisinopril", "10 mg tablet", "mg", ("PO",), (5, 10, 20)),
    ("Amlodipine", "5 mg tablet", "mg", ("PO",), (5, 10)),
    ("Atorvastatin", "40 mg tablet", "mg", ("PO",), (40, 80)),
    ("Aspirin", "81 mg tablet", "mg", ("PO",), (81,)),
    ("Pantoprazole", "40 mg vial", "mg", ("IV",), (40,)),
    ("Famotidine", "20 mg tablet", "mg", ("PO",), (20,)),
    ("Potassium chloride oral solution", "20 mEq/15 mL", "mL", ("PO",), (15, 30)),
    ("Sodium chloride flush", "0.9% 10 mL", "mL", ("IV",), (10,)),
    ("Dextrose", "50% 50 mL", "mL", ("IV",), (25, 50)),
    ("Lorazepam", "2 mg/mL", "mg", ("IV", "IM"), (0.5, 1, 2)),
    ("Haloperidol lactate", "5 mg/mL", "mg", ("IM",), (2.5, 5)),
    ("Dexamethasone", "4 mg/mL", "mg", ("IV", "IM"), (4, 8, 10)),
    ("Methylprednisolone", "125 mg vial", "mg", ("IV",), (40, 125)),
    ("Epinephrine", "1 mg/mL", "mcg", ("IM",), (300, 500)),
    ("Levothyroxine", "50 mcg tablet", "mcg", ("PO",), (25, 50, 75, 100)),
    ("Phytonadione", "10 mg/mL", "mg", ("IM", "SC"), (0.5, 1, 10)),
    ("Oxycodone", "5 mg tablet", "mg", ("PO",), (5, 10)),
    ("Filgrastim", "300 mcg/0.5 mL", "mcg", ("SC",), (300, 480)),
)


def _synthetic_ndc10s(count: int) -> list[str]:
    # A fixed generator (not the world seed): the formulary is the same in every world, so an
    # NDC means the same drug across seeds, as it does in real life.
    chooser = random.Random("demo-formulary")
    ndcs: list[str] = []
    seen_ndc11: set[str] = set()
    while len(ndcs) < count:
        layout = LAYOUTS[len(ndcs) % len(LAYOUTS)]
        widths = [int(width) for width in layout.split("-")]
        # Labelers starting with 9 do not collide with the small labeler numbers real firms use
        # in 4-digit layouts, and keep these obviously made up.
        segments = ["9" + "".join(chooser.choice("0123456789") for _ in range(widths[0] - 1))]
        segments += ["".join(chooser.choice("0123456789") for _ in range(w)) for w in widths[1:]]
        ndc10 = "-".join(segments)
        ndc11 = ndc10_to_ndc11(ndc10)
        if ndc11 not in seen_ndc11:
            seen_ndc11.add(ndc11)
            ndcs.append(ndc10)
    return ndcs


FORMULARY: tuple[Drug, ...] = tuple(
    Drug(ndc10=ndc10, name=name, strength=strength, dose_uom=uom, routes=routes,
         doses=tuple(float(dose) for dose in doses))
    for ndc10, (name, strength, uom, routes, doses) in zip(
        _synthetic_ndc10s(len(_ENTRIES)), _ENTRIES, strict=True)
)
