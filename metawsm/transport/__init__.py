"""Everything Celery, kombu and Redis: the only package of ``metawsm`` that imports them.

- ``celery_config``: the Celery configuration built from settings (JSON only, acks late, ...);
- ``publisher``: sends outbox messages as Celery tasks by their stable names, bounded in time;
- ``redis_wire``, ``resp``: what kombu writes for a publish, and the minimal Redis client that
  sends it (no redis-py import on a command line's write);
- ``circuit_breaker``: after a failed publish, skip publishing for a few seconds;
- ``queues``: which queues a worker of each role consumes;
- ``kombu_redis_patch``: two fixes to kombu's Redis channel, for the kombu it was written for;
- ``kombu_quarantine``: the Redis channel reads any queue element; one that is no message comes
  to the consumer as a quarantine envelope carrying it;
- ``worker_supervisor``: the ``metawsm worker`` process that supervises single-process workers;
- ``task_slots``: the shared-memory slots through which a worker tells its supervisor a task runs;
- ``task_time_limits``: inside a supervised worker, the soft limit and the slot writes;
- ``child_output``: a supervised worker's output, through its supervisor until it is ready;
- ``redis_server``: the private ``redis-server`` of ``metawsm up`` and the tests;
- ``broker_claim``: the claim ``metawsm up`` holds on its broker (one stack per queue names).
"""
