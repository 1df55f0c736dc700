"""The durable event queue: every tap, kept until the city acknowledges it.

`EventQueue` (event_queue.py) is the whole public surface, with `QueueSummary` and
`Batch`. schema.py holds the versioned schema, opening.py the start-up checks (a
corrupt file is moved aside), recovery.py and salvage.py what follows (its events copied
into the fresh file, the alarm), seqmark.py the highest seq kept outside the file,
voiding.py what a failed write or fsync leaves to do, transaction.py the one way to
write, batching.py the batch size accounting.
"""

from reader.queue.batching import Batch
from reader.queue.event_queue import EventQueue
from reader.queue.export import STATES
from reader.queue.summary import QueueSummary

__all__ = ["STATES", "Batch", "EventQueue", "QueueSummary"]
