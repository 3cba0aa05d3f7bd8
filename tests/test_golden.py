"""Every development set reads as recorded: a change to the reading pipeline changes no reading unless it says so.

When a change is meant to change readings, rewrite the record (``python tests/golden.py``) and list
each difference, with why it is right, in the commit that does it.
"""

from __future__ import annotations

import golden
import pytest

COMPARED = ("reading", "uncertain", "reason", "seen")


@pytest.mark.skipif(not all((golden.SHARED / name).is_dir() for name in (*golden.IMAGE_SETS, "mnist")),
                    reason=f"the development sets are not in {golden.SHARED} (CI has them there)")
def test_every_development_set_reads_as_recorded():
    recorded = {row[:3]: dict(zip(golden.COLUMNS, row, strict=True)) for row in golden.recorded()}
    now = {row[:3]: dict(zip(golden.COLUMNS, row, strict=True)) for row in golden.readings()}
    assert now.keys() == recorded.keys(), "the development sets hold other files than when the record was written"
    changed = []
    for key, was in recorded.items():
        differs = [column for column in COMPARED if now[key][column] != was[column]]
        # a probability may move in its last place where two CPUs' vector units round a sum differently
        if abs(float(now[key]["probability"]) - float(was["probability"])) > 1.5e-4:
            differs.append("probability")
        if differs:
            changed.append(" ".join(key) + ": " + ", ".join(f"{c} {was[c]!r} -> {now[key][c]!r}" for c in differs))
    assert not changed, f"{len(changed)} readings differ from tests/golden-readings.tsv:\n" + "\n".join(changed[:20])
