"""The technician's tools, as testable functions: `provision` (the terminal's identity, key
and CSR), `doctor` (every check of a working terminal) and the broker probe it uses. The
CLI (reader/cli) only parses arguments and prints their results.
"""
