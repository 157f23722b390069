"""The bcrypt ceiling for login: password checks per second in one thread on one core.

`python -m bench.bcrypt_rate --rounds 12 --seconds 3` (the harness runs it under
`taskset -c 0`) prints one JSON line. It verifies with passlib's `bcrypt_sha256`, exactly what
the service's login does, in a loop for about `--seconds`.
"""

from __future__ import annotations

import argparse
import json
import time

from passlib.context import CryptContext


def measure(rounds: int, seconds: float) -> dict[str, float]:
    context = CryptContext(schemes=["bcrypt_sha256"], bcrypt_sha256__rounds=rounds)
    password = "bench-password-1"
    stored = context.hash(password)
    context.verify(password, stored)  # warm-up
    count, start = 0, time.perf_counter()
    while True:
        if not context.verify(password, stored):
            raise RuntimeError("bcrypt verify failed")
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return {"rounds": rounds, "verifies": count, "seconds": elapsed, "per_second": count / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(measure(args.rounds, args.seconds)))


if __name__ == "__main__":
    main()
