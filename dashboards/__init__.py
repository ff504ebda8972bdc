"""Dashboards: the live web page of a run (`live`), beside the Grafana dashboard and the
Prometheus configuration and alert rules in `grafana/` and `prometheus/`."""
