"""Reading providers' rate-limit headers into a pace (pure; the HTTP loop's use is tested with the providers)."""

from __future__ import annotations

from publisher.transports.ratelimit import Pace, retry_after, window

NOW = 1_800_000_000.0


def test_header_families():
    assert window({"x-ratelimit-remaining": "150", "x-ratelimit-reset": str(int(NOW) + 30)}, NOW) == (150, 30)
    assert window({"ratelimit-remaining": "1", "ratelimit-reset": "1"}, NOW) == (1, 1)
    assert window({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW * 1000) + 5000)}, NOW) == (0, 5)
    assert window({"x-ratelimit-remaining": "lots"}, NOW) is None
    assert retry_after({"retry-after": "7"}, NOW) == 7
    assert retry_after({"retry-after": "Thu, 01 Jan 2027 08:00:05 GMT"}, 1798790400.0) == 5
    assert retry_after({"retry-after": "soon"}, NOW) is None
    assert retry_after({"retry-after": "-3"}, NOW) is None


def test_pace_spreads_what_is_left_and_waits_for_the_reset():
    clock = [NOW]
    pace = Pace(max_wait=60, clock=lambda: clock[0])
    assert pace.observe({"X-RateLimit-Remaining": "100", "X-RateLimit-Reset": str(int(NOW) + 10)}) == 0.1
    assert abs(pace.wait_time() - 0.1) < 1e-6
    assert pace.observe({"RateLimit-Remaining": "0", "RateLimit-Reset": "3"}) == 3
    assert abs(pace.wait_time() - 3) < 1e-6
    clock[0] += 3
    assert pace.wait_time() == 0
    assert pace.observe({"Retry-After": "600"}) == 60, "never longer than the configured longest wait"
    assert pace.observe({}) == 0
