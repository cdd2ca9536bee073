"""Load balancers: ``choose_host(context) -> Host | None`` over a cluster's PrioritySet.

Entry point: ``outrider.lb.factory.create_load_balancer`` (config → balancer). Modules:
``base`` (interfaces, LbStats), ``priority`` (priority load, panic, localities), ``edf``,
``zone_aware`` (random-driven skeleton, slow start), ``round_robin``, ``least_request``,
``random_lb``, ``peak_ewma``, ``thread_aware`` (hash-driven skeleton), ``ring_hash``, ``maglev``,
``config`` (policy selection and validation).
"""
