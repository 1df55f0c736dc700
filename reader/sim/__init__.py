"""Simulated cards and a development issuer: the card side of card-ap-v1, for the
virtual reader, the demo, the tests and the benchmarks. Never used in production:
the keys made here are throw-away development keys."""
