"""Kafka clients for every part: security and producers (`clients`), topics (`admin`), and
direct reads and true end offsets (`reading`). A client .properties file reaches each client
through `flashsale.client_config`."""
