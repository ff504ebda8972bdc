"""The live dashboard of a run: a page (`static/`) served by `server`, fed by `source`, which
reads the workers' views and metrics, the producer's metrics and the end offsets of `orders`."""
