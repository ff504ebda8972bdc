"""The two local brokers flashsale can start, and the choice between them and given servers:
the embedded Tansu (`embedded`), a local Apache Kafka from Maven Central's jars (`apache`), and
`local.broker_for`, which starts the one the settings ask for."""
