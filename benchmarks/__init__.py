"""`flashsale bench` (`bench`), its peers (`bytewax_flow`, `quix_flow`) and two standalone
probes: a packed message's costs (`packed_costs`) and the gateway's acknowledgements
(`gateway_ack`)."""
