"""Scale-out: one run's model work spread over several engines (local processes, one per device, or Ray actors).

The run (locks, resume, checkpoints, writing) stays in the driver; only model work moves. `RemoteEngine` looks to
the runner like one engine: ``prepare`` keeps the page image and how to prepare it (no tensors), ``generate``
hands the requests to a `Dispatcher`, whose shared queue feeds whichever worker is idle; each worker
preprocesses and generates with its own engine and sends the results back. `shard` selects documents by a
stable hash for cron-only setups.
"""
