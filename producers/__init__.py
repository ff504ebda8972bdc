"""Order producers: the seeded generator (`generator`), the sinks it writes to (`sinks`), the
wall-clock pacing of a run (`pacing`), resuming a killed producer (`resume`), split producer
processes (`parallel`), the HTTP checkout gateway (`gateway`) and the producer's metrics."""
