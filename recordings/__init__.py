"""Recorded runs: the run directory (`format`), capturing a run's topics into it (`record`),
replaying its orders (`replay`), verifying it offline (`offline`), and its reports: figures
(`figures`), plots (`plots`) and the HTML pages of `report` and `compare` (`report`), and its
export as typed tables for analysis (`export`; the report's series as CSV: `series`)."""
