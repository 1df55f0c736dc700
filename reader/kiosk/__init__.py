"""The kiosk screen: a page for the Pi's display, served on loopback by its own process
(`sukumo-reader kiosk`) and shown full screen by Chromium in kiosk mode. See
docs/feedback.md.
"""
