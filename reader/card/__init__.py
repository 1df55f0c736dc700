"""The card protocol and what "verified" means (card-ap-v1), with no I/O in it.

Bytes and keys in, a verdict out: `session.CardSession` emits command APDUs and consumes
responses (no reader library), `record` parses the signed record, `cose` checks COSE_Sign1
ES256, `checks` runs checks 2-8 in the spec's order, `profiles` says which application to
select and refuses the national ones. Nothing here imports the settings, a transport, the
queue, the modes, the sync or the CLI; tests/test_layers.py holds it to that.
"""
