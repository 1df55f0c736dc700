"""Emulated cards and readers for development and tests, driven by the spec's vectors.

card.py: a card that answers card-ap-v1 APDUs (with fault knobs: torn, slow, 61xx/6Cxx).
issuer.py: a development issuer (root, issuer and ops keys; cards and bundles).
vpcd.py and nfc_udp.py: that card behind a real pcscd (vsmartcard-vpcd) or nfcpy's udp
driver, so the real transports are tested through their real libraries.
Development keys only: nothing here belongs on a terminal in the field.
"""
