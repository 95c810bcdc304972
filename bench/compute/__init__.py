"""Computation: a unit of work's plain inputs in, records out. The same code runs in the driver, in
a local worker process or as a Ray task; nothing here knows which, nor writes the trial store."""
