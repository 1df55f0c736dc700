"""System glue: systemd's notify socket, boot and clock facts, structured logs, UUIDv7.

Small modules over the operating system that every layer above may use; none of them
knows what a card or a tap is.
"""
