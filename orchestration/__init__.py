"""The `flashsale` command: what wires the parts together. Nothing imports this package.

`cli/` parses the command line and prints; the modules here run what it asks for: the demo,
the producer, load tests, soak runs, services (gateway, dashboard) and recorded runs, with
their live status, starting and stopping every process they need.
"""
