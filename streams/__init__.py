"""The Faust worker: it decides every order event and keeps GMV, stock and reservations.

`rules` decides an event; `state` is a partition's state record; `packed` applies a packed
message's rows at once; `windows` the event-time windows. The worker around them: `app`
(Faust wiring), `processor` (the batch loop), `recovery` (confirming states, reading back
what the stream skipped), `outputs` (every record the worker writes), `views` (its HTTP
pages), `metrics`, `consumer` (bulk fetches), `worker` (start and stop) and `process` (a
worker as a child process).
"""

from pathlib import Path

from flashsale.compiled import prefer_fresh_source, stems_of

# A compiled module older than its source gives way to the source, before anything imports it.
prefer_fresh_source(__name__, Path(__file__).parent, stems_of(__name__))
