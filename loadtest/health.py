"""Generator health: is the load generator itself the bottleneck?

Every second each process records its CPU use, the p99 of its send lag
(actual − intended send time) and the worst scheduling lag of its event loop
(how late a 100 ms sleep wakes up: every receive greenlet waits that long too).
"""

from __future__ import annotations

import time

import gevent
import numpy as np
import psutil

from loadtest.process_context import ProcessContext

TICK_S = 0.1
TICKS_PER_SAMPLE = 10


def sample_forever(context: ProcessContext) -> None:
    process = psutil.Process()
    process.cpu_percent()
    while True:
        worst_lag_ms = 0.0
        for _ in range(TICKS_PER_SAMPLE):
            began = time.perf_counter()
            gevent.sleep(TICK_S)
            worst_lag_ms = max(worst_lag_ms, (time.perf_counter() - began - TICK_S) * 1000)
        lags = list(context.send_lags_ms)
        context.send_lags_ms.clear()
        send_lag_p99 = float(np.percentile(lags, 99)) if lags else 0.0
        context.recorder.health(
            context.recorder.now_ns(), process.cpu_percent(), send_lag_p99, worst_lag_ms
        )
