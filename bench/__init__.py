"""keyslot benchmarks: `make bench` (`python -m bench [--quick]`).

Everything runs in one run on one machine so the ratios are honest: a bare
grpcio echo server (the ceiling) and the two services as real processes,
driven by the same load generator (spawned client processes, each with its
own channel, warm-up excluded). Results go to the terminal and to
bench/results.md.
"""
