"""Development tools above the terminal: the demo (the whole service on the virtual
reader) and the development broker (mosquitto with TLS, client certificates and the
documented ACL) that the demo and the tests use.
"""
