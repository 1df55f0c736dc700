"""The running terminal: the daemon's wiring and tap loop (daemon.py), one tap on one card
link (tap.py), the mode built from settings (policy.py) and status.json (status.py).
Live reconfiguration by config bundle is the daemon's, between two taps.
"""
