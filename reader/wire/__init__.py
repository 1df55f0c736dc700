"""The wire model: one typed description of everything that crosses to the city (mqtt-v1).

event.py: the frozen `Event` (§2) with its JSON form, `Mode` and `Reason` as StrEnums, the
time formatter. messages.py: the batch envelope (§2) and the ack (§3). status.py: the
terminal's status, whose §4 message is one view. topics.py: the §1 topic table. Pure: no
I/O, so tests are tables of bytes, and the city service (city/) uses the same code.
"""
