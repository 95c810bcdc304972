"""What a published file holds that a clean one would not, and what reading it did about it.

The field's published splits have quirks the literature lives with (the NCF paper's ML-1M test
negatives list some users' test item among their negatives). The loaders read them as the
reference code reads them and describe each kind of quirk with one ``Anomaly``, which the harness
carries to the terminal, the manifest, the summary and ``bench data list``.
"""

from __future__ import annotations

from dataclasses import dataclass

PAD = -1  # a candidate slot that holds no item: scored as never ranking above anything


@dataclass(frozen=True)
class Anomaly:
    file: str
    kind: str  # what is odd, e.g. "the test item is among the row's negatives"
    rows: int  # rows that have it
    total_rows: int
    occurrences: int  # entries that have it (several a row are possible)
    first_line: int  # 1-based line number of the first row that has it
    action: str  # what reading did, e.g. "dropped from the row's candidates"

    def line(self) -> str:
        extra = f" ({self.occurrences} entries)" if self.occurrences != self.rows else ""
        return (f"{self.file}: {self.rows:,} of {self.total_rows:,} rows{extra}: {self.kind} "
                f"(first at line {self.first_line}); {self.action}")
