"""Small durable bodies whose runs the CLI tests inspect and steer."""

from __future__ import annotations

import random

from zart_nb import durable, step


@step("double")
def double(x: int) -> int:
    return 2 * x


@step("explode")
def explode() -> None:
    raise ValueError("kaboom [x]")  # brackets: rich markup must not eat them


@step("blob")
def blob(fill: bytes, size: int) -> bytes:
    return fill * size  # over 16 KiB: stored out of line, in payloads


@durable("cli-sum")
def summing(x: int) -> int:
    return double(x) + 1


@durable("cli-fail")
def failing(x: int) -> int:
    y = double(x)
    explode()
    return y


@durable("cli-value")
def value(v):
    double(1)
    return v


@durable("cli-blob")
def big(fill: bytes) -> int:
    return len(blob(fill, 20_000))


@step("noise")
def noise(seed: int) -> bytes:
    return random.Random(seed).randbytes(9 << 20)  # over 4 MiB: in chunks, raw (incompressible)


@durable("cli-large")
def large(seed: int) -> int:
    return len(noise(seed))


def failed_run(run_id: str) -> None:
    try:
        failing(5, run_id=run_id)
    except ValueError:
        pass
    else:
        raise AssertionError("the cli-fail body should have failed")


@step("square-{i}")
def square(i: int) -> int:
    return i * i


@durable("cli-fan")
def fan(n: int) -> list[int]:
    from zart_nb import schedule, wait

    return wait([schedule(square, i) for i in range(n)])
