"""The truth of a run and the verdict: recompute every outcome from topic `orders` with code
independent of the worker's, and compare the workers' outputs with it, to the cent.

`truth` applies the rules; `units` judges oversell from the decisions alone; `loss` tells a
broker that lost messages from a worker that miscounted; `reconcile` compares and builds the
run summary (`summary` names its fields); `live` reads a run's topics from Kafka.
"""
