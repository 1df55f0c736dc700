"""What a tap means here: check 9 of card-ap-v1 §4, one mode per terminal, as pure policy.

A mode (checkin, event, nursery, coupon, watch: one module each) decides from the record,
the tap's time and the narrow `ModeState` it is handed, and returns a `Decision`: the
reason, the event's detail, the sound, and the state updates the queue commits with the
event. Modes import no database and no settings: reader/terminal/policy.py builds the
terminal's mode from its settings. See docs/modes.md.
"""

from reader.modes.base import Decision, Mode, Sound
from reader.modes.state import ModeState, StateUpdate

__all__ = ["Decision", "Mode", "ModeState", "Sound", "StateUpdate"]
